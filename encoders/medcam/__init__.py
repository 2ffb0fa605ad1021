"""MedCAM (Modular Multimodal Alignment Using Time-Series EHR Data for Enhancing Medical Image
Classification): a CNN image encoder adapted by alignment to an LSTM over the ICU time series
(global + local top-k InfoNCE), then fine-tuned image-only with a linear classifier.

Modules: cnn (image encoder, image loading, weights files), ehr_lstm (LSTM over encoders.timeline's
2-hour bins), losses (eq. 3-7 of the paper, NT-Xent), pretrain (alignment), simclr (image-only
SimCLR baseline pretraining), finetune (linear classifier + encoder, BCE, lr grid, early stopping),
model (the estimator the three registered models share). Image folders (out-of-distribution sets) are scored by the benchmark itself: `run --external-data DIR` (benchmark/external_images.py) calls `predict_images`.
"""
