"""Fusion heads over per-modality encodings, their training loop, and the task-kind objectives.

* `inputs`     : turn a TaskData into standardized arrays (structured EHR, time series, modalities).
* `losses`     : InfoNCE, a local top-k contrastive score, Cox partial likelihood, discrete-time NLL,
                 Weibull NLL (TorchSurv).
* `objectives` : one output adapter per task kind (binary, multilabel, regression, Cox, discrete-time, Weibull).
* `layers`     : MLPs (fixed and input-scaled widths), masked pooling, one-query dot-product attention.
* `heads`      : the fusion heads (concat_lr, late_fusion, and the CT + EHR fusion paper's heads of
                 `paper_heads`: image_only_mlp, ehr_only_mlp, concat_mlp, contrastive, cross_attention,
                 coattention) and the timeline RNN; each head class carries its name, random-search
                 space and training defaults (`HEADS` is built from them).
* `train`      : the minibatch loop with modality dropout and early stopping on a validation set,
                 the regularisation paths of the linear heads, and fixed-length refits.
* `estimator`  : `FusionHead` (scikit-learn style, arrays in) and `FusionModel` (TaskData in, the
                 registry's fit/predict contract; tuned by CV on the shared folds, benchmark.learn).
"""
