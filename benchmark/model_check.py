"""`check-model NAME|MODULE`: the registry contract, run on a tiny synthetic cohort before a model is submitted.

For each spec the target holds, one row per check, each pass / fail / skip with a concrete fix:

    spec         the ModelSpec validates; n_parameters is None or positive; the factory takes (budget, seed)
    factory      factory(budget=, seed=) builds an object with fit(data) and predict(data, split)
    fit <kind>   on a small built-in task of each declared kind the model's modalities allow: fit, then
                 predict tuning and held_out; scores have the kind's shape, are numeric, finite and in
                 range (probabilities in [0, 1]); the predictions file and the record's model_info can
                 be written; wall time and peak RSS of the fit (reported, failed above a generous limit)
    determinism  a second fit with the same seed gives identical held-out scores (per kind)
    future invariance <kind>
                 the oracle that needs no planted marker: the same task on copies of the cohort where
                 every row of each tuning / held-out subject after its last prediction time is deleted,
                 then replaced by a burst (shifted values, a planted death and codes; benchmark.data.
                 future_cohort), fitted with the ORIGINAL labels as `run --labels` passes them: tuning
                 and held-out scores must equal the intact fit's (per kind whose determinism passed)
    leakage      leak/probe: the label is a coin flip whose only trace is an event one hour AFTER the
                 prediction time; a model reading only TaskData.visible_events / visible_modality
                 stays near AUROC 0.5, one that reads the cohort's raw events finds it
    n_parameters the fitted model's reported size (Prediction.info) is a positive int, and within a
                 factor 10 of the spec's when the spec gives one

The cohort is the synthetic generator's (entry point mehr_bench.cohorts, the same door as the
default cohort) at N_SUBJECTS subjects, generated once into the cache. The core never imports the
model's family: the model is reached only through its spec and factory.
"""

from __future__ import annotations

import inspect
import json
import time
import traceback
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from benchmark.errors import UserError
from benchmark.peak_rss import PeakRSS
from benchmark.model_api import Budget, Prediction, TaskData
from benchmark.registry import ModelSpec, get_model, load_target, model_names

N_SUBJECTS = 600          # leak/probe then has ~65 tuning + held-out samples (~20 positives)
COHORT_SEED = 0
LEAK_TASK = "leak/probe"
# AUROC over the pooled tuning + held-out scores of leak/probe. Under no leak the AUROC of ~20 positives
# vs ~45 negatives has a standard deviation of ~0.08 around 0.5 (0.8 is ~4 SD away, one-sided p < 1e-4);
# a model that reads the post-prediction marker reaches ~1.
LEAK_MAX_AUROC = 0.80
MAX_FIT_S = 900.0         # generous: a smoke-budget fit on this cohort takes seconds for the baselines
MAX_RSS_MB = 16_000.0
# built-in tasks tried first for each kind (the synthetic cohort has them all); any other task of the
# kind that the model's `requires` allows is the fallback
PREFERRED_TASKS = {"binary": ("oncology/mortality_1y", "icu/mortality_24h", "onset/t2d_10y"),
                   "multilabel": ("cxr/chexpert_multilabel",),
                   "survival": ("survival/mace", "survival/pe_mortality"),
                   "regression": ("icu/los_days_24h",)}
# A model whose fit on a perturbed cohort is slow (a pretraining foundation model re-pretrains on
# each copy: its cache is keyed by the cohort's content) gets the row on its first kind only
FUTURE_MORE_KINDS_MAX_S = 60.0
FUTURE_RTOL = 1e-9        # float noise; the determinism row already asks for bit-identical refits
FUTURE_VARIANT_TEXT = {"deleted": "the evaluation subjects' rows after their last prediction time deleted",
                       "burst": "the evaluation subjects' rows after their last prediction time replaced by a "
                                "burst (shifted values, a planted death and codes)"}
FIX_FUTURE = ("read events only through TaskData.visible_events() / visible_modality(); anything computed from "
              "held-out or tuning subjects' full timelines (vocabularies, normalisation statistics, pretraining "
              "corpora) must come from the training split")
FIX_PREDICT = ("predict(data, split) must return Prediction(score=...) with one row per data.samples(split) row, "
               "in that order")


