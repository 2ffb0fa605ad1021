"""Out-of-distribution test of the image-only models: fit on a cohort (in-site), score
`predict_images` on a CheXpert-style image folder (another site, no EHR).

The folder holds ``labels.csv`` (column ``Path``, relative to the folder, then one column per
finding named as the task's outcomes, values 1 / 0 / blank = unknown) and the images
(``data_prep.cxr_folder.export_chexpert_folder`` writes one from a synthetic cohort). Macro AUROC is
the mean over the labels that have both classes among their non-blank rows; its 95% CI is the
percentile interval of a row bootstrap (a folder has no subject ids).

    python -m encoders.medcam.ood --folder DIR [--data COHORT] [--models medcam,cxr_supervised,cxr_simclr]
                                  [--budget smoke|default|full] [--max-iterations N] [--seed 0]
                                  [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from benchmark.errors import UserError

TASK = "cxr/chexpert_multilabel"


def read_folder(folder: str | Path, label_names: list[str]) -> tuple[list[Path], np.ndarray]:
    """Image paths and targets (float [n, L], NaN = blank) of a CheXpert-style folder.

    Raises:
        UserError: no labels.csv, a missing column, values other than 1 / 0 / blank, or paths outside the folder.
    """
    folder = Path(folder)
    csv = folder / "labels.csv"
    if not csv.is_file():
        raise UserError("no labels.csv in the image folder", file=csv, fix="give a CheXpert-style folder "
                        "(python -m benchmark prepare cxr-folder writes one)")
    df = pl.read_csv(csv, infer_schema_length=0)
    missing = [c for c in ["Path", *label_names] if c not in df.columns]
    if missing:
        raise UserError(f"labels.csv lacks column(s) {missing}", file=csv, field=missing[0],
                        fix="name the columns Path and the task's outcomes: " + ", ".join(label_names))
    y = np.full((df.height, len(label_names)), np.nan)
    for j, c in enumerate(label_names):
        v = df[c].str.strip_chars().fill_null("")
        bad = ~v.is_in(["", "1", "0", "1.0", "0.0"])
        if bad.any():
            raise UserError(f"labels.csv column {c} has value {v.filter(bad)[0]!r}", file=csv, field=c,
                            fix="use 1, 0 or blank (unknown)")
        y[:, j] = np.where(v == "", np.nan, v.cast(pl.Float64, strict=False).fill_null(0).to_numpy())
    root = folder.resolve()
    paths = [(folder / p).resolve() for p in df["Path"].to_list()]
    if any(not p.is_relative_to(root) for p in paths):
        raise UserError("labels.csv lists a Path outside the folder", file=csv, field="Path",
                        fix="give paths relative to the folder")
    return paths, y


def macro_auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean AUROC over labels with both classes among their non-blank (non-NaN) rows; NaN if none."""
    vals = []
    for j in range(y.shape[1]):
        m = ~np.isnan(y[:, j])
        if m.any() and len(np.unique(y[m, j])) == 2:
            vals.append(roc_auc_score(y[m, j], p[m, j]))
    return float(np.mean(vals)) if vals else math.nan


def with_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Macro AUROC with a 95% percentile CI from a row bootstrap."""
    rng = np.random.default_rng(seed)
    est = macro_auroc(y, p)
    draws = [macro_auroc(y[i], p[i]) for i in rng.integers(0, len(y), (n_boot, len(y)))]
    draws = np.array([d for d in draws if math.isfinite(d)])
    lo, hi = (np.percentile(draws, [2.5, 97.5]) if len(draws) else (math.nan, math.nan))
    return {"value": est, "ci_low": float(lo), "ci_high": float(hi), "n": int(len(y)), "n_boot": n_boot}


def score_folder(model, folder: str | Path, label_names: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Macro AUROC (95% CI) of a fitted image model's `predict_images` on a CheXpert-style folder."""
    paths, y = read_folder(folder, label_names)
    return with_ci(y, np.asarray(model.predict_images(paths), dtype=float), n_boot, seed)


def main(argv: list[str] | None = None) -> dict:
    from benchmark.data.cohort import Cohort
    from benchmark.default_cohort import ensure_default_cohort
    from benchmark.labels import extract_labels
    from benchmark.registry import get_model
    from benchmark.runner import resolve_budget, task_data
    from benchmark.task_registry import load_tasks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", default="medcam,cxr_supervised,cxr_simclr")
    ap.add_argument("--budget", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--max-iterations", type=int, default=None, help="override the budget's max_iterations")
    a = ap.parse_args(argv)
    task = load_tasks()[TASK]
    cohort = Cohort(a.data or ensure_default_cohort())
    data = task_data(task, cohort, a.seed, extract_labels(task, cohort).labels)
    budget = resolve_budget(a.budget)
    if a.max_iterations is not None:
        budget = dataclasses.replace(budget, name=f"{budget.name}-it{a.max_iterations}", max_iterations=a.max_iterations)
    names = list(task.label_names())
    out = {"task": TASK, "budget": budget.name, "folder": str(a.folder), "models": {}}
    for name in a.models.split(","):
        t0 = time.time()
        m = get_model(name).factory(budget=budget, seed=a.seed).fit(data)
        fit_s = time.time() - t0
        y = data.y("held_out").astype(float)
        ins = with_ci(y, np.asarray(m.predict(data, "held_out").score, float), budget.n_boot, a.seed)
        ood = score_folder(m, a.folder, names, budget.n_boot, a.seed)
        out["models"][name] = {"in_site": ins, "out_of_site": ood, "fit_s": round(fit_s, 1),
                               "finetune": {k: v for k, v in m.info_["finetune"].items() if k != "traces"}}
        print(name, json.dumps(out["models"][name]), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
