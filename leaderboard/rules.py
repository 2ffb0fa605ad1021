"""The leaderboard's honesty rules: what may be ranked, what is tied, what must be withheld.

    make_cell(model, task, records)   a Cell: seeds aggregated, small-cell metrics withheld, and
                                      the reason it is not ranked (too few events, no CI)
    rank_column(cells, task)          ranks of one task column and the ties with its best
    tie_with_best(best, other, task)  paired subject bootstrap on the two models' predictions
    audit_verdict(cell)               pass / fail of a leak-probe cell
    safe_text, fmt_count              small-cell redaction: no displayed count of 1..9

Imports point one way inside the package: records <- rules <- figures <- views <- render <- build.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

import numpy as np

from benchmark.fairness import has_small_cell
from benchmark.kinds import KINDS, TaskKind, kind_of
from benchmark.metrics.bootstrap import MIN_CI_SUBJECTS
from benchmark.records import Metric, ResultRecord
from leaderboard import plots
from leaderboard.records import (
    Cell,
    ResultFile,
    TaskInfo,
    higher_is_better,
    is_num,
    metric_label,
    read_predictions,
)

# Privacy: no displayed number, alone or combined with others, may give a count of 1..MIN_COUNT-1
# (events, non-events, confusion-matrix cells, subgroup cells).
MIN_COUNT = plots.MIN_COUNT
# Operating-point metrics: with n test and the event count they solve for TP / FP / FN / TN.
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")
# Honesty: a cell is ranked only with this many test subjects in the rarer outcome class.
MIN_RANK_SUBJECTS = MIN_CI_SUBJECTS
# Ties with the best: paired subject bootstrap of the main metric on the shared held-out rows.
TIE_ALPHA = 0.05
TIE_N_BOOT = 1000
TIE_SEED = 0
# main metric -> the benchmark.stats.paired_bootstrap metric that computes the same quantity
PAIRED_METRIC = {"auroc": "auroc", "auprc": "auprc", "c_index_harrell": "c_index", "auroc_macro": "auroc_macro",
                 "mae": "mae"}


# =========================================================================== small counts
def fmt_count(n: Any) -> str:
    """A count for display: '<10' for 1..9 (small-cell rule), '—' for missing.

    Args:
        n: a count or None.

    Returns:
        The text.
    """
    if not is_num(n):
        return "\u2014"
    return f"<{MIN_COUNT}" if 0 < n < MIN_COUNT else str(int(n))


def count_sort_key(n: Any) -> str:
    """The data-v (sort key) of a count: the count itself, or '' when it must not be shown."""
    return str(int(n)) if is_num(n) and not 0 < n < MIN_COUNT else ""


_PEOPLE = r"(?:subjects?|events?|positives?|negatives?|samples?|rows?|cases?|controls?|patients?|deaths?)"
_SMALL_COUNT_RE = re.compile(r"(?<![\w.<>=\u2265\u2264+-])(?<![<>]= )(?<![\u2265\u2264] )([1-9])(?=\s+(?:[A-Za-z/-]+\s+){0,2}" + _PEOPLE + r"\b)")
_SMALL_N_RE = re.compile(r"\b(n(?:_test|_events)?\s*=\s*)([1-9])(?![\d.])")


def safe_text(text: Any) -> str:
    """A note or reason from a result file with every small count (1..9 subjects, events, ...)
    replaced by '<10', e.g. 'CI not reported: 7 positive subjects (needs >= 10)' ->
    'CI not reported: <10 positive subjects (needs >= 10)'.

    Args:
        text: the note (None -> '').

    Returns:
        The text, safe to show.
    """
    if text is None:
        return ""
    out = _SMALL_COUNT_RE.sub(f"<{MIN_COUNT}", str(text))
    return _SMALL_N_RE.sub(lambda m: m.group(1) + f"<{MIN_COUNT}", out)


RATES = ("selection_rate", "tpr", "fpr")


def legacy_rates_problem(groups: list[dict]) -> str:
    """For a fairness attribute written before fairness.py checked small cells: why its group rates
    must not be shown ('' when every group's rates x counts give cells of 0 or >= MIN_COUNT)."""
    for g in groups:
        if g.get("suppressed") or not any(is_num(g.get(k)) for k in RATES):
            continue
        n, e, tpr, fpr = g.get("n_samples"), g.get("n_events"), g.get("tpr"), g.get("fpr")
        if not all(is_num(x) for x in (n, e, tpr, fpr)):
            return ("group rates withheld: this result file predates the small-cell check and lacks the counts "
                    "to check it (rerun the cell)")
        neg = int(n) - int(e)
        tp, fp = int(round(tpr * e)), int(round(fpr * neg))
        if has_small_cell((tp, fp, int(e) - tp, neg - fp), MIN_COUNT):
            return f"group rates withheld: rates x counts would give a confusion-matrix cell below {MIN_COUNT}"
    return ""


# =========================================================================== cells
def aggregate_metric(entries: list[Metric | None]) -> dict:
    """Combine one metric over seeds: mean value, mean CI bounds, seed SD.

    Args:
        entries: the metric of each seed (None where a seed lacks it).

    Returns:
        dict with value, ci_low, ci_high, method, refused, n_seeds, sd.
    """
    good = [e for e in entries if e is not None and is_num(e.value)]
    if not good:
        why = next((e.refused for e in entries if e is not None and e.refused), "")
        return {"value": None, "ci_low": None, "ci_high": None, "method": "", "refused": safe_text(why or "no value"),
                "n_seeds": 0, "sd": None, "ci_note": None}
    # a seed whose sample could not support an interval says why ("CI not reported: ..."); the note
    # replaces the CI on the page, with small counts shown as "<10"
    note = next((e.ci_note for e in good if e.ci_note), None)
    if len(good) == 1:
        e = good[0]
        lo = e.ci_low if is_num(e.ci_low) else None
        hi = e.ci_high if is_num(e.ci_high) else None
        return {"value": float(e.value), "ci_low": lo, "ci_high": hi,
                "method": safe_text(e.method or ""), "refused": None, "n_seeds": 1, "sd": None,
                "ci_note": safe_text(note) if lo is None or hi is None else None}
    vals = [float(e.value) for e in good]
    lows = [e.ci_low for e in good]
    highs = [e.ci_high for e in good]
    both = all(is_num(x) for x in lows + highs)
    if not both and note is None:
        note = "CI not reported for every seed"
    return {"value": statistics.fmean(vals), "ci_low": statistics.fmean(lows) if both else None,
            "ci_high": statistics.fmean(highs) if both else None,
            "method": f"mean over {len(good)} seeds (CI: mean of the per-seed intervals); per seed: "
                      + safe_text(good[0].method or ""),
            "refused": None, "n_seeds": len(good), "sd": statistics.stdev(vals),
            "ci_note": None if both else safe_text(note)}


def make_cell(model: str, task: TaskInfo, recs: list[ResultFile]) -> Cell:
    """One (model, task) cell: metrics aggregated over ok seeds, status and reason, operating-point
    metrics withheld where they would reveal a small count, and why it may not be ranked.

    Args:
        model: model name.
        task: the task.
        recs: the cell's records (any seed order, newest task version only).

    Returns:
        Cell (not yet ranked: see `rank_column`).
    """
    recs = sorted(recs, key=lambda r: r.rec.seed)
    ok = [r for r in recs if r.rec.status == "ok" and r.rec.metrics is not None]
    seeds = [r.rec.seed for r in recs]
    metrics: dict[str, dict] = {}
    if ok:
        names = sorted({n for r in ok for n in r.rec.metrics})
        metrics = {n: aggregate_metric([r.rec.metrics.get(n) for r in ok]) for n in names}
    main = metrics.get(task.main_metric) or {"value": None, "refused": "main metric missing"}
    refused = [r.rec for r in recs if r.rec.status == "refused"]
    if ok and is_num(main.get("value")):
        status, reason = "ok", ""
    elif refused:
        status = "refused"
        m = (refused[0].metrics or {}).get(task.main_metric)
        reason = (m.refused if m is not None else None) or "the main metric is undefined on this data"
    elif ok:
        status, reason = "refused", str(main.get("refused") or "the main metric is undefined")
    else:
        status, reason = "failed", "the run failed (see the result file)"
    compute = _compute_summary([r.rec for r in recs])
    r0 = (ok or recs)[0].rec if recs else None
    if _kind(task.kind) is not None and _kind(task.kind).chooses_threshold and ok:
        _withhold_threshold_metrics(metrics, [r.rec for r in ok])
    cell = Cell(model=model, task=task.name, status=status, seeds=seeds, n_ok=len(ok), metrics=metrics,
                main=main, records=ok, compute=compute, n_test=r0.n_test if r0 else None,
                n_events=r0.n_events if r0 else None,
                reason=safe_text(reason))
    if status == "ok":
        cell.unranked = _unranked_reason(cell, task)
        if cell.unranked and not cell.unranked.startswith("main metric without a CI"):
            # too few subjects in a class for any interval (the MIN_CI_SUBJECTS rule of
            # benchmark.metrics): an older result file's CI is not shown either
            for m in metrics.values():
                if is_num(m.get("value")) and (m.get("ci_low") is not None or m.get("ci_high") is not None):
                    m.update(ci_low=None, ci_high=None, ci_note=f"CI not reported: {cell.unranked.split(' (')[0]}")
    return cell


def _compute_summary(recs: list[ResultRecord]) -> dict:
    """What a cell's seeds cost: mean wall time and tokens/s, the largest peak RSS, the devices, and
    the first reported parameter count (None where no seed reports one)."""
    comp = [r.compute for r in recs]
    walls = [c.wall_s for c in comp if is_num(c.wall_s)]
    rss = [c.peak_rss_mb for c in comp if is_num(c.peak_rss_mb)]
    tps = [c.tokens_per_s for c in comp if is_num(c.tokens_per_s)]
    return {
        "wall_s": statistics.fmean(walls) if walls else None,
        "peak_rss_mb": max(rss, default=None),
        "device": ", ".join(sorted({c.device for c in comp if c.device})) or None,
        "n_parameters": next((c.n_parameters for c in comp if c.n_parameters is not None), None),
        "tokens_per_s": statistics.fmean(tps) if tps else None,
    }


# =========================================================================== small cells
def confusion_from_record(rec: ResultRecord) -> tuple[int, int, int, int] | None:
    """The confusion matrix (TP, FP, FN, TN) that a result's displayed numbers imply: what a reader
    can solve from n test, the event count, sensitivity and specificity (PPV, NPV and F1 add nothing
    once these are known).

    Args:
        rec: a result record (n_test, n_events, metrics with sensitivity / specificity values).

    Returns:
        (TP, FP, FN, TN), or None when the record does not give them.
    """
    m = rec.metrics or {}
    sens = m["sensitivity"].value if "sensitivity" in m else None
    spec = m["specificity"].value if "specificity" in m else None
    n, e = rec.n_test, rec.n_events
    if n is None or e is None or not (is_num(sens) and is_num(spec)):
        return None
    pos, neg = e, n - e
    tp, tn = int(round(sens * pos)), int(round(spec * neg))
    return tp, neg - tn, pos - tp, tn


def _withhold_threshold_metrics(metrics: dict[str, dict], ok: list[ResultRecord]) -> None:
    """Replace the operating-point metrics of a binary cell by a 'withheld' entry when, for any seed,
    they (with n test) would reveal a count of 1..MIN_COUNT-1: events, non-events or a confusion
    cell. Also when the record does not let us check (no event count): we cannot prove it safe."""
    present = [n for n in THRESHOLD_METRICS if is_num((metrics.get(n) or {}).get("value"))]
    if not present:
        return
    why = ""
    for r in ok:
        cells = confusion_from_record(r)
        if cells is None:
            why = "withheld: the result file does not give the counts needed to check for small cells"
            break
        pos, neg = cells[0] + cells[2], cells[1] + cells[3]
        if has_small_cell((*cells, pos, neg), MIN_COUNT):
            why = (f"withheld: with n test these values would reveal a count below {MIN_COUNT} "
                   "(events, non-events or a TP / FP / FN / TN cell)")
            break
    if why:
        for n in present:
            metrics[n] = {"value": None, "ci_low": None, "ci_high": None, "method": "", "refused": None,
                          "withheld": why, "n_seeds": 0, "sd": None, "ci_note": None}


# =========================================================================== ranking honesty
def _kind(name: str) -> TaskKind | None:
    """The kind object of a result's task kind; None for a kind this version does not know."""
    return KINDS.get(name) if isinstance(name, str) else None


def _class_counts(cell: Cell, kind: str) -> tuple[int, ...] | None:
    """Test subjects with / without the outcome (binary, survival: event) or all test subjects
    (regression), from the predictions of the lowest ok seed; else from the record's counts (rows)."""
    support = _kind(kind).rank_support if _kind(kind) is not None else None
    df = read_predictions(cell.records[0].pred) if cell.records else None
    if df is not None and "subject_id" in df.columns:
        try:
            sid = df["subject_id"].to_numpy()
            if support == "outcome" and "boolean_value" in df.columns:
                y = df["boolean_value"].cast(bool).to_numpy()
                return int(len(np.unique(sid[y]))), int(len(np.unique(sid[~y])))
            if support == "subjects":
                return (int(len(np.unique(sid))),)
        except Exception:  # noqa: BLE001 - a malformed file falls back to the record's counts
            pass
    if support == "outcome" and is_num(cell.n_events) and is_num(cell.n_test):
        return int(cell.n_events), int(cell.n_test) - int(cell.n_events)
    if support == "subjects" and is_num(cell.n_test):
        return (int(cell.n_test),)
    return None


def _unranked_reason(cell: Cell, task: TaskInfo) -> str:
    """Why an ok cell must not be ranked ('' if it may): fewer than MIN_RANK_SUBJECTS test subjects
    in the rarer outcome class, or a main metric whose sample could not support a CI. The reason
    never states a small count."""
    counts = _class_counts(cell, task.kind)
    if counts is not None and min(counts) < MIN_RANK_SUBJECTS:
        word = _kind(task.kind).outcome_phrase()
        if word is None:
            return f"fewer than {MIN_RANK_SUBJECTS} test subjects"
        side = "with" if counts[0] <= counts[1] else "without"
        return (f"fewer than {MIN_RANK_SUBJECTS} test subjects {side} {word} (a rank needs at least "
                f"{MIN_RANK_SUBJECTS} in the rarer class)")
    if cell.main.get("ci_note"):
        return f"main metric without a CI ({cell.main['ci_note']})"
    return ""


def rank_column(cells: list[Cell], task: TaskInfo) -> None:
    """Rank a column's eligible cells (1 = best point estimate), then mark every cell statistically
    tied with the best (paired test on the same held-out predictions, see `tie_with_best`)."""
    metric = task.main_metric
    vals = [c for c in cells if c.status == "ok" and is_num(c.main.get("value")) and not c.unranked]
    hib = higher_is_better(metric)
    for c in vals:
        v = c.main["value"]
        better = sum(1 for o in vals if (o.main["value"] > v if hib else o.main["value"] < v))
        c.rank = better + 1
        c.best = c.rank == 1
        c.n_ranked = len(vals)
    best = sorted((c for c in vals if c.best), key=lambda c: c.model)
    if not best:
        return
    for c in vals:
        if c.best:
            c.tie_note = "best point estimate" + (" (shared)" if len(best) > 1 else "")
            continue
        c.tied, c.tie_note = tie_with_best(best[0], c, task)


def _joined_predictions(a: Cell, b: Cell, kind: str):
    """Held-out predictions of two cells on their shared rows (lowest common ok seed), joined on
    (subject_id, prediction_time): (labels, score_a, score_b, subject_ids), or why not."""
    sa = {r.rec.seed: r for r in a.records}
    sb = {r.rec.seed: r for r in b.records}
    common = sorted(set(sa) & set(sb))
    if not common:
        return "no common seed"
    fa, fb = read_predictions(sa[common[0]].pred), read_predictions(sb[common[0]].pred)
    if fa is None or fb is None:
        return "a predictions file is missing"
    try:
        key = ["subject_id", "prediction_time"]
        label_cols = [c for c in fb.columns if c in ("boolean_value", "float_value") or c.startswith("boolean_value/")]
        fb = fb.select([*key, *label_cols, *[c for c in fb.columns if c.startswith("predicted_")]])
        j = fa.join(fb, on=key, how="inner", suffix="__b")
        if j.height == 0:
            return "the two prediction files share no (subject, time) row"
        if any(not j[c].equals(j[c + "__b"]) for c in label_cols):
            return "labels differ between the two prediction files"
        y, s1 = kind_of(kind).read_predictions(j, sort_labels=True)
        _, s2 = kind_of(kind).read_predictions(j, score_suffix="__b", sort_labels=True)
        return y, s1, s2, j["subject_id"].to_numpy()
    except Exception as e:  # noqa: BLE001 - one malformed file: fall back to the CI rule
        return f"predictions could not be joined ({type(e).__name__})"


def _ci_overlap(best: Cell, other: Cell) -> tuple[bool, str]:
    """Fallback tie rule without a paired test: the two 95% CIs overlap (or one is missing)."""
    b, o = best.main, other.main
    if not all(is_num(x) for x in (b.get("ci_low"), b.get("ci_high"), o.get("ci_low"), o.get("ci_high"))):
        return True, "counted as tied: no CI to compare"
    overlap = o["ci_low"] <= b["ci_high"] and b["ci_low"] <= o["ci_high"]
    return overlap, "95% CIs " + ("overlap" if overlap else "do not overlap")


def tie_with_best(best: Cell, other: Cell, task: TaskInfo) -> tuple[bool, str]:
    """Whether `other` is statistically tied with the column's best cell.

    Paired subject bootstrap of the main metric (`benchmark.stats.paired_bootstrap`, TIE_N_BOOT
    resamples, seed TIE_SEED) on the two models' held-out predictions of the same seed, joined on
    (subject_id, prediction_time): tied when the 95% CI of the difference covers 0 or p >= TIE_ALPHA,
    and when the sample is too small for the test to report a CI / p. Main metrics without a paired
    kernel (Uno's C, ...) and cells without predictions fall back to overlapping 95% CIs, which
    errs towards "tied".

    Args:
        best: the best cell (rank 1).
        other: another ranked cell of the same task.
        task: the task.

    Returns:
        (tied, how it was decided, in words).
    """
    from benchmark.metrics.binary import DegenerateInputError
    from benchmark.stats.paired import paired_bootstrap

    metric = PAIRED_METRIC.get(task.main_metric)
    why = f"no paired test for {metric_label(task.main_metric)}"
    if metric is not None:
        joined = _joined_predictions(best, other, task.kind)
        if isinstance(joined, str):
            why = joined
        else:
            y, s_best, s_other, sid = joined
            try:
                res = paired_bootstrap(y, s_best, s_other, sid, metric=metric, n_boot=TIE_N_BOOT, seed=TIE_SEED)
            except (DegenerateInputError, ValueError) as e:
                why = f"paired test not possible ({safe_text(e)})"
            else:
                lo, hi, p = res.ci_low, res.ci_high, res.p_value
                if not (is_num(lo) and is_num(hi)) and not is_num(p):
                    note = safe_text(getattr(res, "note", None) or getattr(res, "ci_note", None) or "too few events")
                    return True, f"counted as tied: the paired test is not reported ({note})"
                covers = is_num(lo) and is_num(hi) and lo <= 0 <= hi
                tied = covers or (is_num(p) and p >= TIE_ALPHA)
                ci = f"[{lo:+.3f}, {hi:+.3f}]" if is_num(lo) and is_num(hi) else "not reported"
                pt = ("<0.001" if p < 0.001 else f"{p:.3f}") if is_num(p) else "not reported"
                return bool(tied), (f"paired bootstrap vs {best.model}: difference {res.delta:+.3f}, 95% CI {ci}, "
                                    f"p = {pt}")
    tied, how = _ci_overlap(best, other)
    return tied, f"{how} ({why})"


# =========================================================================== audits
def audit_verdict(cell: Cell) -> tuple[str, str]:
    """Pass / fail of a leak-probe cell: the probe's label is only predictable from data after the
    prediction time, so an honest model scores AUROC ~0.5.

    Args:
        cell: a cell of an audit task (main metric AUROC).

    Returns:
        (verdict, why): "fail" when the 95% CI lies above 0.5 (significantly better than chance),
        "pass" when it contains 0.5 (or lies below); without a CI the Mann-Whitney U test of
        AUROC > 0.5 decides ("inconclusive" when a class is too small); else the cell's status
        (failed / refused).
    """
    if cell.status != "ok":
        return cell.status, cell.reason
    lo, hi = cell.main.get("ci_low"), cell.main.get("ci_high")
    if not (is_num(lo) and is_num(hi)):
        return _rank_test_verdict(cell)
    if lo > 0.5:
        return "fail", "the 95% CI lies above 0.5: the model reads data from after the prediction time"
    return "pass", "the 95% CI " + ("contains 0.5" if hi >= 0.5 else "lies below 0.5") + ": no sign of a leak"


def _rank_test_verdict(cell: Cell) -> tuple[str, str]:
    """Leak-probe verdict without a bootstrap CI (e.g. AUROC 1 in every resample, which a bootstrap
    cannot bound): the one-sided Mann-Whitney U test of AUROC > 0.5 on the held-out predictions
    (AUROC = U / (n1 n0); rows as units), when both classes have MIN_RANK_SUBJECTS subjects."""
    from scipy.stats import mannwhitneyu

    note = cell.main.get("ci_note") or "no CI"
    df = read_predictions(cell.records[0].pred) if cell.records else None
    if df is None or not {"boolean_value", "predicted_boolean_probability", "subject_id"} <= set(df.columns):
        return "inconclusive", f"{note}; no predictions to test"
    y = df["boolean_value"].cast(bool).to_numpy()
    p = df["predicted_boolean_probability"].cast(float).to_numpy()
    sid = df["subject_id"].to_numpy()
    if min(len(np.unique(sid[y])), len(np.unique(sid[~y]))) < MIN_RANK_SUBJECTS:
        return "inconclusive", f"{note}; too few subjects in a class to test"
    pv = float(mannwhitneyu(p[y], p[~y], alternative="greater").pvalue)
    pt = "<0.001" if pv < 0.001 else f"{pv:.3f}"
    if pv < TIE_ALPHA:
        return "fail", f"{note}; Mann-Whitney U test of AUROC > 0.5: p = {pt}: the model reads data from the future"
    return "pass", f"{note}; Mann-Whitney U test of AUROC > 0.5: p = {pt}: no sign of a leak"