class CheckRow(BaseModel):
    """One check's outcome.

    Args:
        model: the spec's name (the target when no spec loaded).
        check: what was checked ("spec", "factory", "fit binary", "determinism binary", "leakage", ...).
        status: "pass", "fail" or "skip".
        detail: what was found (numbers, the error).
        fix: what to change (fail and skip rows).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    check: str
    status: Literal["pass", "fail", "skip"]
    detail: str
    fix: str | None = None


class FitCost(BaseModel):
    """Wall time and peak resident memory of one fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    task: str
    wall_s: float
    peak_rss_mb: float


class ModelCheckReport(BaseModel):
    """What check_model found: one row per check, and the cost of every fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    budget: str
    cohort: str
    rows: list[CheckRow]
    fits: list[FitCost]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not any(r.status == "fail" for r in self.rows)

    @property
    def failed(self) -> list[CheckRow]:
        """The failing rows."""
        return [r for r in self.rows if r.status == "fail"]


# ------------------------------------------------------------------------------------------ public
def check_model(target: str, *, budget: str | Budget = "smoke", seed: int = 0, n_subjects: int = N_SUBJECTS,
                data: str | Path | None = None, max_fit_s: float = MAX_FIT_S,
                max_rss_mb: float = MAX_RSS_MB) -> ModelCheckReport:
    """Run the model submission check (module docstring) on a registered model, module or file.

    Args:
        target: a registered model name, `pkg.mod`, `pkg.mod:ATTR`, or a path to a .py file holding
            SPEC / SPECS (every spec it holds is checked).
        budget: the budget the factory gets ("smoke", "default", "full", or a Budget).
        seed: the seed of the fits (the determinism check refits with the same seed).
        n_subjects: size of the synthetic cohort.
        data: a synthetic cohort folder to use instead of generating one (it must carry leak/probe's
            planted marker for the leakage check to mean anything).
        max_fit_s: a fit slower than this fails.
        max_rss_mb: a fit whose peak resident memory exceeds this fails.

    Returns:
        The report (report.ok is False when a check failed).

    Raises:
        UserError: the target is neither a registered model, an importable module nor a .py file;
            an unknown budget.
    """
    from benchmark.runner import resolve_budget

    b = resolve_budget(budget)
    specs, rows = _resolve(target)
    fits: list[FitCost] = []
    cohort = None
    for spec in specs:
        ok = _check_spec(spec, rows)
        model = _build(spec, b, seed, rows) if ok else None
        if model is None:
            continue
        if cohort is None:
            cohort = _cohort(data, n_subjects)
        _check_tasks(spec, b, seed, cohort, rows, fits, limits=(max_fit_s, max_rss_mb))
    return ModelCheckReport(target=target, budget=b.name, cohort=str(cohort.root) if cohort is not None else "",
                            rows=rows, fits=fits)


# ------------------------------------------------------------------------------------------ target
def _resolve(target: str) -> tuple[tuple[ModelSpec, ...], list[CheckRow]]:
    """The specs of a model name, module or file, and the rows of what failed on the way.

    Raises:
        UserError: nothing by that name exists (not registered, no such module or file).
    """
    rows: list[CheckRow] = []
    path = target.partition(":")[0]
    if path.endswith(".py") and not Path(path).is_file():
        raise UserError(f"no such file {path}", file=path, field="NAME|MODULE",
                        fix="pass an existing .py file, a module (pkg.mod) or a registered model name")
    try:
        if target in model_names():
            return (get_model(target),), rows
        return load_target(target), rows
    except ModuleNotFoundError as e:
        module = target.partition(":")[0]
        if e.name and (module == e.name or module.startswith(e.name + ".")):  # the target itself is unknown
            raise UserError(f"{target!r} is not a registered model, an importable module or a .py file",
                            field="NAME|MODULE",
                            fix="pass a model name (`python -m benchmark models`), pkg.mod, pkg.mod:ATTR or "
                                "path/to/model.py") from None
        rows.append(_fail(target, "spec", f"importing {target} failed: {_exc(e)}",
                          f"install what {target} imports, or the matching extra (pip install 'mehr-bench[all]')"))
    except UserError as e:  # an invalid SPEC, none in the module, a missing extra
        rows.append(_fail(target, "spec", e.message, e.fix or "define SPEC = ModelSpec(...) in the module"))
    except Exception as e:  # noqa: BLE001 - a module that raises on import is a finding, not a crash
        rows.append(_fail(target, "spec", f"importing {target} raised {_exc(e)}",
                          "make the module importable (" + _where(e) + ")"))
    return (), rows


def _check_spec(spec: ModelSpec, rows: list[CheckRow]) -> bool:
    """The spec row: it re-validates, its size is sane, its factory takes budget and seed."""
    problems, fixes = [], []
    try:
        ModelSpec.model_validate(spec.model_dump() | {"factory": spec.factory})
    except Exception as e:  # noqa: BLE001
        problems.append(f"invalid spec: {e}")
        fixes.append("fix the ModelSpec fields")
    n = spec.n_parameters
    if n is not None and (not isinstance(n, int) or n <= 0):
        problems.append(f"n_parameters = {n!r}")
        fixes.append("set n_parameters to the positive parameter count, or None when it depends on the task")
    try:
        inspect.signature(spec.factory).bind(budget=None, seed=0)
    except TypeError:
        problems.append("factory cannot be called as factory(budget=..., seed=...)")
        fixes.append("give the factory keyword parameters `budget` and `seed`")
    except ValueError:  # a builtin without a signature: the factory row finds out
        pass
    if not spec.task_kinds:
        problems.append("task_kinds is empty")
        fixes.append("list the task kinds the model supports")
    if problems:
        rows.append(_fail(spec.name, "spec", "; ".join(problems), "; ".join(fixes)))
        return False
    rows.append(_pass(spec.name, "spec", f"{spec.kind}; modalities {','.join(spec.modalities)}; task kinds "
                                         f"{','.join(spec.task_kinds)}; n_parameters {n if n is not None else '-'}"))
    return True


def _build(spec: ModelSpec, b: Budget, seed: int, rows: list[CheckRow]):
    """The factory row: the built model, or None (a fail row)."""
    try:
        model = spec.factory(budget=b, seed=seed)
    except Exception as e:  # noqa: BLE001
        rows.append(_fail(spec.name, "factory", f"factory(budget={b.name}, seed={seed}) raised {_exc(e)}",
                          f"make the factory build the model without fitting anything ({_where(e)})"))
        return None
    missing = [m for m in ("fit", "predict") if not callable(getattr(model, m, None))]
    if missing:
        rows.append(_fail(spec.name, "factory", f"the factory returned {type(model).__name__}, without "
                                                f"{' and '.join(missing)}",
                          "return an object with fit(data) -> self and predict(data, split) -> Prediction"))
        return None
    rows.append(_pass(spec.name, "factory", f"factory(budget={b.name}, seed={seed}) -> {type(model).__name__}"))
    return model


# ------------------------------------------------------------------------------------------ cohort and tasks
def _cohort(data: str | Path | None, n_subjects: int):
    """The tiny synthetic cohort (generated once into the cache), or the folder given."""
    from benchmark.data.cohort import Cohort
    from benchmark.default_cohort import ensure_default_cohort

    return Cohort(Path(data) if data is not None else ensure_default_cohort(n_subjects, COHORT_SEED))


def _task_for(kind: str, spec: ModelSpec):
    """(a built-in task of `kind` the spec can run, or None, and why none)."""
    from benchmark.task_registry import load_tasks

    tasks = load_tasks()
    ordered = [tasks[n] for n in PREFERRED_TASKS.get(kind, ()) if n in tasks]
    ordered += sorted((t for t in tasks.values() if t.kind == kind and t not in ordered
                       and not t.name.startswith("leak/")), key=lambda t: t.name)
    for t in ordered:
        if spec.fits(t) is None:
            return t, None
    return None, (f"no built-in {kind} task offers {', '.join(spec.requires)}" if ordered
                  else f"no built-in {kind} task")


def _data(task, cohort, seed: int) -> TaskData:
    from benchmark.labels import extract_labels
    from benchmark.runner import task_data

    return task_data(task, cohort, seed, extract_labels(task, cohort, announce=False).labels)


def _check_tasks(spec: ModelSpec, b: Budget, seed: int, cohort, rows: list[CheckRow], fits: list[FitCost],
                 limits: tuple[float, float]) -> None:
    """The fit, determinism, future invariance, n_parameters and leakage rows of one spec."""
    sizes: list[int] = []
    future_s: list[float] = []  # wall time of each future invariance fit so far
    for kind in sorted(spec.task_kinds, key=lambda k: k != "binary"):  # binary first: its future row always runs
        task, why = _task_for(kind, spec)
        if task is None:
            rows.append(_skip(spec.name, f"fit {kind}", why, "nothing to fix unless the model should run such tasks"))
            continue
        data = _data(task, cohort, seed)
        first = _fit_predict(spec, b, seed, data, rows, fits, limits, label=f"fit {kind}")
        if first is None:
            continue
        test, val, info = first
        if _check_prediction(spec.name, kind, data, test, val, rows) and info is not None:
            if isinstance(info.get("n_parameters"), int):
                sizes.append(info["n_parameters"])
            again = _fit_predict(spec, b, seed, data, [], fits, limits, label=f"determinism {kind}")
            if not _check_same(spec.name, kind, seed, test, again, rows):
                continue
            if future_s and max(future_s) > FUTURE_MORE_KINDS_MAX_S:
                rows.append(_skip(spec.name, f"future invariance {kind}",
                                  f"not run: a fit on a perturbed cohort took {max(future_s):.0f} s (limit "
                                  f"{FUTURE_MORE_KINDS_MAX_S:.0f} s for the kinds after the first); the "
                                  "first kind's row checked how the model reads its inputs",
                                  "nothing to fix"))
                continue
            n_fits = len(fits)
            _check_future(spec, b, seed, data, (test, val), rows, fits, limits)
            future_s += [f.wall_s for f in fits[n_fits:]]
    _check_size(spec, sizes, rows)
    _check_leak(spec, b, seed, cohort, rows, fits, limits)


def _fit_predict(spec: ModelSpec, b: Budget, seed: int, data: TaskData, rows: list[CheckRow], fits: list[FitCost],
                 limits: tuple[float, float], label: str):
    """Build, fit (timed, memory sampled) and predict held_out and tuning; (test, val, info) or None (a fail row)."""
    from benchmark.runner import seed_everything

    task = data.task.name
    try:
        seed_everything(seed)  # as `run` does before each cell
        model = spec.factory(budget=b, seed=seed)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            fitted = model.fit(data)
            wall = time.perf_counter() - t0
        fits.append(FitCost(model=spec.name, task=task, wall_s=round(wall, 3), peak_rss_mb=round(mem.peak_mb, 1)))
        if fitted is not model:
            rows.append(_fail(spec.name, label, f"fit returned {type(fitted).__name__}, not the model",
                              "end fit(data) with `return self`"))
            return None
        test = model.predict(data, "held_out")
        val = model.predict(data, "tuning")
    except Exception as e:  # noqa: BLE001 - a crash is the finding
        rows.append(_fail(spec.name, label, f"on {task}: {_exc(e)}", f"fix the error at {_where(e)}"))
        return None
    max_s, max_mb = limits
    cost = f"fit {wall:.1f} s, peak RSS {mem.peak_mb:,.0f} MB"
    if wall > max_s or mem.peak_mb > max_mb:
        rows.append(_fail(spec.name, label, f"on {task}: {cost} (limits {max_s:.0f} s, {max_mb:,.0f} MB)",
                          "make a smoke-budget fit cheaper: map budget.name == 'smoke' to fewer iterations or a "
                          "smaller model"))
        return None
    if not all(isinstance(p, Prediction) for p in (test, val)):
        rows.append(_fail(spec.name, label, f"on {task}: predict returned {type(test).__name__}", FIX_PREDICT))
        return None
    rows.append(_pass(spec.name, label, f"{task}: {cost}"))
    return test, val, test.info if isinstance(test.info, dict) else None


def _check_prediction(name: str, kind: str, data: TaskData, test: Prediction, val: Prediction,
                      rows: list[CheckRow]) -> bool:
    """The scores row of one kind: shape, dtype, finite, range, survival curves, predictions file, record info."""
    from benchmark.records import INFO_EXPLANATIONS, ModelInfo
    from benchmark.runner import predictions_frame

    k = data.task.kind_obj
    check = f"scores {kind}"
    for split, pred in (("held_out", test), ("tuning", val)):
        y = data.y(split)
        want = k.score_shape(len(y), y)
        try:
            sc = np.asarray(pred.score)
        except Exception as e:  # noqa: BLE001
            rows.append(_fail(name, check, f"{split}: score is not an array ({_exc(e)})", FIX_PREDICT))
            return False
        if sc.shape != want:
            rows.append(_fail(name, check, f"{split}: score shape {sc.shape}, expected {want} "
                                           f"({'rows x labels' if len(want) == 2 else 'one per sample'})", FIX_PREDICT))
            return False
        if not (np.issubdtype(sc.dtype, np.floating) or np.issubdtype(sc.dtype, np.integer) or sc.dtype == bool):
            rows.append(_fail(name, check, f"{split}: score dtype {sc.dtype} is not numeric",
                              "return a float array (np.float32 / np.float64)"))
            return False
        bad = int((~np.isfinite(sc.astype(float))).sum())
        if bad:
            rows.append(_fail(name, check, f"{split}: {bad} of {sc.size} scores are NaN or infinite",
                              "return finite scores: impute missing inputs, clip logits, fall back to the training "
                              "prior where the model has no output"))
            return False
        if k.score_type == "probability" and (sc.min() < 0 or sc.max() > 1):
            rows.append(_fail(name, check, f"{split}: probabilities range over [{sc.min():.3g}, {sc.max():.3g}]",
                              "return P(y=1) in [0, 1] (apply a sigmoid / predict_proba[:, 1])"))
            return False
        why = _curve_problem(pred, len(y))
        if why:
            rows.append(_fail(name, check, f"{split}: {why}", "surv_times: increasing days [k]; surv_prob: "
                                                               "[n, k] non-increasing S(t) in [0, 1]"))
            return False
    try:
        predictions_frame(data, test)
        extra = {key: v for key, v in test.info.items() if key != INFO_EXPLANATIONS}
        ModelInfo(kind="x", modalities=[], reference="x", **extra).model_dump_json()
        json.dumps(test.info.get(INFO_EXPLANATIONS))
    except Exception as e:  # noqa: BLE001
        rows.append(_fail(name, check, f"the prediction cannot be written as a result: {_exc(e)}",
                          "keep Prediction.info JSON-able (plain str / int / float / list / dict, not numpy scalars)"))
        return False
    rows.append(_pass(name, check, f"{data.task.name}: held_out {np.asarray(test.score).shape}, tuning "
                                   f"{np.asarray(val.score).shape}, finite, in range{_metric(data, test, val)}"))
    return True


def _curve_problem(pred: Prediction, n: int) -> str | None:
    """Why a prediction's survival curves are malformed, or None (absent curves are fine)."""
    if pred.surv_prob is None and pred.surv_times is None:
        return None
    if pred.surv_prob is None or pred.surv_times is None:
        return "surv_times and surv_prob must be given together"
    st, sp = np.asarray(pred.surv_times, dtype=float), np.asarray(pred.surv_prob, dtype=float)
    if st.ndim != 1 or len(st) < 1 or np.any(np.diff(st) <= 0):
        return f"surv_times shape {st.shape} is not an increasing 1-D array"
    if sp.shape != (n, len(st)):
        return f"surv_prob shape {sp.shape}, expected {(n, len(st))}"
    if not np.all(np.isfinite(sp)) or sp.min() < 0 or sp.max() > 1 or np.any(np.diff(sp, axis=1) > 1e-9):
        return "surv_prob must be finite, in [0, 1] and non-increasing over time"
    return None


