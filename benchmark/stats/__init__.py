"""Paired model comparison (numpy/scipy only, no torch, no scikit-learn).

    paired.py       subject-level paired bootstrap of two models on the same rows
                    (`paired_bootstrap`), and A against the best of several B
                    (`paired_bootstrap_best_of`)
    corrections.py  the multiple-comparison correction for choosing the best B on the same rows
    pr_curves.py    precision-difference curves at fixed recall (`precision_difference_curve`)
    pooled.py       meta-analysis across tasks: fixed effect and DerSimonian-Laird random effects
                    (`meta_analysis`), with ONE joint bootstrap for tasks that share subjects
                    (`pooled_paired_bootstrap`), and the rule that names the estimate to
                    emphasise (`emphasis_rule`, Amar et al. 2025)
    thresholded.py  accuracy, precision, recall, F1, specificity at a threshold (0.5) and their
                    paired subject-bootstrap differences (`paired_thresholded`)

Import from the module that owns a name (e.g. `from benchmark.stats.paired import paired_bootstrap`).
"""
