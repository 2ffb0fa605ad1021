"""MEHRT, the reference multimodal EHR transformer: tokenizer, model.py, pretraining, probes.

Submodules import torch; this package itself stays import-light.
"""