def _metric(data: TaskData, test: Prediction, val: Prediction) -> str:
    """'; <main metric> <value>' on held_out (no CI), or '' when it cannot be computed."""
    from benchmark.scoring import score_cell

    try:
        m = score_cell(data, test, val, 0, 0).get(data.task.main_metric, {})
    except Exception:  # noqa: BLE001 - the metric is information only
        return ""
    v = m.get("value")
    return f"; held-out {data.task.main_metric} {v:.3f}" if isinstance(v, float) else ""


def _check_same(name: str, kind: str, seed: int, first: Prediction, again, rows: list[CheckRow]) -> bool:
    """The determinism row: the second fit's held-out scores equal the first's (True when they do)."""
    check = f"determinism {kind}"
    if again is None:
        rows.append(_fail(name, check, f"a second fit with seed {seed} failed where the first worked",
                          "make fit depend only on the data and the seed"))
        return False
    a, b = np.asarray(first.score, dtype=float), np.asarray(again[0].score, dtype=float)
    if a.shape == b.shape and np.array_equal(a, b, equal_nan=True):
        rows.append(_pass(name, check, f"two fits with seed {seed}: identical held-out scores"))
        return True
    diff = float(np.nanmax(np.abs(a - b))) if a.shape == b.shape else float("nan")
    rows.append(_fail(name, check, f"two fits with seed {seed} differ (max |difference| {diff:.3g})",
                      "derive every random source from the factory's seed (np.random.default_rng(seed), "
                      "random_state=seed, torch.manual_seed(seed)) and use deterministic kernels"))
    return False


