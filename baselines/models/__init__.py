"""One file per registered baseline (CatBoost, XGBoost, LightGBM, random forest, logistic regression,
and the CatBoost / XGBoost late-fusion ensembles). Each defines `SPEC = ModelSpec(...)` and nothing
else of note; the shared code lives in baselines.tabular and baselines.late_fusion."""
