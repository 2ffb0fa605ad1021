"""Image-folder external sets: a folder with a CheXpert-style `labels.csv` and the images.

    <folder>/labels.csv    Path (image file relative to the folder), then one column per finding,
                           named exactly as the task's `outcomes` keys; values 1, 0, blank or -1
    <folder>/images/...    the image files

Values: 1 positive; 0 and blank negative; -1 (CheXpert's "uncertain") is read as negative, the
U-Zeros policy of the CheXpert paper (Irvin et al., 2019), which is also how `prepare mimic-cxr
--uncertain zeros` (the default) labels the cohort's own CXR studies: the external labels then mean
what the internal ones mean. U-Ignore (dropping uncertain labels) would need per-label masks in the
macro metrics; it is not offered. Any other value is an error naming the file, the column and the row.

Only models implementing benchmark.model_api.ImagePredictor (predict_images) are scored on such a
folder, and only on multilabel tasks whose outcomes are the folder's finding columns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.data.sidecar_checks import inside_root
from benchmark.errors import UserError
from benchmark.kinds import MULTILABEL, kind_of
from benchmark.taskspec import TaskSpec

PATH_COLUMN = "Path"
UNCERTAIN_POLICY = "U-Zeros (-1 = uncertain read as negative), blank = negative"


@dataclass(frozen=True)
class ImageFolder:
    """An opened image folder: the findings (labels.csv column order), labels [n, L] and image paths."""

    root: Path
    findings: tuple[str, ...]
    labels: np.ndarray
    paths: tuple[Path, ...]
    rel_paths: tuple[str, ...]
    fingerprint: str


def open_image_folder(root: Path) -> ImageFolder:
    """Read and check labels.csv (module docstring); every named image must exist inside the folder.

    Raises:
        UserError: an unreadable labels.csv, no Path column or no finding column, a value other than
            1 / 0 / blank / -1, a path that is absolute, leaves the folder or names no file.
    """
    f = root / "labels.csv"
    fix_cols = f"labels.csv starts with a '{PATH_COLUMN}' column, then one column per finding"
    try:
        df = pl.read_csv(f, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise UserError(f"cannot be read as CSV ({str(e).splitlines()[0]})", file=f, fix=fix_cols) from None
    if PATH_COLUMN not in df.columns:
        raise UserError(f"no '{PATH_COLUMN}' column", file=f, field=PATH_COLUMN, fix=fix_cols)
    findings = tuple(c for c in df.columns if c != PATH_COLUMN)
    if not findings or df.height == 0:
        raise UserError("no finding column or no row", file=f, fix=fix_cols)
    cols = []
    for c in findings:
        v = df[c].str.strip_chars().fill_null("")
        num = v.replace("", "0").cast(pl.Float64, strict=False)
        bad = (num.is_null() | ~num.is_in([1.0, 0.0, -1.0])).arg_true()
        if len(bad):
            i = int(bad[0])
            raise UserError(f"value {df[c][i]!r} in row {i + 2} is not 1, 0, -1 or blank", file=f, field=c,
                            fix="write 1 (positive), 0 or blank (negative) or -1 (uncertain, read as negative)")
        cols.append((num.to_numpy() == 1.0).astype(np.int8))
    rel = df[PATH_COLUMN].fill_null("").to_list()
    paths = []
    for i, r in enumerate(rel):
        p = inside_root(root, r) if r else None
        if p is None or not p.is_file():
            what = "is empty" if not r else "is absolute or leaves the folder" if p is None else "names no file"
            raise UserError(f"image path {r!r} in row {i + 2} {what}", file=f, field=PATH_COLUMN,
                            fix="write each image's path relative to the folder holding labels.csv")
        paths.append(p)
    h = hashlib.sha256(f.read_bytes())
    for p in paths:
        st = p.stat()
        h.update(f"{st.st_size}\n".encode())
        with open(p, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return ImageFolder(root=root, findings=findings, labels=np.column_stack(cols), paths=tuple(paths),
                       rel_paths=tuple(rel), fingerprint=h.hexdigest()[:16])


def image_applicability(folder: ImageFolder, task: TaskSpec) -> str | None:
    """Why a task cannot be scored on the folder, or None.

    Raises:
        UserError: a multilabel CXR task whose outcomes are not the folder's finding columns (names
            labels.csv, the first missing or extra column and the fix).
    """
    if kind_of(task) is not MULTILABEL or "cxr" not in task.modalities:
        return "an image folder carries CXR finding labels only: it scores multilabel CXR tasks"
    want = task.label_names()
    missing = [c for c in want if c not in folder.findings]
    extra = [c for c in folder.findings if c not in want]
    if missing or extra:
        col = missing[0] if missing else extra[0]
        raise UserError(f"column {col!r} is {'missing' if missing else 'not an outcome of task ' + task.name}",
                        file=folder.root / "labels.csv", field=col,
                        fix=f"name the finding columns exactly as task {task.name}'s outcomes: {', '.join(want)}")
    return None


def score_images(model, task: TaskSpec, folder: ImageFolder, *, n_boot: int, seed: int) -> tuple[dict, pl.DataFrame]:
    """Score an ImagePredictor on the folder: the task's metrics with bootstrap CIs (each image its own
    unit: labels.csv has no patient column), and its predictions frame (Path + the kind's columns).

    Returns:
        (ExternalResult fields n_test, n_events, metrics; the predictions frame).
    """
    from benchmark.metrics.evaluate import evaluate

    names = task.label_names()
    order = [folder.findings.index(n) for n in names]
    y = folder.labels[:, order]
    score = np.asarray(model.predict_images(list(folder.paths)), dtype=float)
    if score.shape != y.shape:
        raise ValueError(f"predict_images returned shape {score.shape}, expected {y.shape}")
    kind = task.kind_obj
    res = evaluate(kind.name, kind.evaluation_target(y), score, None, n_boot=n_boot, seed=seed)
    metrics = {k: r.to_dict() for k, r in res.items()}
    samples = pl.DataFrame({"subject_id": np.arange(len(y), dtype=np.int64),
                            "prediction_time": pl.Series([None] * len(y), dtype=pl.Datetime("us"))})
    frame = kind.predictions_frame(samples, y, score, names).with_columns(
        pl.Series(PATH_COLUMN, list(folder.rel_paths)))
    return {"n_test": int(len(y)), "n_events": kind.n_events(y), "metrics": metrics}, frame
