"""Task-kind objects (benchmark.kinds): one object per kind owns what is kind-specific.

The oracles are the string-switch implementations the kind objects replaced (copied here as they
were), so each kind's targets, n_events, predictions frame, stratification key and selection metric
are checked against the behaviour before the refactor. A grep test keeps new `kind == "..."`
switches out of the packages.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.kinds import KINDS, LOWER_IS_BETTER, TaskKind, kind_of
from benchmark.learn.folds import stratification_key
from benchmark.learn.selection import SELECTION_METRIC, selection_score
from benchmark.metrics.binary import DegenerateInputError, auroc
from benchmark.metrics.regression import mae
from benchmark.metrics.survival import c_index_harrell

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "baselines", "encoders", "leaderboard")
# the grep of the issue: kind == "...", kind in (...), "..." compared with a kind name
SWITCH = re.compile(r"""kind ?(==|!=|in) ?[\("']|== ?"(binary|survival|multilabel|regression)\"""")
# Switches still allowed, with the count per file and why (none today). Keep the counts exact: the
# test fails on a stale count, so the list stays true. Code inside a model family or the metric
# engine that is about a library's API (which estimator, objective or metric kernel) uses a table
# keyed by the kind's name instead (tabular learners, probe estimators, fusion objectives, metric
# families, label builders, leaderboard curves).
EXCEPTIONS: dict[str, tuple[int, str]] = {
    "benchmark/kinds.py": (0, "the kind objects themselves"),
}


def _switches() -> dict[str, list[str]]:
    """path -> the lines holding a string kind switch (numpy's dtype.kind is not a task kind)."""
    out: dict[str, list[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if SWITCH.search(line) and "dtype.kind" not in line:
                    out.setdefault(str(path.relative_to(ROOT)), []).append(f"{i}: {line.strip()}")
    return out


def test_no_string_kind_switches_outside_kinds_py():
    found = _switches()
    new = {p: lines for p, lines in found.items() if p not in EXCEPTIONS}
    assert not new, f"string task-kind switches outside benchmark/kinds.py (ask the kind object instead): {new}"
    stale = {p: (len(found.get(p, [])), n) for p, (n, _) in EXCEPTIONS.items() if len(found.get(p, [])) != n}
    assert not stale, f"exception counts out of date (found, listed): {stale}"


def test_grep_pattern_catches_the_forms_it_must():
    for line in ('if kind == "binary":', "if task.kind in ('binary', 'survival'):", 'x = k == "survival"',
                 'if self.kind != "regression":'):
        assert SWITCH.search(line), line
    assert not SWITCH.search("if kind_of(task).chooses_threshold:")


# ------------------------------------------------------------------------------------ registry
def test_registry_names_and_lookup():
    assert list(KINDS) == ["binary", "multilabel", "survival", "regression"]
    for name, k in KINDS.items():
        assert isinstance(k, TaskKind) and k.name == name == str(k)
        assert kind_of(name) is k and kind_of(k) is k

    class _Task:
        kind = "survival"
    assert kind_of(_Task()) is KINDS["survival"]
    with pytest.raises(ValueError, match="unknown task kind 'ordinal'"):
        kind_of("ordinal")


def test_taskspec_kind_obj_and_metrics():
    from benchmark.task_registry import load_tasks
    from benchmark.taskspec import METRICS_BY_KIND

    assert METRICS_BY_KIND == {"binary": ("auroc", "auprc", "brier", "ece"),
                               "multilabel": ("auroc_macro", "auprc_macro"),
                               "survival": ("c_index_harrell", "c_index_uno", "td_auc", "ibs"),
                               "regression": ("mae", "rmse", "r2")}
    tasks = load_tasks()
    assert {t.kind for t in tasks.values()} == set(KINDS)  # the shipped tasks use every kind
    for task in tasks.values():
        assert task.kind_obj is KINDS[task.kind]


def test_one_lower_is_better_vocabulary():
    from benchmark.stats import paired as stats  # the paired tests read the sign from the one vocabulary
    from benchmark.learn import selection
    from leaderboard import records

    assert LOWER_IS_BETTER == frozenset({"mae", "rmse", "brier", "ece", "ibs"})
    assert stats.LOWER_IS_BETTER is selection.LOWER_IS_BETTER is records.LOWER_IS_BETTER is LOWER_IS_BETTER
    assert [m for m in SELECTION_METRIC.values() if m in LOWER_IS_BETTER] == ["mae"]  # as selection had it


# ------------------------------------------------------------------------------------ oracles (the old switches)
def _old_y(kind: str, f: pl.DataFrame, n_labels: int) -> np.ndarray:
    """TaskData.y before the refactor."""
    if kind == "binary":
        return f["boolean_value"].cast(pl.Int8).to_numpy()
    if kind == "multilabel":
        bits = f["integer_value"].to_numpy().astype(np.int64)
        return ((bits[:, None] >> np.arange(n_labels)[None, :]) & 1).astype(np.int8)
    if kind == "survival":
        return np.column_stack([f["float_value"].to_numpy().astype(float),
                                f["boolean_value"].cast(pl.Float64).to_numpy()])
    return f["float_value"].to_numpy().astype(float)


def _old_n_events(kind: str, y: np.ndarray):
    """runner._n_events before the refactor."""
    if kind in ("binary", "multilabel"):
        return int(y.sum())
    return int(y[:, 1].sum()) if kind == "survival" else None


def _old_predictions(kind, f, y, score, names):
    """runner.predictions_frame before the refactor, with issue 17's meds-evaluation changes: binary
    adds predicted_boolean_value (probability >= 0.5) and probabilities are float64 (was float32)."""
    if kind == "binary":
        return f.with_columns(pl.Series("boolean_value", y.astype(bool)),
                              pl.Series("predicted_boolean_value", score >= 0.5),
                              pl.Series("predicted_boolean_probability", score.astype(np.float64)))
    if kind == "multilabel":
        cols = []
        for i, n in enumerate(names):
            cols += [pl.Series(f"boolean_value/{n}", y[:, i].astype(bool)),
                     pl.Series(f"predicted_boolean_probability/{n}", score[:, i].astype(np.float64))]
        return f.with_columns(cols)
    if kind == "survival":
        return f.with_columns(pl.Series("float_value", y[:, 0]), pl.Series("boolean_value", y[:, 1].astype(bool)),
                              pl.Series("predicted_risk", score.astype(np.float64)))
    return f.with_columns(pl.Series("float_value", y), pl.Series("predicted_float_value", score.astype(np.float64)))


def _old_selection(kind, y, score):
    """learn.selection.selection_score before the refactor."""
    try:
        if kind == "binary":
            return float(auroc(y, score))
        if kind == "multilabel":
            vals = [float(auroc(y[:, j], score[:, j])) for j in range(y.shape[1]) if len(np.unique(y[:, j])) == 2]
            return float(np.mean(vals)) if vals else math.nan
        if kind == "survival":
            return float(c_index_harrell(y[:, 0], y[:, 1].astype(bool), score))
        return float(mae(y, score))
    except DegenerateInputError:
        return math.nan


def _old_strat(kind, y):
    """learn.folds.stratification_key before the refactor."""
    y = np.asarray(y)
    if kind == "binary":
        return y.astype(int)
    if kind == "survival":
        return y[:, 1].astype(int)
    if kind == "multilabel":
        Y = y.reshape(len(y), -1).astype(bool)
        order = np.argsort(Y.mean(0), kind="stable")
        pos = np.where(Y[:, order], np.arange(Y.shape[1])[None, :], Y.shape[1]).min(1)
        return np.append(order, Y.shape[1])[pos].astype(int)
    v = y.astype(float)
    edges = np.quantile(v, np.linspace(0, 1, 6)[1:-1]) if len(v) else []
    return np.searchsorted(np.unique(edges), v, side="right").astype(int)


def _label_frame(kind: str, n: int, rng) -> pl.DataFrame:
    """MEDS LabelSchema rows of a kind (random values)."""
    base = {"subject_id": np.arange(n, dtype=np.int64),
            "prediction_time": [datetime(2020, 1, 1)] * n}
    f = pl.DataFrame(base)
    if kind == "binary":
        return f.with_columns(pl.Series("boolean_value", rng.random(n) < 0.3))
    if kind == "multilabel":
        return f.with_columns(pl.Series("integer_value", rng.integers(0, 8, n), dtype=pl.Int64))
    if kind == "survival":
        return f.with_columns(pl.Series("boolean_value", rng.random(n) < 0.4),
                              pl.Series("float_value", rng.exponential(200, n).astype(np.float32)))
    return f.with_columns(pl.Series("float_value", rng.exponential(5, n).astype(np.float32)))


def _scores(kind, y, rng):
    return rng.random(y.shape) if kind == "multilabel" else (
        rng.normal(size=len(y)) if kind in ("survival", "regression") else rng.random(len(y)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_object_matches_the_old_switches(kind):
    rng = np.random.default_rng(7)
    names = ["a", "b", "c"]
    n_labels = 3 if kind == "multilabel" else 1
    f = _label_frame(kind, 300, rng)
    k = KINDS[kind]
    y = k.targets(f, n_labels)
    old = _old_y(kind, f, n_labels)
    assert y.dtype == old.dtype and y.shape == old.shape and np.array_equal(y, old)
    assert k.n_events(y) == _old_n_events(kind, y)
    s = _scores(kind, y, rng)
    samples = f.select("subject_id", "prediction_time")
    new_pred = k.predictions_frame(samples, y, s, names)
    assert new_pred.equals(_old_predictions(kind, samples, y, s, names))
    assert list(new_pred.columns[2:]) == k.prediction_columns(names)
    assert np.array_equal(stratification_key(kind, y), _old_strat(kind, y))
    assert selection_score(kind, y, s) == pytest.approx(_old_selection(kind, y, s), nan_ok=True)
    # reading a predictions file back gives the targets and scores (compare, leaderboard ties)
    ry, rs = k.read_predictions(new_pred)
    assert np.allclose(np.asarray(ry, float), np.asarray(y, float))
    assert np.allclose(rs, s, atol=1e-6)
    old_truth = ([c for c in new_pred.columns if c.startswith("boolean_value/")] if kind == "multilabel" else
                 {"binary": ["boolean_value"], "survival": ["boolean_value", "float_value"],
                  "regression": ["float_value"]}[kind])  # leaderboard.compare._label_columns before
    assert k.truth_columns(new_pred.columns) == old_truth


def test_kind_flags_are_the_old_rules():
    """Threshold on tuning (binary only), event counts (binary, survival), one-class rule."""
    assert [n for n, k in KINDS.items() if k.chooses_threshold] == ["binary"]
    assert [n for n, k in KINDS.items() if k.has_events] == ["binary", "survival"]
    lab = pl.DataFrame({"boolean_value": [True, True, True]})
    assert KINDS["binary"].events_in_labels(lab) == 3 and KINDS["binary"].one_class_problem(3, 3)
    assert KINDS["survival"].events_in_labels(lab) == 3 and not KINDS["survival"].one_class_problem(3, 3)
    assert KINDS["survival"].one_class_problem(0, 3)
    assert KINDS["regression"].events_in_labels(lab) is None
    assert SELECTION_METRIC == {"binary": "auroc", "multilabel": "auroc_macro", "survival": "c_index_harrell",
                                "regression": "mae"}


def test_survival_evaluation_options_match_old_scoring():
    rng = np.random.default_rng(3)
    y = np.column_stack([rng.exponential(100, 50), rng.random(50) < 0.5]).astype(float)
    yfit = np.column_stack([rng.exponential(100, 80), rng.random(80) < 0.5]).astype(float)
    kw = KINDS["survival"].evaluation_options(y, yfit, None, None, 365.0)
    ev = y[y[:, 1] == 1, 0]
    assert np.array_equal(kw["times"], np.unique(np.round(np.quantile(ev, [0.25, 0.5, 0.75]))))
    assert kw["horizon"] == 365.0 and np.array_equal(kw["train_event"], yfit[:, 1].astype(bool))
    t, e = KINDS["survival"].evaluation_target(y)
    assert np.array_equal(t, y[:, 0]) and e.dtype == bool
    assert KINDS["binary"].evaluation_options(y[:, 1], yfit[:, 1], None, None, None) == {}


def test_kind_tables_inside_families_cover_every_kind():
    """The tables keyed by kind name (library API inside a family, the metric engine, the labeler)
    name exactly the known kinds, so a fifth kind fails here rather than deep inside a run."""
    import importlib

    from baselines import learners
    from benchmark import labels
    from encoders.mehrt import probe
    from leaderboard import figures

    evaluate = importlib.import_module("benchmark.metrics.evaluate")
    for table in (evaluate._NAMES, evaluate._SUPPORTS, labels._LABELERS, probe._PROBES):
        assert set(table) == set(KINDS)
    assert set(evaluate._FAMILIES) == {n for n, k in KINDS.items() if not k.time_to_event}
    assert set(figures._CURVES) <= set(KINDS)
    assert all(set(ks) <= set(KINDS) for ks in learners.SUPPORTED_KINDS.values())
