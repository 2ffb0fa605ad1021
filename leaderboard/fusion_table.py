"""`python -m benchmark compare --table fusion-tte`: Table 1 of "Fusion is not one-size-fits-all".

Rows: image_only_mlp; ehr_only_mlp per EHR source; per source (bag-of-events "", EHR foundation model
"_fm", curated risk factors "_curated") the fusion heads concat_mlp, contrastive, cross_attention,
coattention_img, coattention_ehr. Columns: per task, the internal held-out split and every external
dataset the records were scored on (`run --external-data`). A cell is Harrell's C with its 95% CI
from the record, then "*" when the paired test against image_only_mlp gives p < 0.05 and "+" when
the paired test against concat_mlp of the same EHR source does (two-sided, as the paper's markers;
the sign is in the second table: the paired difference with its CI and p).

The paired tests are benchmark.stats.paired.paired_bootstrap (subject bootstrap, 2000 resamples by
default) on the two models' stored predictions joined on (subject_id, prediction_time): the internal
predictions files, or the external ones (`seed<k>.external-<fp[:12]>.predictions.parquet`). Per
(model, task) the record used is the newest task version's lowest seed with status ok; two records
on different data or task versions are never paired ("not comparable"). Missing models or cells
show as "not run"; a refused metric shows its reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from benchmark.errors import UserError
from benchmark.kinds import kind_of
from benchmark.results import predictions_path
from leaderboard.records import ResultFile, load_records

SOURCES = (("", "bag-of-events"), ("_fm", "EHR foundation model"), ("_curated", "curated risk factors"))
HEADS = ("concat_mlp", "contrastive", "cross_attention", "coattention_img", "coattention_ehr")
IMAGE_ONLY = "image_only_mlp"
DEFAULT_TASKS = ("survival/pe_mortality", "survival/mace")
METRIC = "c_index_harrell"
ALPHA = 0.05


def table_models() -> list[tuple[str, str]]:
    """(model name, EHR source label) of each row, in the paper's order."""
    rows = [(IMAGE_ONLY, "none")]
    rows += [(f"ehr_only_mlp{s}", label) for s, label in SOURCES]
    rows += [(f"{h}{s}", label) for s, label in SOURCES for h in HEADS]
    return rows


def _concat_of(model: str) -> str | None:
    """concat_mlp of the same EHR source as a fusion head (None for the concat, image or EHR-only rows)."""
    for s, _ in SOURCES:
        for h in HEADS[1:]:
            if model == f"{h}{s}":
                return f"concat_mlp{s}"
    return None


def _pick(recs: list[ResultFile]) -> dict[tuple[str, str], ResultFile]:
    """(model, task) -> the record used: newest task version, lowest seed, status ok."""
    out: dict[tuple[str, str], ResultFile] = {}
    for r in recs:
        if r.rec.status not in ("ok", "refused"):
            continue
        k = (r.rec.model, r.rec.task)
        cur = out.get(k)
        if cur is None or (r.rec.task_version, -r.rec.seed) > (cur.rec.task_version, -cur.rec.seed):
            out[k] = r
    return out


def _columns(task: str, picked: dict) -> list[tuple[str, str | None]]:
    """(column label, external fingerprint or None for internal) of one task."""
    ext: dict[str, str] = {}
    for (m, t), r in picked.items():
        if t == task:
            for e in r.rec.external or []:
                ext.setdefault(e.dataset.fingerprint, e.dataset.name)
    names = list(ext.values())
    return [("internal", None)] + [(n if names.count(n) == 1 else f"{n} [{fp[:8]}]", fp) for fp, n in ext.items()]


def _cell(r: ResultFile | None, fp: str | None) -> dict:
    """The C-index cell of one record and column: value and CI, or text saying why there is none."""
    if r is None:
        return {"text": "not run"}
    if fp is None:
        m = (r.rec.metrics or {}).get(METRIC)
    else:
        e = r.rec.external_for(fp)
        if e is None:
            return {"text": "not run"}
        if e.not_applicable or e.error:
            return {"text": f"not applicable: {e.not_applicable}" if e.not_applicable else f"failed: {e.error}"}
        m = e.main(METRIC)
    if m is None:
        return {"text": "not run"}
    if m.value is None:
        return {"text": f"refused: {m.refused}"}
    return {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high}


def _pred_path(r: ResultFile, fp: str | None) -> Path:
    return r.pred if fp is None else predictions_path(r.path, r.rec.task_kind, fp)


def paired(ra: ResultFile, rb: ResultFile, fp: str | None, *, n_boot: int, seed: int) -> dict:
    """Paired bootstrap of Harrell's C, A - B, on the joined predictions of one column.

    Returns:
        {delta, ci_low, ci_high, p_value, n_rows, note} or {"text": why not}.
    """
    from benchmark.metrics.binary import DegenerateInputError
    from benchmark.stats.paired import paired_bootstrap

    if (ra.rec.dataset.fingerprint, ra.rec.task_version) != (rb.rec.dataset.fingerprint, rb.rec.task_version):
        return {"text": "not comparable (other data or task version)"}
    pa, pb = _pred_path(ra, fp), _pred_path(rb, fp)
    if not (pa.exists() and pb.exists()):
        return {"text": "no predictions file"}
    kind = kind_of(ra.rec.task_kind)
    fa, fb = pl.read_parquet(pa), pl.read_parquet(pb)
    truth = kind.truth_columns(fa.columns)
    fb = fb.rename({c: "B\u00a7" + c for c in fb.columns if c not in ("subject_id", "prediction_time")})
    j = fa.join(fb, on=["subject_id", "prediction_time"], how="inner").sort("subject_id", "prediction_time")
    if j.height == 0 or any(not j[c].equals(j["B\u00a7" + c]) for c in truth):
        return {"text": "not comparable (no shared rows, or labels differ)"}
    y, sa = kind.read_predictions(j)
    _, sb = kind.read_predictions(j, "B\u00a7")
    try:
        pr = paired_bootstrap(y, sa, sb, j["subject_id"].to_numpy(), metric=kind.paired_metrics[0], n_boot=n_boot,
                              seed=seed)
    except DegenerateInputError as e:
        return {"text": f"refused: {e}"}
    return {"delta": pr.delta, "ci_low": pr.ci_low, "ci_high": pr.ci_high, "p_value": pr.p_value,
            "n_rows": pr.n_rows, "note": pr.note}


