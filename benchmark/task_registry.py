"""Discover and load the task YAML files: location is identity (tasks/a/b.yaml is task "a/b")."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import tasks_dir
from benchmark.taskspec import TaskSpec, load_task_file


def task_files(root: Path | None = None) -> dict[str, Path]:
    """Map task name -> YAML path, sorted by name."""
    root = Path(root or tasks_dir())
    if not root.is_dir():
        raise UserError("tasks folder not found", file=root,
                        fix="reinstall mehr-bench (its tasks ship as package data) or set MEHR_BENCH_TASKS to the tasks folder")
    files = {}
    for p in sorted(root.rglob("*.yaml")):
        name = p.relative_to(root).with_suffix("").as_posix()
        files[name] = p
    return files


def load_tasks(root: Path | None = None) -> dict[str, TaskSpec]:
    """Load and validate every task (the first invalid file raises UserError)."""
    return {name: load_task_file(path, name) for name, path in task_files(root).items()}


def select_tasks(spec: str, root: Path | None = None) -> list[TaskSpec]:
    """Resolve a CLI task selection: "all", "a/b,c/d", or a family prefix such as "oncology".

    Raises:
        UserError: for a name that matches no task, listing the known names.
    """
    tasks = load_tasks(root)
    if spec.strip() == "all":
        return list(tasks.values())
    out: list[TaskSpec] = []
    for part in [s.strip() for s in spec.split(",") if s.strip()]:
        matched = [t for n, t in tasks.items() if n == part or n.startswith(part.rstrip("/") + "/")]
        if not matched:
            raise UserError(f"unknown task {part!r}", field="--task",
                            fix="choose from: all, " + ", ".join(tasks))
        out.extend(t for t in matched if t not in out)
    return out



def profile_predicate_names(profile) -> set[str]:
    """Predicate names a dataset profile (benchmark.data.profiles.DatasetProfile) maps, in every one of
    its predicate-file variants."""
    from benchmark.predicate_maps import load_predicate_map

    maps = [set(load_predicate_map(profile.folder / v.file)) for v in profile.predicates]
    return set.intersection(*maps) if maps else set()


def dataset_coverage(tasks: dict[str, TaskSpec], profiles: dict) -> dict[str, dict[str, list[str]]]:
    """Which dataset profiles can run which tasks, from the profiles' predicate maps.

    Args:
        tasks: task name -> spec (``load_tasks()``).
        profiles: profile name -> DatasetProfile (e.g. every installed one; the caller loads them, so
            this module does not import benchmark.data).

    Returns:
        task name -> profile name -> the predicate names the task needs and the profile's map lacks,
        sorted ([] = the profile can run the task).
    """
    names = {p: profile_predicate_names(prof) for p, prof in sorted(profiles.items())}
    return {t: {p: sorted(spec.dataset_predicates() - have) for p, have in names.items()}
            for t, spec in tasks.items()}
