"""Planning helpers of `run`: the names of --model / --task values, whether a task's labels can be
learned and scored at all (checked once per task before any cell runs), and the labels of the tasks
that can run (`task_labels`, moved here from benchmark.runner)."""

from __future__ import annotations

import polars as pl

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.labels import LabelSet, TaskNotApplicable, extract_labels
from benchmark.taskspec import TaskSpec
from benchmark.vocabulary import SPLITS


def split_names(text: str, flag: str) -> list[str]:
    """The names of a comma-separated --model / --task value, in order, without blanks or repeats.

    Raises:
        UserError: no name at all (e.g. `--model ,`).
    """
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        what = "model" if flag == "--model" else "task"
        raise UserError(f"no {what} named in {flag} {text!r}", field=flag,
                        fix=f"name one or more {what}s separated by commas (list them with `python -m benchmark "
                            f"{what}s`)" + (", or 'all'" if what == "task" else ""))
    return names


def input_problem(task: TaskSpec, labels: pl.DataFrame, splits: pl.DataFrame) -> str | None:
    """Why a task cannot be learned and scored on this data, or None if it can.

    Checked once per task before any cell runs: no training or held-out samples, or (binary,
    survival) training labels of one class only. Models would otherwise fail with a library error
    deep inside a fit, once per model.

    Args:
        task: the task.
        labels: its labels (MEDS LabelSchema rows).
        splits: the cohort's subject_id -> split table.

    Returns:
        A one-line reason, or None.
    """
    lab = labels.join(splits, on="subject_id", how="inner")
    n = {s: lab.filter(pl.col("split") == s).height for s in SPLITS}
    counts = f"{labels.height} samples: {n['train']} train, {n['tuning']} tuning, {n['held_out']} held_out"
    if n["train"] == 0:
        return f"no training samples ({counts})"
    if n["held_out"] == 0:
        return f"no held-out samples to score ({counts})"
    kind = task.kind_obj
    pos = kind.events_in_labels(lab.filter(pl.col("split") == "train"))
    if pos is not None and kind.one_class_problem(pos, n["train"]):
        return (f"only one class in training: {pos} of {n['train']} training {kind.event_word} are positive "
                f"(a model needs both classes)")
    return None


def names_of(names: str | list[str] | tuple[str, ...], flag: str) -> list:
    """split_names for a comma string or a list of names (the Python API takes both). A list of
    objects that are not names (the ModelSpecs `scale` builds with a token rule's steps) is returned
    as it is: the runner uses those specs instead of looking names up."""
    if not isinstance(names, str) and names and not any(isinstance(n, str) for n in names):
        return list(names)
    return split_names(names if isinstance(names, str) else ",".join(names), flag)


def task_labels(task_list: list[TaskSpec], cohort: Cohort, rep,
                given: dict[str, tuple[pl.DataFrame, str]] | None = None) -> tuple[dict[str, pl.DataFrame], int, int]:
    """Labels of every task that can run (`given`: task name -> (labels, hash) made elsewhere, used
    instead of extracting them); the others are reported with the reason and the fix through `rep`
    (a benchmark.reporting.Reporter).

    Returns:
        (task name -> labels, number of tasks refused because of the user's data or task file,
        number of tasks whose label extraction crashed).

    Raises:
        UserError: bad input in a task's rules (the run stops before any cell).
    """
    labels: dict[str, pl.DataFrame] = {}
    bad = crashed = 0
    for t in task_list:
        try:
            if given is not None:  # made elsewhere: no extraction, no attrition, no extraction warnings
                ls = LabelSet(t, given[t.name][0])
            else:
                ls = extract_labels(t, cohort, announce=False)  # its warnings are said once below, cached or not
            lab = ls.labels
        except TaskNotApplicable as e:
            rep.say((f"skip task {t.name}", "yellow"), f": the dataset does not map {', '.join(e.missing)}")
            continue
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one task's crash is reported; the other tasks run
            crashed += 1
            rep.say(("failed", "red"), f" labels of task {t.name}: {type(e).__name__}: {e}", problem=True)
            continue
        for w in ls.warnings:  # predicates matching nothing, suitability (benchmark.suitability)
            rep.say(("warning", "yellow"), f": {w}")
        why = input_problem(t, lab, cohort.splits)
        if why:
            bad += 1
            fix = ("check the labels passed with --labels and the cohort's splits" if given is not None else
                   f"check the task's index, inclusion and label rules and the cohort's splits "
                   f"(`python -m benchmark labels --task {t.name} --data {cohort.root}` shows the counts)")
            rep.say((f"cannot run task {t.name}", "red"), f" on {cohort.root}: {why}\n  fix: {fix}", problem=True)
            continue
        labels[t.name] = lab
    return labels, bad, crashed