def fusion_table(results_dir: Path, tasks: list[str] | None = None, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Table 1 (module docstring) as data.

    Returns:
        {"tasks": {task: [column labels]}, "rows": [{model, source, cells: {(task, column): cell}}],
         "diffs": [{model, vs, task, column, ...paired}], "n_boot", "seed"}; a cell has value, ci_low,
         ci_high, markers ("*", "+") or text.

    Raises:
        UserError: no results folder.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError("results folder not found", file=results_dir, field="--results",
                        fix="pass the folder that holds the result files")
    picked = _pick(load_records(results_dir)[0])
    tasks = list(tasks or DEFAULT_TASKS)
    cols = {t: _columns(t, picked) for t in tasks}
    rows, diffs = [], []
    for model, source in table_models():
        cells = {}
        for t in tasks:
            r = picked.get((model, t))
            for label, fp in cols[t]:
                cell = _cell(r, fp)
                marks = ""
                for vs, mark in ((IMAGE_ONLY, "*"), (_concat_of(model), "+")):
                    rb = picked.get((vs, t)) if vs and vs != model else None
                    if "value" not in cell or rb is None or "value" not in _cell(rb, fp):
                        continue
                    d = paired(r, rb, fp, n_boot=n_boot, seed=seed)
                    diffs.append({"model": model, "vs": vs, "task": t, "column": label, **d})
                    if isinstance(d.get("p_value"), float) and math.isfinite(d["p_value"]) and d["p_value"] < ALPHA:
                        marks += mark
                cells[(t, label)] = cell | ({"markers": marks} if "value" in cell else {})
        rows.append({"model": model, "source": source, "cells": cells})
    return {"tasks": {t: [c for c, _ in cols[t]] for t in tasks}, "rows": rows, "diffs": diffs, "n_boot": n_boot,
            "seed": seed}


def _num(x: float | None) -> str:
    return "\u2014" if x is None or not math.isfinite(x) else f"{x:.3f}"


def render_markdown(tab: dict) -> str:
    """The two tables as Markdown (cells escaped of '|')."""
    heads = [(t, c) for t, cs in tab["tasks"].items() for c in cs]
    out = ["## Harrell's C-index, mean (95% CI)", "",
           f"\\* p < {ALPHA} vs {IMAGE_ONLY}; + p < {ALPHA} vs concat_mlp of the same EHR source (paired subject "
           f"bootstrap, {tab['n_boot']} resamples, two-sided; the sign is in the second table).", "",
           "| model | EHR source | " + " | ".join(f"{t} ({c})" for t, c in heads) + " |",
           "|---|---|" + "---|" * len(heads)]
    for row in tab["rows"]:
        cells = []
        for k in heads:
            c = row["cells"][k]
            cells.append(c["text"].replace("|", "/") if "text" in c else
                         f"{_num(c['value'])} ({_num(c['ci_low'])}\u2013{_num(c['ci_high'])})"
                         + c["markers"].replace("*", "\\*"))
        out.append(f"| {row['model']} | {row['source']} | " + " | ".join(cells) + " |")
    out += ["", "## Paired differences in Harrell's C (model - comparator), 95% CI and p", "",
            "| model | vs | task | column | \u0394C (95% CI) | p | rows |", "|---|---|---|---|---|---|---|"]
    for d in tab["diffs"]:
        if "text" in d:
            val, p, n = d["text"].replace("|", "/"), "\u2014", "\u2014"
        else:
            val = f"{d['delta']:+.3f} ({_num(d['ci_low'])}, {_num(d['ci_high'])})" + (f" [{d['note']}]" if d["note"] else "")
            p = "\u2014" if not math.isfinite(d["p_value"]) else ("<0.001" if d["p_value"] < 0.001 else f"{d['p_value']:.3f}")
            n = str(d["n_rows"])
        out.append(f"| {d['model']} | {d['vs']} | {d['task']} | {d['column']} | {val} | {p} | {n} |")
    return "\n".join(out) + "\n"


def fusion_table_cli(args: Any) -> int:
    """`compare --table fusion-tte`: print the Markdown and write it to --out when given."""
    from benchmark.artifacts import atomic_write

    tasks = None if not args.tasks or args.tasks == "all" else [t.strip() for t in args.tasks.split(",") if t.strip()]
    text = render_markdown(fusion_table(Path(args.results), tasks, n_boot=args.n_boot, seed=args.seed))
    print(text)
    if args.out:
        atomic_write(Path(args.out), text)
        print(f"written to {args.out}")
    return 0
