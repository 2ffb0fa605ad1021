"""The scaling view's numbers: macro-average AUROC over the oncology tasks per sized model, with a
bootstrap CI that resamples subjects jointly across tasks.

The MEHRT paper (OpenReview ywFxZhMnuB, Fig. 2b) plots test AUROC macro-averaged over its six
oncology tasks against the number of parameters, one line for EHRT and one for MEHRT. Here:

- tasks: every `oncology/*` task of kind binary in the results (the six of tasks/oncology/). A
  model gets a point only when it has an ok result with an AUROC for every one of them: a mean over
  a different subset of tasks would not be comparable (the view lists the models left out and the
  tasks they lack).
- point: the mean over tasks of each cell's AUROC (a cell's AUROC is the mean over its seeds, as
  everywhere on the site).
- interval: a subject bootstrap of that same statistic. One replicate draws the union of the
  tasks' held-out subjects with replacement (`benchmark.metrics.bootstrap.count_chunks`, seed
  SEED) and applies the same draw to every task and every seed, read from the held-out
  predictions files that sit next to the result files: the oncology tasks share their subjects
  (all index on the first treatment), so per-task intervals are correlated and neither their
  mean nor any combination of them is the macro average's interval. The interval is the
  logit-scale Wald interval of `benchmark.metrics.bootstrap.interval` (the one every AUROC cell
  uses), with the weakest task's rarer-class support for the reporting rule. Training seeds are
  not resampled: like the cell intervals, it is an interval over test subjects given the
  trained models.
- Without every predictions file the point is shown and the interval is not (never a mean of CIs).
- Only models whose name carries a size (`-tiny`, `-9m`, ...; `records.SIZE_RE`) are plotted: an
  unsized `mehrt` runs its budget's size and would repeat a sized point.

Imports point one way inside the package: records <- rules <- scaling <- figures <- views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.kinds import BINARY, kind_of
from benchmark.metrics.binary import make_auroc_kernel
from benchmark.metrics.bootstrap import N_BOOT, binary_support, interval, replicate_values, weakest
from leaderboard.records import SIZE_RE, Cell, ModelInfo, TaskInfo, is_num, read_predictions

FAMILY = "oncology"
SEED = 0


@dataclass
class MacroPoint:
    """One model's macro-average AUROC over the oncology tasks."""

    model: str
    series: str
    n_parameters: float
    value: float
    ci_low: float | None
    ci_high: float | None
    method: str
    note: str | None
    per_task: dict[str, float]


def oncology_tasks(tasks: dict[str, TaskInfo]) -> list[str]:
    """The binary tasks of the oncology family, by name."""
    return sorted(n for n, t in tasks.items() if t.family == FAMILY and kind_of(t.kind) is BINARY)


def _auroc(cell: Cell | None) -> float | None:
    if cell is None or cell.status != "ok":
        return None
    v = cell.metrics.get("auroc", {}).get("value")
    return float(v) if is_num(v) else None


def _n_parameters(model: ModelInfo, cells: list[Cell]) -> float | None:
    for c in cells:
        n = c.compute.get("n_parameters")
        if is_num(n) and n > 0:
            return float(n)
    return float(model.n_parameters) if is_num(model.n_parameters) and model.n_parameters > 0 else None


