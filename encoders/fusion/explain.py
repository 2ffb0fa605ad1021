"""SHAP for the fusion heads, grouped by modality (aggregates only, never per-patient values).

Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824)
explains its concatenation + logistic-regression models with SHAP and reports importance per
modality. It does not spell out how feature-level SHAP values become a modality's importance, so
MEHR-Bench reports two aggregations and says which it ranks by (our choice, not the paper's):

* ``mean_abs_shap`` (ranked by): the mean over explained rows of |sum of the block's SHAP values|,
  i.e. the SHAP value of the modality as ONE player. For a linear model under the interventional
  (independent-background) definition the Shapley value of a group of features is exactly the sum
  of its members' values, so this is the exact modality-level SHAP value; it does not grow with the
  width of a block whose dimensions only carry noise (a 384-d note embedding).
* ``sum_mean_abs_shap``: the sum over the block's inputs of their mean |SHAP| (the "sum |SHAP| per
  block" aggregation), reported next to it; wide noisy blocks inflate it.

Explainers (the ``shap`` library):

* ``concat_lr`` (one linear layer on the concatenated blocks): ``shap.LinearExplainer`` on the
  head's input features (each block after its 1/sqrt(width) scaling, a missing modality's learned
  token, the presence flag) with the training rows as background: phi_j = w_j (x_j - E[x_j]).
  The presence flag counts to its modality.
* every other head: exact Shapley values over modality groups (the game shap.ExactExplainer solves;
  enumerated here, checked against the library in the tests). Players are the input groups
  (``ehr``: the bag-of-events vector; ``time_series``: the binned series and its summary; each
  side modality: its pooled vector, study tokens, masks and presence); a coalition's value for a row
  is the head's mean output when the absent groups take the values of a small background of
  training rows (8, interventional). Exact over all 2^p coalitions (p <= 7), so a row costs
  2^p x 8 forward rows: the rows explained are capped by the budget level (MAX_EVALS; between 10
  and 100 held-out rows, e.g. 32 rows with 5 groups at the default budget, 10 with 7).

Output scale: the head's raw output (log-odds for binary / multilabel, per label then averaged;
log hazard for Cox; the standardized value for regression; the discrete-time head's per-bin
logits averaged; for an objective with `explain_output` (the Weibull head) that score, e.g. the risk =
minus the log median survival time, named by its `explain_label`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from encoders.fusion.inputs import FusionInputs

MAX_ROWS = 500           # explained held-out rows (linear head)
MAX_BACKGROUND = 500     # background training rows (linear head)
MAX_ROWS_EXACT = 100     # explained rows for the model-agnostic explainer, at most ...
MIN_ROWS_EXACT = 10      # ... and at least
BACKGROUND_EXACT = 8     # background rows for the model-agnostic explainer (2^p x 8 forward rows per row)
# forward-pass rows the model-agnostic explainer may spend per cell, by budget level (a
# cross-attention forward cost ~2.4 ms per row on a shared CPU thread: 8192 rows ~ 20 s)
MAX_EVALS = {"smoke": 2048, "default": 8192, "full": 65536}
TOP_K = 20
TS_KEYS = ("ts", "ts_obs", "ts_sum")
OUTPUT = {"binary": "log-odds", "multilabel": "log-odds (mean over labels)", "survival": "log hazard / raw head output",
          "regression": "standardized prediction"}


def groups_of(X: FusionInputs) -> dict[str, list[str]]:
    """Input group -> the array keys it owns ("ehr", "time_series", then each side modality)."""
    keys = list(X.arrays)
    out: dict[str, list[str]] = {}
    if "ehr" in keys:
        out["ehr"] = ["ehr"]
    ts = [k for k in TS_KEYS if k in keys]
    if ts:
        out["time_series"] = ts
    for m in X.modalities:
        out[m] = [k for k in keys if k.startswith(f"{m}.")]
    return out


def pick(n: int, k: int, seed: int) -> np.ndarray:
    """A deterministic sorted sample of at most k of n row indices."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def linear_shap(module, X: FusionInputs, background: FusionInputs) -> tuple[np.ndarray, list[str], list[str]]:
    """Per-input SHAP values of the concat_lr head (shap.LinearExplainer, interventional).

    Args:
        module: a fitted `heads.ConcatLR`.
        X: rows to explain.
        background: background rows (training distribution).

    Returns:
        (values [n_outputs, n, p], group of each of the p inputs, input names).
    """
    import shap
    import torch

    with torch.no_grad():
        F = module.features(X.to_torch()).numpy().astype(np.float64)
        Fb = module.features(background.to_torch()).numpy().astype(np.float64)
    W = module.linear.weight.detach().numpy().astype(np.float64)
    c = module.linear.bias.detach().numpy().astype(np.float64)
    # the whole background (shap's default masker would subsample 100 of its rows)
    masker = shap.maskers.Independent(Fb, max_samples=len(Fb))
    values = np.stack([np.asarray(shap.LinearExplainer((W[k], c[k]), masker).shap_values(F)) for k in range(len(W))])
    spec = module.spec
    group, names = [], []
    if spec["ehr_dim"]:
        group += ["ehr"] * spec["ehr_dim"]
    if spec["ts_sum_dim"]:
        group += ["time_series"] * spec["ts_sum_dim"]
    for m in module.mods:
        d = spec["modalities"][m][0]
        group += [m] * (d + 1)
        names += [f"{m}[{i}]" for i in range(d)] + [f"{m}: present"]
    return values, group, names