def _check_future(spec: ModelSpec, b: Budget, seed: int, data: TaskData, intact: tuple[Prediction, Prediction],
                  rows: list[CheckRow], fits: list[FitCost], limits: tuple[float, float]) -> None:
    """The future invariance row of one kind: scores unchanged when evaluation subjects' futures change.

    The perturbed copies (benchmark.data.future_cohort) change only rows after each tuning / held-out
    subject's last prediction time; the labels are the intact cohort's, passed in as `run --labels`
    passes labels made elsewhere (runner.task_data with their labels_hash, which also gives the
    features a work folder of their own). A guarded model sees identical inputs, so any change in a
    score means it read something the guard hides.
    """
    from benchmark.data.future_cohort import EVAL_SPLITS, VARIANTS, future_cuts, perturbed_cohort
    from benchmark.label_files import labels_hash
    from benchmark.runner import task_data

    kind, task = data.task.kind, data.task.name
    check = f"future invariance {kind}"
    labels = data.labels.drop("split")  # label facts of the intact cohort, not model input
    cuts = future_cuts(labels, data.cohort.splits)
    n = sum(len(data.samples(s)) for s in EVAL_SPLITS)
    for variant in VARIANTS:
        what = FUTURE_VARIANT_TEXT[variant]
        pert = perturbed_cohort(data.cohort, cuts, variant)
        got_rows: list[CheckRow] = []
        got = _fit_predict(spec, b, seed, task_data(data.task, pert, seed, labels, labels_hash(labels)), got_rows,
                           fits, limits, label=check)
        if got is None:
            why = got_rows[0].detail if got_rows else "no prediction"
            rows.append(_fail(spec.name, check, f"{task} with {what}: {why}",
                              (got_rows[0].fix if got_rows and got_rows[0].fix else FIX_FUTURE)))
            return
        changed, diff = 0, 0.0
        for before, after in zip(intact, got[:2]):  # (held_out, tuning) both
            c, d = _score_change(before, after)
            changed, diff = changed + c, max(diff, d)
        if changed:
            rows.append(_fail(spec.name, check, f"{task} with {what}: {changed} of {n} tuning + held-out scores "
                                                f"changed (max |difference| {diff:.3g}): the scores depend on "
                                                "rows after the prediction time", FIX_FUTURE))
            return
    rows.append(_pass(spec.name, check, f"{task}: identical scores on {n} tuning + held-out samples when "
                                        f"{cuts.height} subjects' rows after their last prediction time are "
                                        "deleted, or replaced by a burst of shifted values and planted codes"))


