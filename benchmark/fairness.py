"""Subgroup performance and group-fairness differences on the held-out split (the result's
"fairness" block).

For each attribute a task lists in `fairness`:
- sex, race, ethnicity: from `Cohort.demographics()` (missing values form the group "unknown");
- age_band: age at the prediction time in years (365.25-day years), banded <50, 50-64, 65-79,
  80+ ("unknown" without a birth time);
- modality_availability: one attribute per modality the task offers, "modality_availability/<m>",
  with groups "available" / "not available": whether a study of that modality is visible at the
  prediction time (through the leakage guard, so a study after the prediction time does not count).

Per group: the task kind's discrimination metric (AUROC for binary, Harrell's C-index for survival,
macro AUROC for multilabel, MAE for regression) with a subject-bootstrap CI, the worst and best
group and their gap; for binary tasks with a decision threshold also fairlearn's
demographic-parity and equalized-odds differences (and per-group selection rate, TPR, FPR).

Privacy rule: a group with fewer than MIN_COUNT (10) subjects, or (binary, survival) fewer than 10
subjects with an event or fewer than 10 without one, is *suppressed*: it is listed by name with
"suppressed": true and no numbers at all, and it is left out of the worst-group value, the gap and
the parity differences. Multilabel groups use only labels with at least 10 positive and 10
negative subjects in the group. When any group of an attribute is suppressed, the other groups'
counts are withheld too (otherwise n_test minus the shown counts would give the suppressed
group's size). The block holds aggregates only: no subject ids, times or single-patient values.

Small cells (rates x counts): a group's selection rate, TPR and FPR times its counts give its
confusion matrix at the threshold (TP = TPR x events, FP = FPR x non-events, ...). If any shown
group has a confusion cell (TP, FP, FN, TN, in samples) between 1 and MIN_COUNT - 1, the rates of
*every* group of that attribute and its parity differences are withheld ("rates_withheld" says
why): withholding only that group's rates would not help, since the overall sensitivity minus the
other groups' TP gives it back, and one parity difference with the group sizes solves for the two
selection counts. An empty cell (0) is allowed: it reveals no one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from benchmark.kinds import TaskKind, kind_of
from benchmark.metrics.binary import DegenerateInputError, make_auroc_kernel
from benchmark.metrics.bootstrap import bootstrap_kernel, subject_index
from benchmark.metrics.multilabel import make_multilabel_kernel
from benchmark.metrics.regression import make_regression_kernel
from benchmark.metrics.survival import make_harrell_kernel
from benchmark.model_api import Prediction, TaskData

MIN_COUNT = 10
N_BOOT = 1000
AGE_BANDS = ("<50", "50-64", "65-79", "80+")
UNKNOWN = "unknown"
_DEMOGRAPHIC = ("sex", "race", "ethnicity")

_demo_cache: dict[tuple[str, str], pl.DataFrame] = {}


# --------------------------------------------------------------------------- group labels
def _demographics(data: TaskData) -> pl.DataFrame:
    """Cohort demographics, cached per (cohort folder, data fingerprint): a run asks once per cell."""
    key = (str(data.cohort.root), data.cohort.fingerprint())
    if key not in _demo_cache:
        _demo_cache.clear()
        _demo_cache[key] = data.cohort.demographics()
    return _demo_cache[key]


def age_band(age_years: np.ndarray) -> np.ndarray:
    """Band ages (years, NaN = unknown) into <50, 50-64, 65-79, 80+.

    Args:
        age_years: (n,) ages in years at the prediction time.

    Returns:
        (n,) object array of band labels ("unknown" for NaN).
    """
    a = np.asarray(age_years, dtype=float)
    out = np.full(len(a), UNKNOWN, dtype=object)
    ok = np.isfinite(a)
    idx = np.searchsorted(np.array([50.0, 65.0, 80.0]), a[ok], side="right")
    out[ok] = np.array(AGE_BANDS, dtype=object)[idx]
    return out


def group_labels(data: TaskData, split: str = "held_out") -> tuple[dict[str, np.ndarray], list[str]]:
    """The subgroup label of every sample of a split, for each fairness attribute of the task.

    Args:
        data: the task data.
        split: which split's samples (default held_out).

    Returns:
        (labels, notes): attribute name -> (n,) object array of group names (in sample order), and
        notes on attributes that could not be built.
    """
    samples = data.samples(split).with_row_index("_row")
    wanted = data.task.fairness
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []
    if any(a in wanted for a in (*_DEMOGRAPHIC, "age_band")):
        demo = _demographics(data)
        j = samples.join(demo, on="subject_id", how="left").sort("_row")
        for a in _DEMOGRAPHIC:
            if a in wanted:
                out[a] = np.array(j[a].fill_null(UNKNOWN).cast(pl.String).to_list(), dtype=object)
        if "age_band" in wanted:
            age = ((j["prediction_time"].cast(pl.Datetime("us")) - j["birth_time"].cast(pl.Datetime("us")))
                   .dt.total_seconds() / (365.25 * 86400)).to_numpy()
            out["age_band"] = age_band(np.asarray(age, dtype=float))
    if "modality_availability" in wanted:
        if not data.task.modalities:
            notes.append("modality_availability: the task offers no modalities")
        for m in data.task.modalities:
            try:
                seen = (data.visible_modality(m, split).select("subject_id", "prediction_time")
                        .unique().collect().with_columns(pl.lit(True).alias("_has")))
            except Exception as e:  # noqa: BLE001 - a missing sidecar is reported, not fatal
                notes.append(f"modality_availability/{m}: not available in this cohort ({type(e).__name__})")
                continue
            j = (samples.with_columns(pl.col("prediction_time").cast(pl.Datetime("us")))
                 .join(seen, on=["subject_id", "prediction_time"], how="left").sort("_row"))
            has = j["_has"].fill_null(False).to_numpy()
            out[f"modality_availability/{m}"] = np.where(has, "available", "not available").astype(object)
    return out, notes


# --------------------------------------------------------------------------- one group
def _n_subj(sid: np.ndarray, mask: np.ndarray) -> int:
    return int(len(np.unique(sid[mask])))


def _suppression(kind: TaskKind, y: np.ndarray, sid: np.ndarray, min_count: int) -> tuple[str | None, list[int]]:
    """Why a group is suppressed (None if it is not) and, for multilabel, the usable label columns."""
    n = _n_subj(sid, np.ones(len(sid), dtype=bool))
    if n < min_count:
        return f"fewer than {min_count} subjects", []
    ev = kind.event_flags(y)
    if ev is not None:
        if _n_subj(sid, ev) < min_count:
            return f"fewer than {min_count} subjects with an event", []
        if _n_subj(sid, ~ev) < min_count:
            return f"fewer than {min_count} subjects without an event", []
    if kind.multi_output:
        cols = [j for j in range(y.shape[1])
                if _n_subj(sid, y[:, j] == 1) >= min_count and _n_subj(sid, y[:, j] == 0) >= min_count]
        if not cols:
            return f"no label has {min_count} subjects with and {min_count} without it", []
        return None, cols
    return None, []


def _macro_auroc_kernel(y, s, rs, cols):
    k, _ = make_multilabel_kernel(y[:, cols], s[:, cols], "auroc", rs)
    return lambda c, k=k: k(c)[:, 0]


def _mae_kernel(y, s, rs, cols):
    k = make_regression_kernel(y, s, rs)
    return lambda c, k=k: k(c)[:, 0]


# the kind's per-group metric (its selection metric) -> fn(y, score, row subjects, label columns) -> kernel
_GROUP_KERNELS = {
    "auroc": lambda y, s, rs, cols: make_auroc_kernel(y, s, rs),
    "c_index_harrell": lambda y, s, rs, cols: make_harrell_kernel(y[:, 0], y[:, 1], s, rs),
    "auroc_macro": _macro_auroc_kernel,
    "mae": _mae_kernel,
}


def _group_kernel(kind: TaskKind, y: np.ndarray, s: np.ndarray, rs: np.ndarray, cols: list[int]):
    return _GROUP_KERNELS[kind.selection_metric](y, s, rs, cols)


def has_small_cell(counts, min_count: int = MIN_COUNT) -> bool:
    """Whether any count is a small cell: between 1 and min_count - 1 (0 reveals no one).

    Args:
        counts: integer counts (confusion cells, group sizes...).
        min_count: the smallest count that may be shown or derived.

    Returns:
        True if a count is in 1..min_count-1.
    """
    return any(0 < int(c) < min_count for c in counts)


def confusion_cells(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) of binary labels and 0/1 decisions, counted in samples.

    Args:
        y: (n,) 0/1 labels.
        pred: (n,) 0/1 decisions.

    Returns:
        The four counts.
    """
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return (int((y & pred).sum()), int((~y & pred).sum()), int((y & ~pred).sum()), int((~y & ~pred).sum()))


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _group_metric(kind: TaskKind, y, s, sid, cols, n_boot: int, seed: int) -> dict[str, Any]:
    rs, n_s = subject_index(sid)
    try:
        ci = bootstrap_kernel(_group_kernel(kind, y, s, rs, cols), n_s, n_boot=n_boot, seed=seed)
    except DegenerateInputError as e:
        return {"value": None, "ci_low": None, "ci_high": None, "refused": str(e)}
    return {"value": _r(ci.estimate), "ci_low": _r(ci.low), "ci_high": _r(ci.high)}


