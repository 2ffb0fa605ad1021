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

from benchmark.cli_support import add_map_args, console as _console, err as _err, plain as _plain
from benchmark.cli_support import resolve_cohort as _resolve_cohort
from benchmark.cli_meds import add_meds_parsers
from benchmark.errors import UserError

EXIT_USER_ERROR = 2


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
                       progress=lambda done, total: prog.update(bar, completed=done, total=total), site=args.site)
    print(f"wrote synthetic cohort ({args.subjects} subjects, seed {args.seed}, site {args.site}) to {out}")
    return 0


def cmd_prepare_cxr_folder(args: argparse.Namespace) -> int:
    from data_prep.cxr_folder import export_chexpert_folder

    out, n = export_chexpert_folder(Path(args.data), Path(args.out))
    print(f"wrote {n} CXR images and labels.csv (CheXpert-style) to {out}")
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


def cmd_prepare_omop_eicu(args: argparse.Namespace) -> int:
    """`prepare omop` / `prepare eicu`: a community ETL in its own venv, then splits and the integrity check."""
    if args.seed < 0:
        raise UserError(f"--seed {args.seed} is negative", field="--seed",
                        fix="pass a seed of 0 or more (the default is 0)")
    if args.source == "omop":
        from data_prep.omop import prepare_omop as prepare
    else:
        from data_prep.eicu import prepare_eicu as prepare
    name = {"omop": "OMOP", "eicu": "eICU"}[args.source]
    s = prepare(args.raw, args.out, seed=args.seed, log=lambda line: print(line, flush=True))
    for f in s.findings:
        print(f.render())
    splits = ", ".join(f"{k} {v}" for k, v in sorted(s.split_counts.items()))
    print(f"wrote {name} cohort ({s.etl_name} {s.etl_version}: {s.n_subjects} subjects, {s.n_events} events; "
          f"splits {splits}) to {s.out}")
    print(f"integrity check passed ({len(s.findings)} warning(s)); run `python -m benchmark validate --data {s.out}` "
          f"for the full report")
    return 0


def cmd_prepare_mimic_cxr(args: argparse.Namespace) -> int:
    from data_prep.mimic_cxr import prepare_mimic_cxr

    s = prepare_mimic_cxr(args.raw, args.data, labeler=args.labeler, uncertain=args.uncertain,
                          embeddings=args.embeddings, images=args.images)
    print(f"linked {s.studies_linked} studies ({s.studies_labeled} labeled, {s.images_linked} images); dropped "
          f"{s.dropped_unknown_subject} (subject not in cohort), {s.dropped_no_image} (no image file), "
          f"{s.dropped_no_embedding} (no embedding); uncertain labels: {s.uncertain}")
    return 0


