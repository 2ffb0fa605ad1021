"""The MEDS-ecosystem commands of the CLI: `evaluate` (outside predictions), `fit` / `predict`
(MEDS-DEV's model contract), `export meds-dev | hf`, `tasks import-aces`. Each handler imports what it
needs lazily, as in benchmark.cli; `add_meds_parsers` declares their arguments."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmark.cli_support import add_map_args, resolve_cohort as _resolve_cohort
from benchmark.errors import UserError


def cmd_tasks_import_aces(args: argparse.Namespace) -> int:
    """Translate an ACES / MEDS-DEV task config into a task file (benchmark.aces_import)."""
    from benchmark.aces_import import import_aces, write_task_file

    task, notes = import_aces(args.config, args.predicates, args.reference or None)
    out = write_task_file(task, args.out, header=f"Imported by `benchmark tasks import-aces` from {Path(args.config).name}")
    print(f"wrote {out}")
    for n in notes:
        print(f"note: {n}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """`fit` (MEDS-DEV's supervised train): fit one model on a label folder and save it (benchmark.meds_dev)."""
    from benchmark.meds_dev import fit_model

    out = fit_model(args.model, args.task, _resolve_cohort(args), Path(args.labels), Path(args.out),
                    budget=args.budget, seed=args.seed)
    print(f"wrote fitted {args.model} (budget {args.budget}, seed {args.seed}) to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """`predict` (MEDS-DEV's supervised predict): load a fitted model, write <out>/predictions.parquet."""
    from benchmark.meds_dev import predict_model

    out = predict_model(Path(args.model_dir), _resolve_cohort(args), Path(args.labels), Path(args.out),
                        split=args.split, model=args.model)
    print(f"wrote {out}")
    return 0


def cmd_export_meds_dev(args: argparse.Namespace) -> int:
    """`export meds-dev`: one result cell as MEDS-DEV's result JSON."""
    from benchmark.meds_dev import export_meds_dev

    out = export_meds_dev(Path(args.results), args.model, args.task, args.seed, args.dataset, Path(args.out))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`evaluate`: score predictions made outside MEHR-Bench (benchmark.external_predictions) into a
    normal result record; prints its metrics and where it was written."""
    from benchmark.external_predictions import evaluate_predictions
    from benchmark.results import cell_paths

    cohort = _resolve_cohort(args)
    rec = evaluate_predictions(args.task, args.predictions, args.name, data=cohort, results=Path(args.results),
                               seed=args.seed, budget=args.budget, force=args.force)
    print(f"{rec.model} on {rec.task} (seed {rec.seed}, {rec.n_test} held-out samples): {rec.status}")
    for metric, m in (rec.metrics or {}).items():
        if metric.startswith("_"):
            continue
        ci = f" [{m.ci_low:.4f}, {m.ci_high:.4f}]" if m.ci_low is not None and m.ci_high is not None else ""
        print(f"  {metric}: " + (f"{m.value:.4f}{ci}" if m.value is not None else f"refused ({m.refused})"))
    print(f"wrote {cell_paths(Path(args.results), rec.model, rec.task, rec.seed)[0]}")
    return 0


def cmd_export_hf(args: argparse.Namespace) -> int:
    """`export hf`: EHRT as a Hugging Face LlamaForCausalLM folder (encoders/mehrt/hf_export.py)."""
    if bool(args.checkpoint) == bool(args.model):
        raise UserError("export hf needs exactly one of --checkpoint and --model", field="--checkpoint/--model",
                        fix="pass --checkpoint STAGE_FOLDER (~/.cache/mehr-bench/mehrt/ckpt/s1-...) or --model ehrt")
    from encoders.mehrt.hf_export import export_llama, export_registered, summary

    out = Path(args.out)
    if args.checkpoint:
        export_llama(Path(args.checkpoint), out, tokenizer=args.tokenizer, structured_only=args.structured_only,
                     require_tokenizer=True)
    else:
        export_registered(args.model, _resolve_cohort(args), args.budget, out,
                          structured_only=args.structured_only, log=print)
    s = summary(out)
    print(f"wrote {s['folder']}: LlamaForCausalLM, {s['parameters']:,} parameters, vocabulary {s['vocab_size']}, "
          f"{s['layers']} layers x {s['hidden_size']} ({', '.join(s['files'])})")
    return 0


def add_meds_parsers(sub: argparse._SubParsersAction, pt: argparse.ArgumentParser) -> None:
    """Declare the MEDS-ecosystem commands on the CLI's sub-parsers.

    Args:
        sub: the top-level sub-parsers (`python -m benchmark <command>`).
        pt: the `tasks` parser (gets the `import-aces` sub-command).
    """
    from benchmark.paths import default_results_dir

    pts = pt.add_subparsers(dest="tasks_command", metavar="{import-aces}")
    pia = pts.add_parser("import-aces", help="translate an ACES / MEDS-DEV task config into a task file")
    pia.add_argument("config", help="the ACES task config (.yaml)")
    pia.add_argument("--predicates", default=None,
                     help="an ACES / MEDS-DEV dataset predicates file that fills the config's ??? predicates")
    pia.add_argument("--out", required=True, help="the task file to write, e.g. tasks/meds_dev/<name>.yaml")
    pia.add_argument("--reference", action="append", default=[],
                     help="a reference of the task (repeatable; default: 'adapted from the ACES task config ...')")
    pia.set_defaults(func=cmd_tasks_import_aces)

    pe = sub.add_parser("evaluate", help="score predictions made outside MEHR-Bench (meds-evaluation schema, or "
                                         "MEHR-Bench's files for other kinds) like a registered model's")
    pe.add_argument("--task", required=True, help="the task the predictions are for (one task)")
    pe.add_argument("--predictions", required=True, metavar="FILE|DIR",
                    help="a parquet file, or a folder: every *.parquet under it (e.g. one per shard)")
    pe.add_argument("--name", required=True, help="the name on the leaderboard (not a registered model's)")
    pe.add_argument("--data", help="the cohort the predictions were made on (default: the embedded synthetic cohort)")
    add_map_args(pe)
    pe.add_argument("--results", default=str(default_results_dir()), help="results folder (default ./results)")
    pe.add_argument("--seed", type=int, default=0, help="the seed the record is filed under and the bootstrap "
                                                        "seed (default 0)")
    pe.add_argument("--budget", choices=("smoke", "default", "full"), default="default",
                    help="sets the bootstrap replicates, as in `run`")
    pe.add_argument("--force", action="store_true", help="replace a result of this name made from other predictions")
    pe.set_defaults(func=cmd_evaluate)

    budget_env = os.environ.get("MEHR_BENCH_BUDGET", "default")  # MEDS-DEV's commands carry no budget
    pf = sub.add_parser("fit", help="fit one model on a label folder and save it (MEDS-DEV's supervised train)")
    pf.add_argument("--model", required=True, help="model name")
    pf.add_argument("--task", help="task name (default: an anonymous binary task of the labels' boolean_value)")
    pf.add_argument("--data", help="MEDS cohort folder (default: the embedded synthetic cohort)")
    pf.add_argument("--dataset", help="dataset profile name or folder (default: recognised from metadata/dataset.json)")
    pf.add_argument("--labels", required=True, metavar="DIR",
                    help="the task's labels: MEDS LabelSchema parquet (DIR/<split>/*.parquet, or one file)")
    pf.add_argument("--out", required=True, metavar="DIR", help="folder to write model.pkl and manifest.json to")
    pf.add_argument("--budget", choices=("smoke", "default", "full"), default=budget_env,
                    help="default: $MEHR_BENCH_BUDGET, else default")
    pf.add_argument("--seed", type=int, default=0, help="seed (as run's seed<k>; default 0)")
    pf.set_defaults(func=cmd_fit)

    pp_ = sub.add_parser("predict", help="load a fitted model and write DIR/predictions.parquet "
                                         "(MEDS-DEV's supervised predict)")
    pp_.add_argument("--model-dir", required=True, metavar="DIR", help="the --out folder of `fit`")
    pp_.add_argument("--model", help="refuse a folder that holds another model")
    pp_.add_argument("--data", help="MEDS cohort folder (default: the embedded synthetic cohort)")
    pp_.add_argument("--dataset", help="dataset profile name or folder (default: recognised from metadata/dataset.json)")
    pp_.add_argument("--labels", required=True, metavar="DIR", help="the task's labels (their --split rows are predicted)")
    pp_.add_argument("--split", default="held_out", help="train | tuning | held_out (default held_out)")
    pp_.add_argument("--out", required=True, metavar="DIR", help="folder to write predictions.parquet to")
    pp_.set_defaults(func=cmd_predict)

    pex = sub.add_parser("export", help="export a result cell or a model for other MEDS tools (meds-dev, hf)")
    pexs = pex.add_subparsers(dest="target", metavar="TARGET", required=True)
    emd = pexs.add_parser("meds-dev", help="one result cell as MEDS-DEV's result JSON (<= 1.5 KB)")
    emd.add_argument("--results", default=str(default_results_dir()), help="results folder (default ./results)")
    emd.add_argument("--model", required=True)
    emd.add_argument("--task", required=True)
    emd.add_argument("--seed", type=int, default=0, help="the cell's seed (default 0)")
    emd.add_argument("--dataset", required=True, help="the dataset name MEDS-DEV knows it by (e.g. MIMIC-IV)")
    emd.add_argument("--out", required=True, metavar="FILE", help="the JSON file to write")
    emd.set_defaults(func=cmd_export_meds_dev)

    phf = pexs.add_parser("hf", help="EHRT as a Hugging Face LlamaForCausalLM folder (weights, config, vocabulary)")
    phf.add_argument("--checkpoint", metavar="PATH",
                     help="a pretraining stage folder, model.safetensors + meta.json: "
                          "~/.cache/mehr-bench/mehrt/ckpt/s1-... (under $MEHR_BENCH_CACHE if set)")
    phf.add_argument("--model", help="a registered EHRT (ehrt, ehrt-<size>): its pretrained weights on --data "
                                     "at --budget, pretrained now if not cached")
    phf.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    phf.add_argument("--tokenizer", metavar="FILE", help="the checkpoint's tokenizer.json (default: found in the "
                                                           "MEHRT cache next to a Stage-1 checkpoint)")
    phf.add_argument("--structured-only", action="store_true",
                     help="export a MEHRT's EHR-only backbone (drops image projections and PRS, which have no "
                          "Llama equivalent; logits equal MEHRT's without image / PRS inputs)")
    phf.add_argument("--data", help="cohort folder for --model (default: the embedded synthetic cohort)")
    phf.add_argument("--dataset", help="dataset profile name or folder (with --model)")
    phf.add_argument("--budget", choices=("smoke", "default", "full"), default="default",
                     help="--model's size and pretraining steps, as `run` uses them")
    phf.set_defaults(func=cmd_export_hf)