def _score_change(before: Prediction, after: Prediction) -> tuple[int, float]:
    """(samples whose score changed beyond float noise, max |difference|) between two predictions."""
    a, b = np.asarray(before.score, dtype=float), np.asarray(after.score, dtype=float)
    if a.shape != b.shape:
        return len(a), float("inf")
    same = (a == b) | (np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= FUTURE_RTOL * np.maximum(np.abs(a), np.abs(b)))
    bad = ~same.reshape(len(a), -1).all(axis=1) if a.ndim > 1 else ~same
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)[~same]
    diff = diff[np.isfinite(diff)]  # a NaN against a number counts as changed, by an unknown amount
    return int(bad.sum()), float(diff.max()) if diff.size else (float("inf") if bad.any() else 0.0)


def _check_size(spec: ModelSpec, sizes: list[int], rows: list[CheckRow]) -> None:
    """The n_parameters row: reported sizes are positive and near the spec's."""
    bad = [n for n in sizes if n <= 0]
    if bad:
        rows.append(_fail(spec.name, "n_parameters", f"Prediction.info['n_parameters'] = {bad[0]}",
                          "report the fitted model's positive parameter count (or leave the key out)"))
        return
    if spec.n_parameters and sizes and any(not spec.n_parameters / 10 <= n <= spec.n_parameters * 10 for n in sizes):
        rows.append(_fail(spec.name, "n_parameters", f"the spec says {spec.n_parameters:,}, the fitted model "
                                                     f"reports {', '.join(f'{n:,}' for n in sizes)}",
                          "set the spec's n_parameters to the model's real size (None if it depends on the task)"))
        return
    shown = ", ".join(f"{n:,}" for n in sizes) if sizes else "not reported (the spec's value is recorded)"
    rows.append(_pass(spec.name, "n_parameters", f"fitted size {shown}"))