def coalition_values(head, X: FusionInputs, background: FusionInputs, groups: dict[str, list[str]],
                     Z: np.ndarray, row: int) -> np.ndarray:
    """v(S) for one row and each coalition S (a row of Z): the head's mean raw output when the groups
    in S take the row's values and the others each background row's values.

    Args:
        head: a fitted `FusionHead`.
        X: the rows to explain.
        background: the background rows.
        groups: group -> array keys (`groups_of`).
        Z: (k, p) bool, True = the group is present (takes the row's values).
        row: the row of X.

    Returns:
        (k, n_outputs) coalition values.
    """
    names = list(groups)
    Z = np.asarray(Z, dtype=bool)
    k, nb = len(Z), len(background)
    arrays = {}
    for g, keys in groups.items():
        take = np.repeat(Z[:, names.index(g)], nb)                 # (k * nb,) coalition-major
        for key in keys:
            bg = background.arrays[key]
            bg = np.tile(bg, (k,) + (1,) * (bg.ndim - 1))
            mine = np.broadcast_to(X.arrays[key][row], bg.shape)
            arrays[key] = np.where(take.reshape((-1,) + (1,) * (bg.ndim - 1)), mine, bg)
    out = head._outputs(FusionInputs(arrays, X.modalities)).astype(np.float64)   # (k * nb, n_out)
    to_score = getattr(head.objective_, "explain_output", None)
    if to_score is not None:        # e.g. Weibull: (log scale, log shape) -> one risk score per row
        out = to_score(out)
    return out.reshape(k, nb, -1).mean(1)


def group_shap_exact(head, X: FusionInputs, background: FusionInputs) -> tuple[np.ndarray, list[str]]:
    """Exact modality-group SHAP values of any fitted head, by enumerating all 2^p coalitions.

    phi_g = sum over coalitions S without g of |S|! (p - |S| - 1)! / p! (v(S + g) - v(S)), v from
    `coalition_values`. This is what shap.ExactExplainer computes on the same game
    (tests/test_fusion_shap.py checks it); it is computed here directly because the library's
    first call JIT-compiles for 20-50 s, longer than a whole linear-head cell.

    Args:
        head: a fitted `FusionHead` (its module's raw output is explained).
        X: rows to explain.
        background: background rows; an absent group takes their values (output averaged).

    Returns:
        (values [n_outputs, n, n_groups], group names).
    """
    from math import factorial

    groups = groups_of(X)
    names = list(groups)
    p = len(names)
    Z = ((np.arange(2 ** p)[:, None] >> np.arange(p)[None, :]) & 1).astype(bool)   # (2^p, p)
    size = Z.sum(1)
    weight = np.array([factorial(s) * factorial(p - s - 1) / factorial(p) if s < p else 0.0 for s in size])
    index = {tuple(z): i for i, z in enumerate(Z.tolist())}
    out = []
    for i in range(len(X)):
        v = coalition_values(head, X, background, groups, Z, i)          # (2^p, n_out)
        phi = np.zeros((p, v.shape[1]))
        for j in range(p):
            without = np.flatnonzero(~Z[:, j])
            with_j = [index[tuple(np.where(np.arange(p) == j, True, Z[s]).tolist())] for s in without]
            phi[j] = (weight[without, None] * (v[with_j] - v[without])).sum(0)
        out.append(phi)
    return np.transpose(np.stack(out), (2, 0, 1)), names


