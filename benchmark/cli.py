"""Command line: `python -m benchmark <command>` (see DESIGN.md "CLI"; tests and users script against it).

Every handler imports what it needs lazily so `--help` and `tasks` stay fast and torch-free.
Bad input raises UserError, printed without a traceback, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from benchmark.errors import UserError

EXIT_USER_ERROR = 2


def _console():
    from rich.console import Console
    import shutil
    return Console(stderr=False, highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 120))


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _plain(*cells: str) -> list:
    """Table cells shown as typed: task descriptions and model references are user text, and rich
    would read "[...]" in them as markup (or fail on it)."""
    from rich.text import Text
    return [Text(str(c)) for c in cells]


# ---------------------------------------------------------------------------- commands
def cmd_prepare(args: argparse.Namespace) -> int:
    from data_prep.synthetic import generate
    from rich.progress import Progress

    if args.subjects < 10:
        raise UserError(f"--subjects {args.subjects} is too small", field="--subjects",
                        fix="use at least 10 subjects (each split needs some)")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed} is negative", field="--seed",
                        fix="pass a seed of 0 or more (the default is 0)")
    with Progress(transient=True) as prog:
        bar = prog.add_task(f"generating {args.subjects} subjects", total=args.subjects)
        out = generate(Path(args.out), n_subjects=args.subjects, seed=args.seed, images=not args.no_images,
                       progress=lambda done, total: prog.update(bar, completed=done, total=total))
    print(f"wrote synthetic cohort ({args.subjects} subjects, seed {args.seed}) to {out}")
    return 0


def cmd_prepare_mimic_iv(args: argparse.Namespace) -> int:
    from data_prep.mimic_iv import prepare_mimic_iv

    if args.seed < 0:
        raise UserError(f"--seed {args.seed} is negative", field="--seed",
                        fix="pass a seed of 0 or more (the default is 0)")
    s = prepare_mimic_iv(args.raw, args.out, etl_version=args.etl_version, seed=args.seed,
                         log=lambda line: print(line, flush=True))
    for f in s.findings:
        print(f.render())
    origin = "the ETL's" if s.splits_from_etl else f"seeded 70/15/15 (seed {args.seed})"
    splits = ", ".join(f"{k} {v}" for k, v in sorted(s.split_counts.items()))
    print(f"wrote MIMIC-IV cohort (MIMIC_IV_MEDS {s.etl_version}: {s.n_subjects} subjects, {s.n_events} events; "
          f"splits {origin}: {splits}) to {s.out}")
    print(f"integrity check passed ({len(s.findings)} warning(s)); run `python -m benchmark validate --data {s.out}` "
          f"for the full report")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from benchmark.task_registry import load_tasks

    tasks = load_tasks()
    rows = [{"name": t.name, "kind": t.kind, "modalities": list(t.modalities), "version": t.version,
             "main_metric": t.main_metric, "description": " ".join(t.description.split())}
            for t in tasks.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table
    table = Table(title=f"{len(rows)} tasks")
    for col in ("name", "kind", "modalities", "version", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        first = r["description"].split(". ")[0]
        table.add_row(*_plain(r["name"], r["kind"], ",".join(r["modalities"]), str(r["version"]),
                              first if len(first) <= 90 else first[:87] + "..."))
    _console().print(table)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.data.validate import validate_cohort

    findings = validate_cohort(args.data, args.predicates)
    errors = [f for f in findings if f.level == "error"]
    for f in findings:
        (_err if f.level == "error" else print)(f.render())
    if errors:
        _err(f"{args.data}: {len(errors)} error(s), {len(findings) - len(errors)} warning(s): not a valid cohort")
        return EXIT_USER_ERROR
    print(f"{args.data}: valid MEDS cohort ({len(findings)} warning(s))")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """Extract labels for tasks and print their counts (a quick look before a run)."""
    from benchmark.data.cohort import Cohort
    from benchmark.labels import TaskNotApplicable, extract_labels
    from benchmark.task_registry import select_tasks

    cohort = _resolve_cohort(args)
    for task in select_tasks(args.task):
        try:
            ls = extract_labels(task, cohort)
        except TaskNotApplicable as e:
            print(f"skip {task.name}: the dataset does not map {', '.join(e.missing)}")
            continue
        df = ls.labels
        if "boolean_value" in df.columns:
            rate = df["boolean_value"].mean()
            shown = "n/a" if rate is None else f"{rate:.3f}"
            print(f"{task.name}: {df.height} samples, event rate {shown}")
        else:
            print(f"{task.name}: {df.height} samples")
        if args.out:
            from benchmark.results import atomic_path
            with atomic_path(Path(args.out) / f"{task.name}.parquet", ".parquet") as tmp:
                df.write_parquet(tmp)
    return 0


def _resolve_cohort(args: argparse.Namespace):
    from benchmark.data.cohort import Cohort

    if getattr(args, "data", None):
        return Cohort(args.data, getattr(args, "predicates", None))
    from benchmark.default_cohort import ensure_default_cohort
    return Cohort(ensure_default_cohort(), getattr(args, "predicates", None))


def cmd_models(args: argparse.Namespace) -> int:
    from benchmark.registry import list_models

    specs = list_models()
    if args.json:
        print(json.dumps([s.public_dict() for s in specs], indent=2))
        return 0
    from rich.table import Table
    table = Table(title=f"{len(specs)} models")
    for col in ("name", "kind", "modalities", "task kinds", "parameters", "reference"):
        table.add_column(col, overflow="fold")
    for s in specs:
        table.add_row(*_plain(s.name, s.kind, ",".join(s.modalities), ",".join(s.task_kinds),
                              f"{s.n_parameters:,}" if s.n_parameters else "-", s.reference))
    _console().print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: parse the flags, run the grid (benchmark.runner.run_evaluation, the work behind the
    Python API `benchmark.evaluate`) with console output, print the table; returns the exit status."""
    from benchmark.runner import run_grid, split_names

    split_names(args.model, "--model")  # flag errors before the (maybe generated) cohort is read
    split_names(args.task, "--task")
    cohort = _resolve_cohort(args)
    return run_grid(models=args.model, tasks=args.task, cohort=cohort, results_dir=Path(args.results),
                    seeds=args.seeds, budget=args.budget, force=args.force, ablate=args.ablate_modalities)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from leaderboard.build import build

    out = build(Path(args.results), Path(args.out) if args.out else Path(args.results) / "leaderboard")
    print(f"leaderboard written to {out / 'index.html'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from leaderboard.compare import compare_cli

    return compare_cli(args)


# ---------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    """argparse type: an integer >= 100 (fewer bootstrap replicates give no usable 95% CI)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 100:
        raise argparse.ArgumentTypeError(f"{v} is too few replicates for a 95% CI; use at least 100")
    return v


def build_parser() -> argparse.ArgumentParser:
    from benchmark import __version__
    from benchmark.paths import default_results_dir

    p = argparse.ArgumentParser(prog="python -m benchmark",
                                description="MEHR-Bench: benchmark multimodal EHR models on MEDS cohorts.")
    p.add_argument("--version", action="version", version=f"mehr-bench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    pp = sub.add_parser("prepare", help="create a cohort (synthetic, mimic-iv) in the MEDS + sidecar format")
    pps = pp.add_subparsers(dest="source", metavar="SOURCE")
    syn = pps.add_parser("synthetic", help="the deterministic synthetic multimodal cohort")
    syn.add_argument("--out", required=True, help="new folder to write the cohort to")
    syn.add_argument("--subjects", type=int, default=5000, help="number of subjects (default 5000)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument("--no-images", action="store_true", help="skip writing CXR PNG files (embeddings only)")
    syn.set_defaults(func=cmd_prepare)
    mim = pps.add_parser("mimic-iv", help="raw MIMIC-IV CSVs -> MEDS via the MIMIC_IV_MEDS ETL (own venv)")
    mim.add_argument("--raw", required=True, help="MIMIC-IV folder with hosp/ and icu/ (PhysioNet layout)")
    mim.add_argument("--out", required=True, help="new folder to write the cohort to")
    mim.add_argument("--etl-version", default=None,
                     help="MIMIC_IV_MEDS version (default: the newest tested, 0.2.0; 0.1.3 also tested)")
    mim.add_argument("--seed", type=int, default=0, help="seed of the 70/15/15 splits if the ETL made none")
    mim.set_defaults(func=cmd_prepare_mimic_iv)

    pt = sub.add_parser("tasks", help="list tasks (name, kind, modalities, version)")
    pt.add_argument("--json", action="store_true")
    pt.set_defaults(func=cmd_tasks)

    pm = sub.add_parser("models", help="list registered models")
    pm.add_argument("--json", action="store_true")
    pm.set_defaults(func=cmd_models)

    pr = sub.add_parser("run", help="run models on tasks and write result files",
                        epilog="exit status: 0 every cell finished or was kept; 1 some cell failed or its result "
                               "could not be written (the other cells still ran); 2 bad input: flags, files, an "
                               "unwritable --results, or a task the data cannot support (no training samples, "
                               "one class in training), each printed with its fix")
    pr.add_argument("--model", required=True, help="model name(s), comma-separated")
    pr.add_argument("--task", required=True, help="task name(s), comma-separated, a family, or 'all'")
    pr.add_argument("--data", help="cohort folder (default: the embedded synthetic cohort)")
    pr.add_argument("--predicates", help="predicates.yaml (default: <data>/predicates.yaml)")
    pr.add_argument("--results", default=str(default_results_dir()), help="results folder (default ./results)")
    pr.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    pr.add_argument("--budget", choices=("smoke", "default", "full"), default="default")
    pr.add_argument("--force", action="store_true", help="recompute finished cells")
    pr.add_argument("--ablate-modalities", action="store_true",
                    help="also mask each modality at test time: leave-one-out with paired bootstrap and the "
                         "0/25/50/75/100%% missing-modality sweep (fusion heads, MEHRT); finished cells without "
                         "ablations are rerun")
    pr.set_defaults(func=cmd_run)

    pl_ = sub.add_parser("leaderboard", help="build the static HTML leaderboard from result files")
    pl_.add_argument("--results", default=str(default_results_dir()))
    pl_.add_argument("--out", help="output folder (default <results>/leaderboard)")
    pl_.set_defaults(func=cmd_leaderboard)

    pv = sub.add_parser("validate", help="check a cohort folder (MEDS + sidecar + leakage-relevant checks)")
    pv.add_argument("--data", required=True)
    pv.add_argument("--predicates", help="predicates.yaml (default: <data>/predicates.yaml)")
    pv.set_defaults(func=cmd_validate)

    plb = sub.add_parser("labels", help="extract task labels and print counts")
    plb.add_argument("--task", default="all")
    plb.add_argument("--data")
    plb.add_argument("--predicates")
    plb.add_argument("--out", help="also write <out>/<task>.parquet")
    plb.set_defaults(func=cmd_labels)

    pc = sub.add_parser("compare", help="paired comparison of two models across tasks")
    pc.add_argument("--a", required=True)
    pc.add_argument("--b", required=True, help="model B, or several separated by commas: per task the best of them")
    pc.add_argument("--tasks", default="all")
    pc.add_argument("--results", default=str(default_results_dir()))
    pc.add_argument("--out")
    pc.add_argument("--n-boot", type=_positive_int, default=2000, help="paired bootstrap replicates (default 2000)")
    pc.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    pc.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else EXIT_USER_ERROR
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for noisy in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", noisy)  # library chatter, not about the user's input
        warnings.showwarning = lambda msg, *a, **k: _err(f"warning: {msg}")
        try:
            return int(args.func(args) or 0)
        except UserError as e:
            _err(f"error: {e.render()}")
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            _err("interrupted")
            return 130
