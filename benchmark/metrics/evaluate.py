"""One entry point for the runner: every metric of a task kind, each with a subject-bootstrap CI.

`evaluate` never raises for degenerate data: a metric that is undefined on the inputs (one class,
no events, NaN scores, length mismatch, times outside the follow-up, ...) comes back as a
`MetricResult` with value None and `refused` saying why in words. Callers that prefer an exception
catch nothing and test `result.refused`, or call the metric functions directly, which raise
`DegenerateInputError`.

All metrics of one call share the same bootstrap resamples (same seed, same subject draws), so
their intervals are paired.

A metric whose sample cannot support an interval (fewer than MIN_CI_SUBJECTS subjects in the rarer
class, or the metric undefined in more than 1% of the resamples; see `benchmark.metrics.bootstrap`)
keeps its value, with ci_low / ci_high None and `ci_note` saying why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import numpy as np

from benchmark.kinds import KINDS as KIND_OBJECTS
from benchmark.kinds import kind_of
from benchmark.metrics import binary, multilabel, regression, survival, survival_auc, survival_brier
from benchmark.metrics.binary import DegenerateInputError, Kernel
from benchmark.metrics.bootstrap import (
    LEVEL,
    N_BOOT,
    Support,
    binary_support,
    describe,
    event_support,
    interval,
    multilabel_support,
    replicate_values,
    subject_index,
    weakest,
)

Kind = Literal["binary", "multilabel", "survival", "regression"]
KINDS = tuple(KIND_OBJECTS)  # the kind names, in benchmark.kinds order

__all__ = ["DegenerateInputError", "KINDS", "MetricResult", "evaluate", "metric_names",
           "split_survival", "td_auc_name"]


@dataclass(frozen=True)
class MetricResult:
    """One metric: value with its CI, how it was computed, or why it was refused.

    Attributes:
        value: the point estimate on all rows; None when refused.
        ci_low: lower CI bound (None without a bootstrap or when it could not be computed).
        ci_high: upper CI bound.
        method: how value and CI were obtained (e.g. "percentile bootstrap 95% CI, ...").
        refused: None, or the reason the metric is undefined on these inputs.
        ci_note: None, or why no interval is reported although the value is (e.g. "CI not
            reported: 7 positive subjects (needs >= 10)"). Result files written before this
            field existed lack the key; readers use .get("ci_note").
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = ""
    refused: str | None = None
    ci_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the results JSON (keys value, ci_low, ci_high, method, refused, ci_note).

        Returns:
            A JSON-serialisable dict.
        """
        return asdict(self)

    @classmethod
    def refuse(cls, reason: str) -> "MetricResult":
        """A refused result.

        Args:
            reason: why the metric is undefined, in words.

        Returns:
            MetricResult with value None.
        """
        return cls(value=None, method="refused", refused=reason)


def td_auc_name(t: float) -> str:
    """Result name of the time-dependent AUC at time t: "td_auc@<t>", t written in full
    (shortest exact decimal, so distinct times never share a name: 365, 365.25, 1e+06 -> 1000000).

    Args:
        t: evaluation time.

    Returns:
        The metric name.
    """
    return "td_auc@" + np.format_float_positional(float(t), trim="-")


def metric_names(kind: Kind, *, n_labels: int | None = None, threshold=None, times=None,
                 horizon=None, surv_prob=None) -> list[str]:
    """Names of the metrics `evaluate` returns for a kind and options.

    Args:
        kind: binary | multilabel | survival | regression.
        n_labels: number of labels (multilabel).
        threshold: decision threshold (binary; adds the operating-point metrics).
        times: td-AUC evaluation times (survival).
        horizon: survival horizon (used as the td-AUC time when times is None).
        surv_prob: survival probabilities (survival; adds ibs).

    Returns:
        Metric names in result order.
    """
    return _NAMES[kind_of(kind).name](n_labels=n_labels, threshold=threshold, times=times, horizon=horizon)


def _binary_names(*, threshold, **_) -> list[str]:
    names = ["auroc", "auprc", "brier", "ece"]
    if threshold is not None:
        names += list(binary.THRESHOLD_METRICS)
    return names


def _survival_names(*, times, horizon, **_) -> list[str]:
    # td_auc and ibs are always listed (tasks declare them); without times / surv_prob they
    # come back refused with the reason
    names = ["c_index_harrell", "c_index_uno", "td_auc"]
    tm = _survival_times(times, horizon)
    if tm is not None:
        names += [td_auc_name(t) for t in tm]
    names.append("ibs")
    return names


# kind name -> the metric names `evaluate` returns (this module is the metric engine: per-kind
# metric families and their names live here, the kind objects name the kind and its flags)
_NAMES = {
    "binary": _binary_names,
    "multilabel": lambda *, n_labels, **_: ["auroc_macro", "auprc_macro"] + [f"auroc/{j}" for j in range(n_labels or 0)],
    "survival": _survival_names,
    "regression": lambda **_: list(regression.REGRESSION_METRICS),
}


def _survival_times(times, horizon) -> np.ndarray | None:
    if times is not None:
        tm = np.atleast_1d(np.asarray(times, dtype=float))
        return np.unique(tm) if np.isfinite(tm).all() else tm
    if horizon is not None:
        return np.array([float(horizon)])
    return None


def split_survival(y_true) -> tuple[np.ndarray, np.ndarray]:
    """Read survival labels given as (time, event), a dict / DataFrame with "time" and "event",
    a structured array (fields "time"/"event", or scikit-survival's (event, time) order), or an
    (n, 2) array with columns [time, event].

    Args:
        y_true: survival labels in one of the forms above.

    Returns:
        (time, event) arrays.
    """
    if isinstance(y_true, tuple) and len(y_true) == 2:
        return np.asarray(y_true[0]), np.asarray(y_true[1])
    if isinstance(y_true, np.ndarray) and y_true.dtype.names:
        names = y_true.dtype.names
        if "time" in names and "event" in names:
            return y_true["time"], y_true["event"]
        if len(names) == 2:  # scikit-survival convention: (event, time)
            return y_true[names[1]], y_true[names[0]]
    if hasattr(y_true, "__getitem__") and not isinstance(y_true, (np.ndarray, list)):
        try:
            return np.asarray(y_true["time"]), np.asarray(y_true["event"])
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    arr = np.asarray(y_true, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr[:, 0], arr[:, 1]
    raise DegenerateInputError(
        "survival y_true must be (time, event), a mapping with 'time' and 'event', a structured "
        f"array, or an (n, 2) array [time, event]; got {type(y_true).__name__}")


# Metrics on [0, 1] (concordance probabilities and proportions) get the logit-scale interval; the
# others (Brier, ECE, IBS, regression errors) the percentile interval.
_LOGIT_METRICS = frozenset({"auroc", "auprc", "c_index_harrell", "c_index_uno", "td_auc",
                            "sensitivity", "specificity", "ppv", "npv", "f1", "auroc_macro",
                            "auprc_macro"})


def _scale(name: str) -> str:
    """The interval shape of a metric name ("logit" or "percentile")."""
    base = name.split("@")[0].split("/")[0]
    return "logit" if base in _LOGIT_METRICS else "percentile"


def _supports(kind: str, y_true, event, rs: np.ndarray, n_subjects: int,
              names: list[str]) -> dict[str, Support]:
    """The rarer-class support of every metric name (see `benchmark.metrics.bootstrap`)."""
    return _SUPPORTS[kind_of(kind).name](y_true, event, rs, n_subjects, names)


def _multilabel_supports(y_true, event, rs, n_subjects, names) -> dict[str, Support]:
    """The weakest usable label's support for the macro metrics; each label's for its own AUROC."""
    labels = multilabel_support(y_true, rs)
    usable = [s for s in labels if s.n > 0] or labels
    out = {nm: weakest(usable) for nm in names}
    out.update({f"auroc/{j}": s for j, s in enumerate(labels)})
    return out


# kind name -> fn(y_true, event, row subjects, n_subjects, names) -> {name: Support}
_SUPPORTS = {
    "binary": lambda y, ev, rs, n, names: dict.fromkeys(names, binary_support(y, rs)),
    "survival": lambda y, ev, rs, n, names: dict.fromkeys(names, event_support(ev, rs)),
    "regression": lambda y, ev, rs, n, names: {nm: Support(n, "subjects") for nm in names},
    "multilabel": _multilabel_supports,
}


# A metric family: one kernel, the names of its output columns, and how to explain a NaN column.
_Family = tuple[Kernel, list[str], Callable[[str], str]]


def _undefined(name: str) -> str:
    return f"{name} is undefined on these inputs"


def _binary_families(y, s, rs, threshold, out_refused) -> list[_Family]:
    fams: list[_Family] = []
    for name, make in (("auroc", binary.make_auroc_kernel), ("auprc", binary.make_auprc_kernel),
                       ("brier", binary.make_brier_kernel), ("ece", binary.make_ece_kernel)):
        try:
            fams.append((make(y, s, rs), [name], _undefined))
        except DegenerateInputError as exc:
            out_refused[name] = str(exc)
    if threshold is not None:
        names = list(binary.THRESHOLD_METRICS)
        try:
            fams.append((binary.make_threshold_kernel(y, s, float(threshold), rs), names,
                         lambda nm: binary.THRESHOLD_UNDEFINED[nm]))
        except (DegenerateInputError, TypeError, ValueError) as exc:
            out_refused.update({nm: str(exc) for nm in names})
    return fams


def _multilabel_families(y, s, rs, out_refused) -> list[_Family]:
    fams: list[_Family] = []
    n_labels = np.shape(y)[1]
    try:
        k, refused = multilabel.make_multilabel_kernel(y, s, "auroc", rs)
        names = ["auroc_macro"] + [f"auroc/{j}" for j in range(n_labels)]
        reasons = {f"auroc/{j}": why for j, why in enumerate(refused) if why}
        fams.append((k, names, lambda nm: reasons.get(nm) or _undefined(nm)))
    except DegenerateInputError as exc:
        out_refused["auroc_macro"] = str(exc)
        for j in range(n_labels):
            out_refused[f"auroc/{j}"] = str(exc)
    try:
        k, _ = multilabel.make_multilabel_kernel(y, s, "auprc", rs)
        fams.append((lambda c, k=k: k(c)[:, :1], ["auprc_macro"], _undefined))
    except DegenerateInputError as exc:
        out_refused["auprc_macro"] = str(exc)
    return fams


def _survival_families(time, event, risk, rs, train_time, train_event, horizon, times, surv_prob,
                       out_refused, notes) -> list[_Family]:
    fams: list[_Family] = []
    harrell_why = "no comparable pairs (no event is followed by a longer follow-up)"
    uno_why = "no comparable pairs before the horizon"
    tau = float(horizon) if horizon is not None else None
    try:  # both C-indices from one dominance plan
        fams.append((survival.make_cindex_pair_kernel(time, event, risk, train_time, train_event,
                                                      tau, rs),
                     ["c_index_harrell", "c_index_uno"],
                     lambda nm: harrell_why if nm == "c_index_harrell" else uno_why))
    except DegenerateInputError as uno_exc:
        out_refused["c_index_uno"] = str(uno_exc)
        try:
            fams.append((survival.make_harrell_kernel(time, event, risk, rs),
                         ["c_index_harrell"], lambda nm: harrell_why))
        except DegenerateInputError as exc:
            out_refused["c_index_harrell"] = str(exc)

    tm = _survival_times(times, horizon)
    if tm is None:
        out_refused["td_auc"] = "no evaluation times: pass times=... or horizon=..."
    else:
        names = {t: td_auc_name(t) for t in tm}
        ok = []
        for t in tm:
            why = survival.time_point_problem(time, event, float(t))
            if why:
                out_refused[names[t]] = why
            else:
                ok.append(float(t))
        if len(ok) < len(tm):
            out_refused["td_auc"] = "not every evaluation time is usable (see td_auc@<t>)"
        if ok:
            # the kernel's last column is the KM-weighted mean: the summary "td_auc"
            cols = [names[t] for t in ok] + ["td_auc"]
            try:
                k = survival_auc.make_td_auc_kernel(time, event, risk, ok, train_time, train_event, rs)
                if len(ok) < len(tm):
                    k = (lambda c, k=k, m=len(ok): k(c)[:, :m])
                    cols = cols[:len(ok)]
                fams.append((k, cols, _undefined))
                notes["td_auc"] = (
                    "td_auc = cumulative/dynamic AUC averaged over t in ["
                    + ", ".join(np.format_float_positional(t, trim="-") for t in ok)
                    + "] weighted by the drops of the test Kaplan-Meier curve")
            except DegenerateInputError as exc:
                out_refused.update({nm: str(exc) for nm in cols})
    if surv_prob is None:
        out_refused["ibs"] = ("the integrated Brier score needs predicted survival probabilities "
                              "(surv_prob=..., shape (n, len(times)))")
    else:
        if tm is None:
            out_refused["ibs"] = "the integrated Brier score needs evaluation times (times=...)"
        else:
            try:
                sp = np.asarray(surv_prob, dtype=float)
                if times is not None and sp.ndim == 2:
                    # columns follow the caller's `times`; put them in ascending order
                    sp = sp[:, np.argsort(np.asarray(times, dtype=float))]
                fams.append((survival_brier.make_ibs_kernel(time, event, sp, tm, train_time,
                                                            train_event, rs), ["ibs"], _undefined))
            except DegenerateInputError as exc:
                out_refused["ibs"] = str(exc)
    return fams


def _regression_families(y, s, rs, threshold, out_refused) -> list[_Family]:
    return [(regression.make_regression_kernel(y, s, rs), list(regression.REGRESSION_METRICS),
             lambda nm: "r2 is undefined: y_true is constant (zero variance)" if nm == "r2" else _undefined(nm))]


# kind name -> fn(y, score, row subjects, threshold, refused) -> metric families (survival, with its
# IPCW and time arguments, is called on its own)
_FAMILIES = {
    "binary": _binary_families,
    "multilabel": lambda y, s, rs, threshold, out_refused: _multilabel_families(y, s, rs, out_refused),
    "regression": _regression_families,
}


def evaluate(kind: Kind, y_true, y_score, subject_ids=None, *, n_boot: int = N_BOOT, seed=0,
             train_time=None, train_event=None, horizon: float | None = None, times=None,
             surv_prob=None, threshold: float | None = None,
             level: float = LEVEL) -> dict[str, MetricResult]:
    """Compute every metric of a task kind with subject-level bootstrap CIs.

    Args:
        kind: "binary" (auroc, auprc, brier, ece, + sensitivity, specificity, ppv, npv, f1 when
            a threshold is given), "multilabel" (auroc_macro, auprc_macro, auroc/<label index>),
            "survival" (c_index_harrell, c_index_uno truncated at horizon, td_auc@<t> for each
            time, td_auc = their Kaplan-Meier-weighted mean, ibs from surv_prob; td_auc and ibs
            are refused when times / surv_prob are missing) or "regression" (mae, rmse, r2).
        y_true: labels: (n,) 0/1 for binary, (n, L) for multilabel, targets for regression;
            survival: (time, event) or another form accepted by `split_survival`.
        y_score: scores: probabilities for binary (brier/ece need [0, 1]), (n, L) for
            multilabel, predictions for regression, risk scores (higher = earlier event) for
            survival.
        subject_ids: (n,) subject of each row; the bootstrap resamples subjects. None = each row
            is its own subject (the method string says so).
        n_boot: bootstrap replicates (0 = point estimates only).
        seed: int seed or numpy Generator for the bootstrap.
        train_time: survival: training follow-up times (censoring distribution for IPCW).
        train_event: survival: training event indicators.
        horizon: survival: truncation time for Uno's C-index; also the td-AUC time when
            `times` is None.
        times: survival: evaluation times for td-AUC and the integrated Brier score.
        surv_prob: survival: (n, len(times)) predicted survival probabilities at `times`.
        threshold: binary: decision threshold chosen on validation data (score >= threshold).
        level: CI coverage (default 0.95).

    Returns:
        Dict metric name -> MetricResult, in the order of `metric_names`.
    """
    k_obj = kind_of(kind)  # ValueError for an unknown kind
    n_labels = np.shape(y_true)[1] if k_obj.multi_output and np.ndim(y_true) == 2 else None
    names = metric_names(kind, n_labels=n_labels, threshold=threshold, times=times,
                         horizon=horizon, surv_prob=surv_prob)
    refused: dict[str, str] = {}
    notes: dict[str, str] = {}  # extra words for a metric's method string
    try:
        event = None
        if k_obj.time_to_event:
            time, event = split_survival(y_true)
            time = binary._as_1d("time", time)
            score_rows = np.atleast_1d(np.asarray(y_score))
            n = binary._same_length(time=time, event=np.asarray(event).ravel(),
                                    y_score=score_rows.reshape(len(score_rows), -1))
        else:
            n = len(np.asarray(y_true))
            if len(np.asarray(y_score)) != n:
                raise DegenerateInputError(
                    f"length mismatch: y_true has {n} rows, y_score has {len(np.asarray(y_score))}")
            if n == 0:
                raise DegenerateInputError("no rows to evaluate")
        scores = np.asarray(y_score, dtype=float)
        if not np.isfinite(scores).all():
            raise DegenerateInputError(
                f"y_score has {int((~np.isfinite(scores)).sum())} non-finite values (NaN or inf)")
        rs, n_subjects = subject_index(subject_ids, n)
        if k_obj.time_to_event:
            fams = _survival_families(time, event, scores, rs, train_time, train_event, horizon,
                                      times, surv_prob, refused, notes)
        else:
            fams = _FAMILIES[k_obj.name](y_true, scores, rs, threshold, refused)
    except (DegenerateInputError, TypeError, ValueError) as exc:
        # ValueError: inputs that numpy cannot read as numbers (e.g. strings as scores)
        return {nm: MetricResult.refuse(str(exc)) for nm in names}

    results: dict[str, MetricResult] = {nm: MetricResult.refuse(why) for nm, why in refused.items()}
    supports = _supports(k_obj, y_true, event, rs, n_subjects, names) if fams else {}
    ones = np.ones((1, n_subjects), dtype=np.int64)
    point = {i: np.asarray(k(ones), dtype=float).reshape(-1) for i, (k, _, _) in enumerate(fams)}
    reps = {}
    if n_boot > 0 and fams:
        reps = replicate_values({i: k for i, (k, _, _) in enumerate(fams)}, n_subjects, n_boot,
                                seed, n_rows=n)
    for i, (_, cols, why) in enumerate(fams):
        for j, nm in enumerate(cols):
            v = point[i][j]
            if not np.isfinite(v):
                results[nm] = MetricResult.refuse(why(nm))
                continue
            note = f"; {notes[nm]}" if nm in notes else ""
            if n_boot == 0:
                results[nm] = MetricResult(float(v), None, None,
                                           describe(n_subjects, 0, 0, level, seed) + note)
                continue
            low, high, n_valid, ci_note = interval(float(v), reps[i][:, j], level=level,
                                                   scale=_scale(nm), support=supports.get(nm),
                                                   n_subjects=n_subjects)
            method = describe(n_subjects, n_boot, n_valid, level, seed, subject_ids is None,
                              _scale(nm))
            results[nm] = MetricResult(float(v), low, high, method + note, ci_note=ci_note)
    return {nm: results.get(nm, MetricResult.refuse(_undefined(nm))) for nm in names}