def cmd_prepare_mimic_note(args: argparse.Namespace) -> int:
    from data_prep.mimic_note import prepare_mimic_note

    types = tuple(t.strip() for t in args.note_types.split(",") if t.strip())
    s = prepare_mimic_note(args.raw, args.data, note_types=types, embeddings=args.embeddings)
    print(f"linked notes {s.notes_linked}; dropped (subject not in cohort) {s.dropped_unknown_subject}; "
          f"time from storetime {s.time_from_storetime}, end of day {s.time_end_of_day}; sidecar: {s.sidecar_written}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from benchmark.data.profiles import available_profiles, load_profile
    from benchmark.task_registry import dataset_coverage, load_tasks

    tasks = load_tasks()
    profiles = {name: load_profile(folder) for name, folder in available_profiles().items()}
    cover = dataset_coverage(tasks, profiles)  # task -> dataset profile -> predicate names its map lacks
    known = sorted(next(iter(cover.values()), {}))
    if args.dataset is not None and args.dataset not in known:
        raise UserError(f"no dataset profile {args.dataset!r}", field="--dataset", fix=f"use one of: {', '.join(known)}")
    rows = [{"name": t.name, "kind": t.kind, "modalities": list(t.modalities), "version": t.version,
             "main_metric": t.main_metric, "description": " ".join(t.description.split()),
             "datasets": [d for d, miss in cover[t.name].items() if not miss]}
            | ({"missing": cover[t.name][args.dataset]} if args.dataset else {}) for t in tasks.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table
    table = Table(title=f"{len(rows)} tasks" + (f" on {args.dataset}" if args.dataset else ""))
    last = f"missing predicates ({args.dataset})" if args.dataset else "datasets"
    for col in ("name", "kind", "modalities", "version", "description", last):
        table.add_column(col, overflow="fold")
    for r in rows:
        first = r["description"].split(". ")[0]
        table.add_row(*_plain(r["name"], r["kind"], ",".join(r["modalities"]), str(r["version"]),
                              first if len(first) <= 90 else first[:87] + "...",
                              ", ".join(r["missing"]) or "- (runs)" if args.dataset else ",".join(r["datasets"])))
    _console().print(table)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.data.cohort import Cohort
    from benchmark.data.validate import validate_cohort

    predicates = args.predicates
    if Path(args.data).is_dir():  # the map the cohort uses: --predicates, its own, else its profile's
        predicates = Cohort(args.data, args.predicates, args.dataset).predicates_file
    findings = validate_cohort(args.data, predicates)
    errors = [f for f in findings if f.level == "error"]
    for f in findings:
        (_err if f.level == "error" else print)(f.render())
    if errors:
        _err(f"{args.data}: {len(errors)} error(s), {len(findings) - len(errors)} warning(s): not a valid cohort")
        return EXIT_USER_ERROR
    print(f"{args.data}: valid MEDS cohort ({len(findings)} warning(s))")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """Extract labels for tasks; print their counts, attrition table and warnings; --export writes them."""
    import polars as pl

    from benchmark.attrition import rich_table
    from benchmark.labels import TaskNotApplicable, export_labels, extract_labels
    from benchmark.task_registry import select_tasks

    cohort = _resolve_cohort(args)
    for task in select_tasks(args.task):
        try:
            ls = extract_labels(task, cohort, announce=False, workers=args.workers)  # warnings: below, cached or not
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
        if ls.attrition:
            _console().print(rich_table(task.name, ls.attrition))
        for w in ls.warnings:
            _err(f"warning: {w}")
        if args.export:
            folder = export_labels(ls, cohort, Path(args.export))
            counts = ", ".join(f"{d.name} {pl.scan_parquet(f).select(pl.len()).collect().item()}"
                               for d in sorted(folder.iterdir()) for f in sorted(d.glob("*.parquet")))
            print(f"wrote {folder} (MEDS LabelSchema per split: {counts})")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """`datasets`: the installed dataset profiles (name, folder, what dataset.json fields they recognise)."""
    from benchmark.data.profiles import available_profiles, load_profile

    rows = []
    for name, folder in sorted(available_profiles().items()):
        try:
            prof = load_profile(folder)
        except UserError as e:  # listed with its problem; the other profiles still show
            rows.append({"name": name, "folder": str(folder), "recognise": {}, "error": e.render()})
            continue
        rows.append({"name": name, "folder": str(folder), "recognise": dict(prof.recognise),
                     "description": " ".join(prof.description.split())})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table
    table = Table(title=f"{len(rows)} dataset profiles")
    for col in ("name", "folder", "recognise"):
        table.add_column(col, overflow="fold")
    for r in rows:
        shown = r.get("error") or ", ".join(f"{k} ~ {v}" for k, v in r["recognise"].items())
        table.add_row(*_plain(r["name"], r["folder"], shown))
    _console().print(table)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from benchmark.registry import model_catalog

    specs, why = model_catalog()  # why: models a slim install cannot load ("install mehr-bench[torch]")
    if args.json:
        print(json.dumps([s.public_dict() for s in specs]
                         + [{"name": n, "unavailable": reason} for n, reason in why.items()], indent=2))
        return 0
    from rich.table import Table
    table = Table(title=f"{len(specs)} models" + (f" ({len(why)} unavailable)" if why else ""))
    for col in ("name", "kind", "modalities", "task kinds", "parameters", "reference"):
        table.add_column(col, overflow="fold")
    for s in specs:
        table.add_row(*_plain(s.name, s.kind, ",".join(s.modalities), ",".join(s.task_kinds),
                              f"{s.n_parameters:,}" if s.n_parameters else "-", s.reference))
    for n, reason in why.items():
        table.add_row(*_plain(n, "-", "-", "-", "-", reason))
    _console().print(table)
    return 0


def cmd_check_model(args: argparse.Namespace) -> int:
    """`check-model NAME|MODULE`: the submission check (benchmark.model_check); exit 1 when a check fails."""
    from benchmark.model_check import check_model

    report = check_model(args.target, budget=args.budget)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return 0 if report.ok else 1
    from rich.table import Table
    table = Table(title=f"check-model {args.target} (budget {report.budget})", show_lines=True)
    for col in ("model", "check", "result", "detail / fix"):
        table.add_column(col, overflow="fold")
    for r in report.rows:
        table.add_row(*_plain(r.model, r.check, r.status.upper(),
                              r.detail + (f"\nfix: {r.fix}" if r.fix and r.status != "pass" else "")))
    _console().print(table)
    n_fail = len(report.failed)
    print(f"{len(report.rows) - n_fail} of {len(report.rows)} checks passed or skipped; {n_fail} failed"
          + (" (each row says what to fix)" if n_fail else ": ready to submit"))
    return 0 if report.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: parse the flags, run the grid (benchmark.runner.run_evaluation, the work behind the
    Python API `benchmark.evaluate`) with console output, print the table; returns the exit status."""
    from benchmark.few_shot import parse_points
    from benchmark.parallel import placement
    from benchmark.runner import run_grid, split_names

    split_names(args.model, "--model")  # flag errors before the (maybe generated) cohort is read
    split_names(args.task, "--task")
    few = args.k_shots is not None or args.train_fraction is not None
    shots = parse_points(args.k_shots, args.train_fraction, args.draws) if few else None
    where = placement(args.jobs, args.executor, args.address, args.shard)
    cohort = _resolve_cohort(args)
    return run_grid(models=args.model, tasks=args.task, cohort=cohort, results_dir=Path(args.results),
                    seeds=args.seeds, budget=args.budget, force=args.force, ablate=args.ablate_modalities,
                    external=args.external_data, labels=args.labels, shots=shots, where=where)


def cmd_scale(args: argparse.Namespace) -> int:
    """`scale`: the MEHRT paper's scaling study (encoders/mehrt/scale.py) with the leaderboard's scaling view."""
    from encoders.mehrt.scale import default_rule, parse_rule, resolve_families, resolve_sizes, run_scale
    from leaderboard.views import collect

    sizes, families = resolve_sizes(args.sizes), resolve_families(args.families)  # flag errors first
    rule = parse_rule(args.tokens_rule, args.max_epochs) if args.tokens_rule else None
    cohort = _resolve_cohort(args)

    def view(results: Path, fingerprint: str) -> dict:
        # the site of this cohort's records: leaderboard/scaling.py's points (joint subject bootstrap CI)
        sites = [s for s in collect(results) if s.dataset is not None and s.dataset.fingerprint == fingerprint]
        macro = (sites[0].scaling_macro if sites else None) or {}
        return {"points": {p.model: vars(p) for p in macro.get("points", [])}, "notes": macro.get("notes", []),
                "figure": str(macro["figure"]) if macro.get("figure") is not None else None}

    return run_scale(cohort, sizes, families, rule or default_rule(args.budget), Path(args.results), view=view,
                     budget=args.budget, seeds=args.seeds, tasks=args.tasks, force=args.force, compile=args.compile)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from leaderboard.build import build

    out = build(Path(args.results), Path(args.out) if args.out else Path(args.results) / "leaderboard")
    print(f"leaderboard written to {out / 'index.html'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.table:
        from leaderboard.fusion_table import fusion_table_cli
        return fusion_table_cli(args)
    if not args.a or not args.b:
        raise UserError("compare needs --a and --b (or --table)", field="--a/--b",
                        fix="pass --a MODEL --b MODEL, or --table fusion-tte for the fusion paper's table")
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

    pp = sub.add_parser("prepare", help="create a cohort (synthetic, mimic-iv) in the MEDS + sidecar format, "
                                        "or add MIMIC-CXR / MIMIC-IV-Note to one (mimic-cxr, mimic-note)")
    pps = pp.add_subparsers(dest="source", metavar="SOURCE")
    syn = pps.add_parser("synthetic", help="the deterministic synthetic multimodal cohort")
    syn.add_argument("--out", required=True, help="new folder to write the cohort to")
    syn.add_argument("--subjects", type=int, default=5000, help="number of subjects (default 5000)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument("--no-images", action="store_true", help="skip writing CXR PNG files (embeddings only)")
    syn.add_argument("--site", default="a", choices=("a", "b"),
                     help="a: the default cohort; b: a second hospital for external validation (other case mix, "
                          "coding habits and image distribution; same latent model)")
    syn.set_defaults(func=cmd_prepare)
    cf = pps.add_parser("cxr-folder", help="export a cohort's CXR PNGs + labels as a CheXpert-style image folder")
    cf.add_argument("--data", required=True, help="cohort folder with a cxr sidecar (path and labels columns)")
    cf.add_argument("--out", required=True, help="new folder: labels.csv + images/")
    cf.set_defaults(func=cmd_prepare_cxr_folder)
    mim = pps.add_parser("mimic-iv", help="raw MIMIC-IV CSVs -> MEDS via the MIMIC_IV_MEDS ETL (own venv)")
    mim.add_argument("--raw", required=True, help="MIMIC-IV folder with hosp/ and icu/ (PhysioNet layout)")
    mim.add_argument("--out", required=True, help="new folder to write the cohort to")
    mim.add_argument("--etl-version", default=None,
                     help="MIMIC_IV_MEDS version (default: the newest tested, 0.2.0; 0.1.3 also tested)")
    mim.add_argument("--seed", type=int, default=0, help="seed of the 70/15/15 splits if the ETL made none")
    mim.set_defaults(func=cmd_prepare_mimic_iv)
    for source, what in (("omop", "OMOP CDM 5.3/5.4 tables -> MEDS via meds_etl's OMOP converter (own venv)"),
                         ("eicu", "raw eICU-CRD 2.0 CSVs -> MEDS via the eICU_MEDS ETL (own venv)")):
        etl = pps.add_parser(source, help=what)
        etl.add_argument("--raw", required=True, help="folder of the raw tables (see data_prep/README.md)")
        etl.add_argument("--out", required=True, help="new folder to write the cohort to")
        etl.add_argument("--seed", type=int, default=0, help="seed of the subject-level 70/15/15 splits")
        etl.set_defaults(func=cmd_prepare_omop_eicu)
    cxr = pps.add_parser("mimic-cxr", help="add MIMIC-CXR-JPG studies to a MIMIC-IV cohort (cxr sidecar + CXR events)")
    cxr.add_argument("--raw", required=True, help="MIMIC-CXR-JPG folder (mimic-cxr-2.0.0-*.csv.gz, files/)")
    cxr.add_argument("--data", required=True, help="the MIMIC-IV MEDS cohort to add to (changed in place)")
    cxr.add_argument("--labeler", default="chexpert", help="chexpert | negbio")
    cxr.add_argument("--uncertain", default="zeros", help="-1.0 labels: zeros (U-Zeros) | ones (U-Ones)")
    cxr.add_argument("--images", default="link", help="link | copy | none (none needs --embeddings)")
    cxr.add_argument("--embeddings", default=None, help="parquet of dicom_id or study_id -> embedding")
    cxr.set_defaults(func=cmd_prepare_mimic_cxr)
    note = pps.add_parser("mimic-note", help="add MIMIC-IV-Note notes to a MIMIC-IV cohort (text events, note sidecar)")
    note.add_argument("--raw", required=True,
                      help="MIMIC-IV-Note folder (note/discharge.csv.gz, note/radiology.csv.gz)")
    note.add_argument("--data", required=True, help="the MIMIC-IV MEDS cohort to add to (changed in place)")
    note.add_argument("--note-types", default="discharge,radiology", help="comma list of discharge, radiology")
    note.add_argument("--embeddings", default=None,
                      help="parquet of note_id -> embedding (writes modalities/note.parquet)")
    note.set_defaults(func=cmd_prepare_mimic_note)

    pt = sub.add_parser("tasks", help="list tasks (name, kind, modalities, version)")
    pt.add_argument("--json", action="store_true")
    pt.add_argument("--dataset", help="a dataset profile: show which predicates its map lacks per task")
    pt.set_defaults(func=cmd_tasks)

    pm = sub.add_parser("models", help="list registered models")
    pm.add_argument("--json", action="store_true")
    pm.set_defaults(func=cmd_models)

    pck = sub.add_parser("check-model", help="check a model against the registry contract on a tiny synthetic cohort "
                                            "(shapes, determinism, leakage, time, memory) and print what to fix",
                         epilog="exit status: 0 every check passed (or was skipped); 1 some check failed; 2 bad input")
    pck.add_argument("target", metavar="NAME|MODULE",
                     help="a registered model, pkg.mod, pkg.mod:ATTR, or path/to/model.py holding SPEC or SPECS")
    pck.add_argument("--budget", choices=("smoke", "default", "full"), default="smoke",
                     help="the budget the factory gets (default smoke)")
    pck.add_argument("--json", action="store_true", help="print the report as JSON")
    pck.set_defaults(func=cmd_check_model)

    pd_ = sub.add_parser("datasets", help="list installed dataset profiles (name, folder, recognise)")
    pd_.add_argument("--json", action="store_true")
    pd_.set_defaults(func=cmd_datasets)

    pr = sub.add_parser("run", help="run models on tasks and write result files",
                        epilog="exit status: 0 every cell finished or was kept; 1 some cell failed or its result "
                               "could not be written (the other cells still ran); 2 bad input: flags, files, an "
                               "unwritable --results, or a task the data cannot support (no training samples, "
                               "one class in training), each printed with its fix")
    pr.add_argument("--model", required=True, help="model name(s), comma-separated")
    pr.add_argument("--task", required=True, help="task name(s), comma-separated, a family, or 'all'")
    pr.add_argument("--data", help="cohort folder (default: the embedded synthetic cohort)")
    add_map_args(pr)
    pr.add_argument("--results", default=str(default_results_dir()), help="results folder (default ./results)")
    pr.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    pr.add_argument("--budget", choices=("smoke", "default", "full"), default="default")
    pr.add_argument("--force", action="store_true", help="recompute finished cells")
    pr.add_argument("--ablate-modalities", action="store_true",
                    help="also mask each modality at test time: leave-one-out with paired bootstrap and the "
                         "0/25/50/75/100%% missing-modality sweep (fusion heads, MEHRT); finished cells without "
                         "ablations are rerun")
    pr.add_argument("--external-data", metavar="DIR",
                    help="external validation: also score each cell's fitted model on DIR (a MEDS cohort, e.g. "
                         "another site, or an image folder with a CheXpert-style labels.csv); results go into the "
                         "record's `external` list, predictions next to the seed file; finished cells without it "
                         "are refitted for it")
    pr.add_argument("--labels", metavar="DIR",
                    help="use labels made elsewhere (ACES, MEDS-DEV, `labels --export`: MEDS LabelSchema parquet, "
                         "DIR/<split>/*.parquet or one file; an export's DIR/<task>/ for several tasks) instead of "
                         "extracting the task's labels; the task still sets kind, modalities, input window, "
                         "fairness and metrics")
    pr.add_argument("--k-shots", metavar="K,...",
                    help="few-shot curve: refit every model on k subjects per class drawn for training and k for "
                         "tuning (e.g. 1,4,16,64,all), scored on the whole held-out set; cells seed<s>.shots-<k>-d<draw>")
    pr.add_argument("--train-fraction", metavar="F,...",
                    help="label-fraction curve: refit on that fraction of each class's training and tuning subjects "
                         "(e.g. 0.01,0.1,1); cells seed<s>.frac-<f>-d<draw>")
    pr.add_argument("--draws", type=int, default=3, help="draws per few-shot point (default 3; 'all' has one)")
    pr.add_argument("--jobs", type=int, default=1, metavar="K",
                    help="run cells in K local worker processes, each with cores/K threads (default 1: one by one)")
    pr.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local (this machine, --jobs) or ray: one Ray task per cell on a running cluster, with each "
                         "model's declared CPUs/GPUs (pip install 'mehr-bench[ray]')")
    pr.add_argument("--address", metavar="ADDR",
                    help="the Ray cluster (host:port that `ray start --head` prints; default: the running local one)")
    pr.add_argument("--shard", metavar="i/N",
                    help="run only shard i of N of the grid (cell j when j %% N == i), e.g. a Slurm array's "
                         "${SLURM_ARRAY_TASK_ID}/N; all shards write into one shared --results folder")
    pr.set_defaults(func=cmd_run)

    psc = sub.add_parser("scale", help="scaling study: pretrain EHRT and MEHRT at several sizes, probe every "
                                       "oncology task, macro AUROC vs parameters and perplexity by stage",
                         epilog="exit status as `run`; writes scale_summary.json / .md and scale_plot.svg in --results")
    psc.add_argument("--sizes", required=True, help="sizes, comma-separated (tiny, small, 9M, 28M, 56M, 109M, 256M, "
                                                    "535M, 982M: encoders/mehrt/sizes.py)")
    psc.add_argument("--families", default="ehrt,mehrt", help="ehrt and/or mehrt (default both)")
    psc.add_argument("--tokens-rule", help="fixed:N (N Stage-1 tokens for every size; k/M/B allowed) or chinchilla:R "
                                           "(R x non-embedding parameters); default fixed at the budget's Stage-1 "
                                           "tokens (default budget: 614400)")
    psc.add_argument("--max-epochs", type=float, default=10.0,
                     help="cap on Stage-1 passes over the training corpus (default 10, the paper's)")
    psc.add_argument("--tasks", default="oncology", help="task selection; its binary tasks run (default oncology)")
    psc.add_argument("--data", help="cohort folder (default: the embedded synthetic cohort)")
    psc.add_argument("--dataset", help="dataset profile name or folder (default: recognised)")
    psc.add_argument("--results", default=str(default_results_dir() / "scale"),
                     help="results folder, one per token rule (default ./results/scale)")
    psc.add_argument("--seeds", type=int, default=1, help="probe seeds per cell (default 1)")
    psc.add_argument("--budget", choices=("smoke", "default", "full"), default="default",
                     help="probe search (and the default token rule); the rule sets the pretraining steps")
    psc.add_argument("--compile", action="store_true", help="torch.compile pretraining on CUDA")
    psc.add_argument("--force", action="store_true", help="recompute finished cells")
    psc.set_defaults(func=cmd_scale)

    add_meds_parsers(sub, pt)  # evaluate, fit, predict, export, tasks import-aces (benchmark/cli_meds.py)

    pl_ = sub.add_parser("leaderboard", help="build the static HTML leaderboard from result files")
    pl_.add_argument("--results", default=str(default_results_dir()))
    pl_.add_argument("--out", help="output folder (default <results>/leaderboard)")
    pl_.set_defaults(func=cmd_leaderboard)

    pv = sub.add_parser("validate", help="check a cohort folder (MEDS + sidecar + leakage-relevant checks)")
    pv.add_argument("--data", required=True)
    add_map_args(pv)
    pv.set_defaults(func=cmd_validate)

    plb = sub.add_parser("labels", help="extract task labels; print counts, attrition and warnings")
    plb.add_argument("--task", default="all")
    plb.add_argument("--data")
    add_map_args(plb)
    plb.add_argument("--export", "--out", dest="export", metavar="DIR",
                     help="also write DIR/<task>/<split>/0.parquet in the MEDS LabelSchema, the layout ACES and "
                          "MEDS-DEV models use (--out: older name)")
    plb.add_argument("--workers", type=int, metavar="W",
                     help="shards labelled at once, each worker holding one shard in memory (default: one per CPU, "
                          "at most one per shard; the labels do not depend on it)")
    plb.set_defaults(func=cmd_labels)

    pc = sub.add_parser("compare", help="paired comparison of two models across tasks, or a paper's table (--table)")
    pc.add_argument("--a")
    pc.add_argument("--b", help="model B, or several separated by commas: per task the best of them")
    pc.add_argument("--table", choices=("fusion-tte",),
                    help="fusion-tte: Table 1 of 'Fusion is not one-size-fits-all' (Harrell's C with CIs, internal and "
                         "external, * / + paired p < 0.05 vs image_only_mlp / concat_mlp) as Markdown; --tasks "
                         "default survival/pe_mortality,survival/mace, --out FILE.md")
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
