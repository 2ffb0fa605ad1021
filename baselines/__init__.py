"""Tabular baselines: bag-of-events featurizer, CatBoost/XGBoost/LightGBM/RF/LR, late fusion."""