def joint_bootstrap(frames: dict[str, list], n_boot: int = N_BOOT, seed: int = SEED
                    ) -> tuple[float, float | None, float | None, int, str | None]:
    """Macro-average AUROC over tasks (mean over each task's seeds) and its joint subject bootstrap CI.

    Args:
        frames: task -> held-out predictions frames of its seeds (subject_id, boolean_value,
            predicted_boolean_probability).
        n_boot: replicates.
        seed: bootstrap seed.

    Returns:
        (estimate, ci_low, ci_high, n_subjects, note): the interval is None with a note when the
        sample cannot support it (too few subjects in a class, too many degenerate resamples).
    """
    subjects = np.unique(np.concatenate([f["subject_id"].to_numpy() for fs in frames.values() for f in fs]))
    kernels, supports, task_of = {}, [], {}
    for task, fs in frames.items():
        for k, f in enumerate(fs):
            y, score = kind_of("binary").read_predictions(f)
            codes = np.searchsorted(subjects, f["subject_id"].to_numpy())
            kernels[f"{task}#{k}"] = make_auroc_kernel(y, score, row_subject=codes)
            task_of[f"{task}#{k}"] = task
            if k == 0:
                supports.append(binary_support(y, codes))
    n = len(subjects)

    def macro(values: dict[str, np.ndarray]) -> np.ndarray:
        per_task = {t: np.mean([values[k][:, 0] for k in values if task_of[k] == t], axis=0) for t in frames}
        return np.mean(list(per_task.values()), axis=0)  # NaN when any task's replicate is undefined

    ones = np.ones((1, n), dtype=np.int64)
    est = float(macro({k: np.asarray(kern(ones), dtype=float).reshape(1, 1) for k, kern in kernels.items()})[0])
    reps = macro(replicate_values(kernels, n, n_boot, seed))
    low, high, _, note = interval(est, reps, scale="logit", support=weakest(supports), n_subjects=n)
    return est, low, high, n, note


def macro_points(models: dict[str, ModelInfo], cells: dict[tuple[str, str], Cell], tasks: dict[str, TaskInfo],
                 n_boot: int = N_BOOT) -> tuple[list[MacroPoint], list[str]]:
    """The scaling view's points and the reasons other sized models have none.

    Args:
        models: the site's models.
        cells: (model, task) -> cell.
        tasks: the site's tasks.
        n_boot: bootstrap replicates.

    Returns:
        (points sorted by series and parameters, notes in words).
    """
    names = oncology_tasks(tasks)
    points: list[MacroPoint] = []
    notes: list[str] = []
    if not names:
        return points, notes
    for name in sorted(models):
        if not SIZE_RE.match(name):
            continue
        got = {t: cells.get((name, t)) for t in names}
        missing = [t for t in names if _auroc(got[t]) is None]
        if len(missing) == len(names):
            continue  # no oncology results at all: not part of this view
        if missing:
            notes.append(f"{name}: not plotted, no AUROC for {', '.join(missing)} (the macro average needs all "
                         f"{len(names)} oncology tasks)")
            continue
        npar = _n_parameters(models[name], list(got.values()))
        if npar is None:
            notes.append(f"{name}: not plotted, its parameter count is not recorded")
            continue
        per_task = {t: _auroc(got[t]) for t in names}
        value = float(np.mean(list(per_task.values())))
        low = high = None
        frames = {t: [read_predictions(r.pred) for r in got[t].records] for t in names}
        lacking = [t for t, fs in frames.items() if not fs or any(f is None for f in fs)]
        if lacking:
            note = f"CI not computed: a held-out predictions file is missing ({', '.join(lacking)})"
            method = "mean of the tasks' AUROC"
        else:
            try:
                _, low, high, n_sub, note = joint_bootstrap(frames, n_boot)
            except Exception as e:  # noqa: BLE001 - a malformed predictions file: the point without a CI
                note = f"CI not computed: the predictions could not be read ({type(e).__name__})"
                method = "mean of the tasks' AUROC"
            else:
                method = (f"mean of the tasks' AUROC; 95% CI: subject bootstrap, {n_boot} resamples of {n_sub} "
                          f"subjects drawn jointly for all {len(names)} tasks (and seeds), logit-scale Wald, seed {SEED}")
        points.append(MacroPoint(model=name, series=models[name].series, n_parameters=npar, value=value,
                                 ci_low=low, ci_high=high, method=method, note=note, per_task=per_task))
    points.sort(key=lambda p: (p.series, p.n_parameters, p.model))
    return points, notes
