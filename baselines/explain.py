"""Aggregate explanations of the baselines (never per-patient values).

* GBDT baselines (CatBoost, XGBoost, LightGBM): SHAP TreeExplainer on up to 500 rows of the
  predicted split; features ranked by mean |SHAP| (on the model's raw output: log-odds, log
  hazard, or the regression value); multilabel = mean over the per-label models.
* random forest: impurity importance (MDI); logistic regression: |coefficient| on standardized
  features. Same output layout, with `method` saying which.
* late fusion: modality-grouped attribution, the drop in the out-of-fold selection metric when one
  modality's model is left out of the average (see baselines.late_fusion).

Layout put in Prediction.info["explanations"]:
    {"method": "TreeExplainer", "n_rows": 500, "output": "...",
     "top_features": [{"feature", "description", "mean_abs_shap"}, ...]}
Descriptions come from the cohort's metadata/codes.parquet for count:/last: features; ICD codes
truncated by the featurizer (ICD10CM/C34) are described by their child codes.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import polars as pl

from baselines.search import LOWER_IS_BETTER, SELECTION_METRIC

MAX_ROWS = 500
TOP_K = 20
_CODE_PREFIXES = ("count:", "last:")
TREE_LIBRARIES = ("catboost", "xgboost", "lightgbm")  # the libraries `tree_shap` explains


def code_descriptions(codes: pl.DataFrame) -> dict[str, str]:
    """code -> description from a codes table (rows without a description are skipped).

    Args:
        codes: Cohort.codes() frame (code, description, ...).

    Returns:
        dict
    """
    if codes.is_empty() or "description" not in codes.columns:
        return {}
    rows = codes.select("code", "description").drop_nulls()
    return dict(zip(rows["code"].to_list(), rows["description"].to_list()))


def describe_feature(name: str, descriptions: dict[str, str]) -> str | None:
    """Human description of a feature name ("count:CODE" / "last:CODE"; others None).

    Args:
        name: feature name from the bag-of-events featurizer.
        descriptions: code -> description.

    Returns:
        The code's description; for a truncated code the description of its only child, or a
        "group of" line naming up to three children; None when unknown or not a code feature.
    """
    prefix = next((p for p in _CODE_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        return None
    code = name[len(prefix):]
    if code in descriptions:
        return descriptions[code]
    children = sorted(c for c in descriptions if c.startswith(code + "."))
    if len(children) == 1:
        return descriptions[children[0]]
    if children:
        shown = "; ".join(descriptions[c] for c in children[:3])
        more = f" (+{len(children) - 3} more)" if len(children) > 3 else ""
        return f"group of {len(children)} codes: {shown}{more}"
    return None


def pick_rows(n: int, seed: int, max_rows: int = MAX_ROWS) -> np.ndarray:
    """A deterministic sample of at most max_rows row indices (sorted).

    Args:
        n: number of rows.
        seed: sampling seed.
        max_rows: cap.

    Returns:
        index array.
    """
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _as_2d_shap(values: Any, n: int, p: int) -> np.ndarray:
    """Normalize TreeExplainer output (array, list per class, or [n, p, classes]) to [n, p]."""
    if isinstance(values, list):
        values = values[-1]
    v = np.asarray(values)
    if v.ndim == 3:
        v = v[..., -1]
    if v.shape != (n, p):
        raise ValueError(f"unexpected SHAP shape {v.shape}")
    return v


def tree_shap(model: Any, X: np.ndarray) -> tuple[np.ndarray, str]:
    """Mean |SHAP| per feature of one fitted tree model.

    Args:
        model: a fitted CatBoost / XGBoost / LightGBM model.
        X: [n, p] rows to explain.

    Returns:
        ([p] mean absolute SHAP values, method name). Uses shap.TreeExplainer; if shap cannot read
        the model (e.g. LightGBM with the custom Cox objective) the library's own exact TreeSHAP
        (pred_contrib / ShapValues) is used and the method says so.
    """
    n, p = X.shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap's import and explainer emit deprecation chatter
            import shap

            vals = shap.TreeExplainer(model).shap_values(X)
        return np.abs(_as_2d_shap(vals, n, p)).mean(axis=0), "TreeExplainer"
    except Exception:  # noqa: BLE001 - fall back to the library's native TreeSHAP
        name = type(model).__module__.split(".")[0]
        if name == "lightgbm":
            v = model.predict(X, pred_contrib=True)
        elif name == "xgboost":
            import xgboost as xgb
            v = model.get_booster().predict(xgb.DMatrix(X), pred_contribs=True)
        else:
            from catboost import Pool
            v = model.get_feature_importance(Pool(X), type="ShapValues")
        v = np.asarray(v)[:, :p]  # last column is the expected value
        return np.abs(v).mean(axis=0), "TreeSHAP (library-native)"


def top_features(importance: np.ndarray, names: list[str], descriptions: dict[str, str], key: str,
                 top_k: int = TOP_K) -> list[dict[str, Any]]:
    """The top_k features by importance, with descriptions.

    Args:
        importance: [p] non-negative importances.
        names: feature names.
        descriptions: code -> description.
        key: name of the importance field (e.g. "mean_abs_shap").
        top_k: how many.

    Returns:
        list of {"feature", "description", key}, largest first (ties by name).
    """
    order = sorted(range(len(names)), key=lambda i: (-float(importance[i]), names[i]))[:top_k]
    return [{"feature": names[i], "description": describe_feature(names[i], descriptions),
             key: float(importance[i])} for i in order if math.isfinite(float(importance[i]))]


def explain_learner(learner: Any, X: np.ndarray, names: list[str], codes: pl.DataFrame, *, seed: int = 0,
                    max_rows: int = MAX_ROWS, top_k: int = TOP_K) -> dict[str, Any]:
    """Aggregate explanation of a fitted baseline learner (baselines.tabular) on rows of X.

    Args:
        learner: a fitted learner or OneVsRest of learners.
        X: [n, p] features of the predicted split.
        names: feature names.
        codes: the cohort's codes table (for descriptions).
        seed: row-sampling seed.
        max_rows: rows explained at most.
        top_k: features listed.

    Returns:
        {"method", "n_rows", "output", "top_features": [...]} (aggregates only), or
        {"method": None, "reason": ...} when nothing can be explained.
    """
    # Duck-typed so this module never imports the learners (tabular.py imports it): a multilabel
    # OneVsRest hands out its per-label learners through fitted(), and a constant prior (a label
    # with one class in training) has no `library` and nothing to explain.
    learners = learner.fitted() if callable(getattr(learner, "fitted", None)) else [learner]
    learners = [lr for lr in learners if getattr(lr, "library", None) is not None]
    if not learners or len(X) == 0:
        return {"method": None, "reason": "no fitted model or no rows to explain"}
    descriptions = code_descriptions(codes)
    lib = learners[0].library
    if lib in TREE_LIBRARIES:
        rows = X[pick_rows(len(X), seed, max_rows)]
        parts = [tree_shap(lr.native_model(), rows) for lr in learners]
        imp = np.mean([p for p, _ in parts], axis=0)
        method = parts[0][1]
        out_kind = {"binary": "log-odds", "survival": "log relative hazard", "regression": "predicted value"}
        return {"method": method, "n_rows": int(len(rows)),
                "output": out_kind.get(learners[0].kind, "raw score") + (
                    f", mean over {len(learners)} label models" if len(learners) > 1 else ""),
                "top_features": top_features(imp, names, descriptions, "mean_abs_shap", top_k)}
    if lib == "random_forest":
        imp = np.mean([lr.native_model().feature_importances_ for lr in learners], axis=0)
        return {"method": "impurity importance (MDI)", "n_rows": None, "output": "training impurity decrease",
                "top_features": top_features(imp, names, descriptions, "importance", top_k)}
    imp = np.mean([np.abs(lr.coefficients()) for lr in learners], axis=0)
    return {"method": "standardized coefficients", "n_rows": None, "output": "|coefficient| per SD",
            "top_features": top_features(imp, names, descriptions, "abs_coefficient", top_k)}


def modality_attribution(kind: str, y: np.ndarray, oof: dict[str, np.ndarray], present: dict[str, np.ndarray],
                         fuse, score_fn) -> dict[str, Any]:
    """Leave-one-modality-out attribution for a late-fusion ensemble, on out-of-fold scores.

    Args:
        kind: task kind.
        y: targets of the rows.
        oof: modality -> out-of-fold scores of its model (rows without the modality hold NaN).
        present: modality -> [n] bool, the rows that have the modality.
        fuse: fuse(scores, present) -> fused scores (the ensemble's averaging rule).
        score_fn: score_fn(kind, y, scores) -> selection metric.

    Returns:
        {"method", "metric_all", "modalities": [{"modality", "n_rows_with", "metric_without",
        "drop"}]}; drop = metric(all) - metric(without), sign-flipped for lower-is-better metrics,
        so a positive drop always means the modality helps.
    """
    metric = SELECTION_METRIC[kind]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    full = score_fn(kind, y, fuse(oof, present))
    rows = []
    for m in oof:
        if m == "structured":
            continue  # the structured model is the ensemble's base; every row has it
        rest = {k: v for k, v in oof.items() if k != m}
        without = score_fn(kind, y, fuse(rest, {k: v for k, v in present.items() if k != m}))
        drop = sign * (full - without) if math.isfinite(full) and math.isfinite(without) else None
        rows.append({"modality": m, "n_rows_with": int(present[m].sum()),
                     "metric_without": without if math.isfinite(without) else None, "drop": drop})
    only = score_fn(kind, y, oof["structured"]) if "structured" in oof else math.nan
    return {"method": f"leave-one-modality-out drop in out-of-fold {metric}", "metric": metric,
            "metric_all": full if math.isfinite(full) else None,
            "metric_structured_only": only if math.isfinite(only) else None, "modalities": rows}
