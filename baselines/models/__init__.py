"""One file per registered baseline: the MEHRT paper's CatBoost, XGBoost, random forest and logistic
regression (Tables B1-B4, B.1 features), their late-fusion ensembles (B.2), our LightGBM, and our
richer `*_tuned` variants. Each defines `SPEC = ModelSpec(...)` and nothing else of note; the shared
code lives in baselines.tabular, baselines.spaces and baselines.late_fusion."""
