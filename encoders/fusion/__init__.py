"""Fusion heads over per-modality encodings, their training loop, and the task-kind objectives.

* `inputs`     : turn a TaskData into standardized arrays (structured EHR, time series, modalities).
* `losses`     : InfoNCE, MedCAM's local top-k contrastive score, Cox partial likelihood, discrete-time NLL.
* `objectives` : one output adapter per task kind (binary, multilabel, regression, Cox, discrete-time).
* `layers`     : tokenizers with learned missing tokens, bidirectional cross-attention, co-attention.
* `heads`      : the fusion heads (concat_lr, late_fusion, contrastive, cross_attention, coattention,
                 medcam) and the single-encoder heads (linear probe, timeline RNN); each head class
                 carries its name, random-search space and training defaults (`HEADS` is built from them).
* `train`      : the minibatch loop with modality dropout and early stopping on a validation set,
                 the regularisation paths of the linear heads, and fixed-length refits.
* `estimator`  : `FusionHead` (scikit-learn style, arrays in) and `FusionModel` (TaskData in, the
                 registry's fit/predict contract; tuned by CV on the shared folds, benchmark.learn).
"""