def _check_leak(spec: ModelSpec, b: Budget, seed: int, cohort, rows: list[CheckRow], fits: list[FitCost],
                limits: tuple[float, float]) -> None:
    """The leakage row: AUROC on leak/probe (pooled tuning + held-out) stays at most LEAK_MAX_AUROC."""
    from benchmark.metrics.binary import auroc
    from benchmark.task_registry import load_tasks

    task = load_tasks().get(LEAK_TASK)
    if "binary" not in spec.task_kinds or task is None or spec.fits(task) is not None:
        why = "the model runs no binary task" if "binary" not in spec.task_kinds else (
            spec.fits(task) if task is not None else f"{LEAK_TASK} is not installed")
        rows.append(_skip(spec.name, "leakage", f"{LEAK_TASK} not run: {why}",
                          "nothing to fix; read inputs only through TaskData.visible_events / visible_modality"))
        return
    data = _data(task, cohort, seed)
    got = _fit_predict(spec, b, seed, data, [], fits, limits, label="leakage")
    if got is None:
        rows.append(_fail(spec.name, "leakage", f"fitting {LEAK_TASK} failed", "see the fit binary row"))
        return
    test, val, _ = got
    y = np.concatenate([data.y("tuning"), data.y("held_out")])
    try:
        s = np.concatenate([np.asarray(val.score, dtype=float), np.asarray(test.score, dtype=float)])
        a = float(auroc(y, s))
    except Exception as e:  # noqa: BLE001
        rows.append(_fail(spec.name, "leakage", f"{LEAK_TASK} scores unusable: {_exc(e)}", FIX_PREDICT))
        return
    detail = f"{LEAK_TASK} AUROC {a:.3f} on {len(y)} tuning + held-out samples (limit {LEAK_MAX_AUROC})"
    if not np.isfinite(a) or a > LEAK_MAX_AUROC:
        rows.append(_fail(spec.name, "leakage", detail + ": the model sees events after the prediction time",
                          "read events only through data.visible_events(split) and sidecars through "
                          "data.visible_modality(name, split), never data.cohort.scan() or the files"))
        return
    rows.append(_pass(spec.name, "leakage", detail))


# ------------------------------------------------------------------------------------------ helpers
def _exc(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _where(e: BaseException) -> str:
    """file:line of the innermost frame of an exception (where the fix goes)."""
    tb = traceback.extract_tb(e.__traceback__)
    return f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "the model's code"


def _pass(model: str, check: str, detail: str) -> CheckRow:
    return CheckRow(model=model, check=check, status="pass", detail=detail)


def _fail(model: str, check: str, detail: str, fix: str) -> CheckRow:
    return CheckRow(model=model, check=check, status="fail", detail=detail, fix=fix)


def _skip(model: str, check: str, detail: str, fix: str) -> CheckRow:
    return CheckRow(model=model, check=check, status="skip", detail=detail, fix=fix)