def summarize(values: np.ndarray, group: list[str], names: list[str] | None = None) -> dict[str, Any]:
    """Modality-level (and, with names, input-level) aggregates of SHAP values.

    Args:
        values: [n_outputs, n, p] SHAP values.
        group: the group of each of the p columns.
        names: the p column names (None: the columns are the groups themselves).

    Returns:
        {"top_features": [{"feature": group, "mean_abs_shap", "sum_mean_abs_shap", "share"}] (ranked by
        mean_abs_shap), "inputs": top input-level [{"feature", "mean_abs_shap"}] when names are given}.
    """
    g = np.asarray(group)
    out_rows = []
    for name in dict.fromkeys(group):
        cols = g == name
        block = values[:, :, cols]
        grouped = float(np.abs(block.sum(2)).mean())          # |SHAP of the block as one player|
        per_input = float(np.abs(block).mean(1).sum(1).mean())  # sum over inputs of mean |SHAP|
        out_rows.append({"feature": name, "mean_abs_shap": grouped, "sum_mean_abs_shap": per_input})
    total = sum(r["mean_abs_shap"] for r in out_rows) or 1.0
    for r in out_rows:
        r["share"] = r["mean_abs_shap"] / total
    out: dict[str, Any] = {"top_features": sorted(out_rows, key=lambda r: -r["mean_abs_shap"])}
    if names is not None:
        imp = np.abs(values).mean(1).mean(0)
        order = np.argsort(-imp)[:TOP_K]
        out["inputs"] = [{"feature": names[j], "mean_abs_shap": float(imp[j])} for j in order]
    return out


def modality_shap(head, X: FusionInputs, background: FusionInputs, kind: str, ehr_names: list[str] | None = None,
                  ts_names: list[str] | None = None, seed: int = 0, max_evals: int = MAX_EVALS["default"]
                  ) -> dict[str, Any]:
    """The "modality_shap" block of a fusion model's explanations.

    Args:
        head: a fitted `FusionHead`.
        X: the held-out inputs (a sample of MAX_ROWS / MAX_ROWS_EXACT is explained).
        background: the training inputs (a sample is the background).
        kind: the task kind (names the output scale).
        ehr_names: names of the EHR block's columns (linear head).
        ts_names: names of the time-series summary columns (linear head).
        seed: sampling seed.
        max_evals: forward rows the model-agnostic explainer may spend (caps the explained rows).

    Returns:
        {"method", "output", "n_rows", "n_background", "aggregation", "top_features": [per group], and
        for the linear head "inputs": top inputs by mean |SHAP|}.
    """
    linear = head.head == "concat_lr"
    n_rows = MAX_ROWS
    if not linear:
        per_row = 2 ** len(groups_of(X)) * BACKGROUND_EXACT
        n_rows = int(min(MAX_ROWS_EXACT, max(MIN_ROWS_EXACT, max_evals // per_row)))
    rows = pick(len(X), n_rows, seed)
    bg = pick(len(background), MAX_BACKGROUND if linear else BACKGROUND_EXACT, seed + 1)
    Xs, Bs = X.take(rows), background.take(bg)
    if linear:
        values, group, names = linear_shap(head.module_, Xs, Bs)
        names = list(ehr_names or [f"ehr[{i}]" for i in range(group.count("ehr"))]) + \
            list(ts_names or [f"ts_sum[{i}]" for i in range(group.count("time_series"))]) + names
        method = "SHAP LinearExplainer (interventional) on the concatenated inputs, summed per modality block"
        summary = summarize(values, group, names)
    else:
        values, group = group_shap_exact(head, Xs, Bs)
        method = ("exact SHAP over modality groups (all coalitions, as shap.ExactExplainer; a group absent = "
                  "the background rows' values, output averaged over them)")
        summary = summarize(values, group)
    output = getattr(head.objective_, "explain_label", None) or OUTPUT.get(kind, "raw head output")
    return {"method": method, "output": output, "n_rows": int(len(rows)),
            "n_background": int(len(bg)),
            "aggregation": "mean_abs_shap = mean over rows of |sum of the block's SHAP values| (the block as one "
                           "player; ranked by this); sum_mean_abs_shap = sum over the block's inputs of mean |SHAP|",
            **summary}