# --------------------------------------------------------------------------- parity
def _parity(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> tuple[dict, dict[str, dict]]:
    """fairlearn demographic-parity / equalized-odds differences and per-group rates."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    mf = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                              "fpr": false_positive_rate},
                     y_true=y, y_pred=pred, sensitive_features=groups)
    per_group = {str(g): {k: _r(float(v)) for k, v in row.items()} for g, row in mf.by_group.iterrows()}
    # fairlearn's demographic_parity_difference and equalized_odds_difference (worst case) are these
    # between-group differences of the same frame; each would build its own MetricFrame again (a
    # minute per attribute at 1M subjects)
    d = mf.difference(method="between_groups")
    diffs = {"demographic_parity_difference": _r(float(d["selection_rate"])),
             "equalized_odds_difference": _r(max(float(d["tpr"]), float(d["fpr"])))}
    return diffs, per_group


# --------------------------------------------------------------------------- the report
def _attribute_report(kind: TaskKind, labels: np.ndarray, y: np.ndarray, s: np.ndarray, sid: np.ndarray,
                      threshold: float | None, n_boot: int, seed: int, min_count: int) -> dict[str, Any]:
    names = sorted(set(labels.tolist()), key=lambda g: (g == UNKNOWN, g))
    groups: list[dict[str, Any]] = []
    shown_rows = np.zeros(len(labels), dtype=bool)
    for g in names:
        m = labels == g
        why, cols = _suppression(kind, y[m], sid[m], min_count)
        if why:
            groups.append({"group": g, "suppressed": True, "reason": why})
            continue
        shown_rows |= m
        entry: dict[str, Any] = {"group": g, "suppressed": False, "n_subjects": _n_subj(sid, m),
                                 "n_samples": int(m.sum())}
        if kind.has_events:
            entry["n_events"] = kind.n_events(y[m])
        elif kind.multi_output:
            entry["n_labels_used"] = len(cols)
        entry.update(_group_metric(kind, y[m], s[m], sid[m], cols, n_boot, seed))
        groups.append(entry)
    n_supp = sum(g["suppressed"] for g in groups)
    if n_supp:
        # complementary disclosure: n_test - sum(shown counts) would reveal a suppressed group's size
        for g in groups:
            for k in ("n_subjects", "n_samples", "n_events"):
                g.pop(k, None)
    rep: dict[str, Any] = {"groups": groups, "n_groups": len(groups), "n_suppressed": n_supp,
                           "counts_withheld": bool(n_supp)}
    valued = [g for g in groups if not g["suppressed"] and g.get("value") is not None]
    lower_better = kind.lower_is_better(kind.selection_metric)
    if valued:
        key = (lambda g: (g["value"], g["group"])) if not lower_better else (lambda g: (-g["value"], g["group"]))
        worst, best = min(valued, key=key), max(valued, key=key)
        rep["worst_group"] = {"group": worst["group"], "value": worst["value"]}
        rep["best_group"] = {"group": best["group"], "value": best["value"]}
        rep["gap"] = _r(abs(best["value"] - worst["value"])) if len(valued) >= 2 else None
    else:
        rep["worst_group"] = rep["best_group"] = rep["gap"] = None
    if kind.chooses_threshold:
        n_shown = sum(not g["suppressed"] for g in groups)
        if threshold is None:
            rep["parity_note"] = "no decision threshold (needs tuning-split predictions)"
        elif n_shown < 2:
            rep["parity_note"] = "fewer than two groups large enough to compare"
        else:
            pred = (s >= threshold).astype(int)
            small = [g["group"] for g in groups if not g["suppressed"] and has_small_cell(
                confusion_cells(y[labels == g["group"]], pred[labels == g["group"]]), min_count)]
            if small:
                # rates x counts would reveal a cell of fewer than min_count samples (module doc)
                rep["rates_withheld"] = (f"rates and parity differences withheld: a group's confusion-matrix cell "
                                         f"(TP, FP, FN or TN) at the threshold is below {min_count}")
                rep["parity_note"] = rep["rates_withheld"]
            else:
                diffs, per_group = _parity(y[shown_rows].astype(int), pred[shown_rows], labels[shown_rows])
                rep.update(diffs)
                for g in groups:
                    if not g["suppressed"]:
                        g.update(per_group.get(g["group"], {}))
        rep["small_cells_checked"] = min_count
    return rep


def fairness_report(data: TaskData, test: Prediction, threshold: float | None = None, *,
                    n_boot: int = N_BOOT, min_count: int = MIN_COUNT) -> dict[str, Any]:
    """Subgroup metrics and fairness differences on the held-out split, for the result file.

    Args:
        data: the task data (labels, cohort, task with its `fairness` attributes).
        test: the model's held-out Prediction (aligned with data.samples("held_out")).
        threshold: binary decision threshold (score >= threshold is positive), chosen on the tuning
            split; None skips the parity differences.
        n_boot: subject-bootstrap replicates for the group CIs.
        min_count: the suppression threshold (subjects, and subjects with / without an event).

    Returns:
        JSON-able dict: split, metric, higher_is_better, threshold, min_count, n_boot, method,
        attributes (name -> {groups, n_groups, n_suppressed, counts_withheld, worst_group,
        best_group, gap[, demographic_parity_difference, equalized_odds_difference | rates_withheld],
        small_cells_checked (binary)}), notes.
    """
    task = data.task
    kind = kind_of(task)
    metric = kind.selection_metric
    block: dict[str, Any] = {
        "split": "held_out", "metric": metric, "higher_is_better": not kind.lower_is_better(metric),
        "threshold": _r(threshold, 3) if threshold is not None and kind.chooses_threshold else None,
        "min_count": min_count,
        "n_boot": n_boot,
        "method": (f"{metric} per subgroup with percentile subject-bootstrap 95% CI ({n_boot} resamples, "
                   f"seed {data.seed}); groups with fewer than {min_count} subjects"
                   + (" or subjects with/without an event" if kind.has_events else "")
                   + " are suppressed"
                   + ("; parity differences by fairlearn at the tuning-split threshold"
                      if kind.chooses_threshold else "")),
        "attributes": {}, "notes": [],
    }
    if not task.fairness:
        block["notes"].append("the task lists no fairness attributes")
        return block
    y = data.y("held_out")
    s = np.asarray(test.score, dtype=float)
    sid = data.frame("held_out")["subject_id"].to_numpy()
    if len(s) != len(sid):
        block["notes"].append(f"prediction length {len(s)} does not match {len(sid)} held-out samples")
        return block
    labels, notes = group_labels(data, "held_out")
    block["notes"].extend(notes)
    thr = threshold if kind.chooses_threshold else None
    for name in sorted(labels):
        block["attributes"][name] = _attribute_report(kind, labels[name], y, s, sid, thr, n_boot,
                                                      data.seed, min_count)
    return block
