"""Label folders: MEDS LabelSchema parquet per split, the layout ACES writes under MEDS-DEV and its
models read.

    <dir>/<split>/0.parquet     subject_id, prediction_time and the label value columns (meds.LabelSchema)

`write_label_dir` writes a task's labels that way (`labels --export`); `read_label_dir` reads any
folder of LabelSchema parquet files (at any depth: ACES writes one file per data shard, e.g.
<dir>/train/0.parquet) or one file. `task_labels` is what `run --labels`, `fit` and `predict` use:
labels made elsewhere, checked against the task (its kind's value columns) and the cohort (known
subjects, prediction times inside each subject's record, no duplicates, split folders that agree
with the cohort's splits), plus their content hash (`labels_hash`), which the runner puts into each
record's provenance and into its cache keys.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import polars as pl

from benchmark.artifacts import atomic_dir
from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.taskspec import Index, Label, TaskSpec, Window
from benchmark.vocabulary import SPLITS

LABEL_FILE = "0.parquet"  # one file per split (ACES writes one per data shard; readers take any)
ANONYMOUS_TASK = "external_labels"
_SOURCE, _SPLIT_DIR = "__file", "__split_dir"
_FIX_FORMAT = ("write MEDS LabelSchema parquet (subject_id int64, prediction_time timestamp[us], and "
               "boolean_value / integer_value / float_value), e.g. with ACES or `python -m benchmark labels --export`")


def _schema():
    import meds  # pyarrow schemas; imported when labels are read or written, not with the package
    return meds.LabelSchema


def label_columns() -> list[str]:
    """The MEDS LabelSchema columns, in schema order."""
    return list(_schema().schema().names)


# ---------------------------------------------------------------------------- write
def write_label_dir(labels: pl.DataFrame, splits: pl.DataFrame, out_dir: Path) -> Path:
    """Write labels as MEDS LabelSchema parquet per split: out_dir/<split>/0.parquet, atomically.

    Every split of `splits` gets a file (an empty one when it has no labels). Label rows of
    subjects that `splits` does not know are not written, and a warning says how many (with
    examples): they are never dropped silently. An existing out_dir that holds only label files is
    replaced as a whole; readers see the old folder or the new one.

    Args:
        labels: LabelSchema rows (subject_id, prediction_time, value columns).
        splits: subject_id -> split (the cohort's metadata/subject_splits.parquet).
        out_dir: the folder to write.

    Returns:
        out_dir.

    Raises:
        UserError: out_dir holds other files, or cannot be written.
    """
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    schema = _schema()
    lab = labels.join(splits.select("subject_id", "split"), on="subject_id", how="left")
    lost = lab.filter(pl.col("split").is_null())
    if lost.height:
        ids = lost["subject_id"].unique().sort().head(5).to_list()
        warnings.warn(f"{lost.height} label row(s) of {lost['subject_id'].n_unique()} subject(s) without a split "
                      f"in the cohort's splits file were not written to {out_dir} (subject_id {ids}...); "
                      "give them a split in metadata/subject_splits.parquet to export them", stacklevel=2)
    names = list(dict.fromkeys(splits["split"].drop_nulls().to_list()))
    if out_dir.exists():
        _check_replaceable(out_dir)
    try:
        with atomic_dir(out_dir, replace=True) as tmp:
            for split in names:
                part = lab.filter(pl.col("split") == split).drop("split").sort("subject_id", "prediction_time")
                (tmp / split).mkdir()
                pq.write_table(schema.align(part.to_arrow()), tmp / split / LABEL_FILE)
    except OSError as e:
        raise UserError(f"cannot write labels: {e.strerror or e}", file=out_dir, field="--export",
                        fix="pass a folder you can write to") from None
    return out_dir


def _check_replaceable(out_dir: Path) -> None:
    """An existing export folder is replaced only if it holds nothing but label parquet files."""
    other = [p for p in out_dir.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    if not out_dir.is_dir() or other:
        raise UserError("exists and holds other files than labels; not overwritten", file=other[0] if other else out_dir,
                        field="--export", fix="pass a new folder, or remove that one")



# ---------------------------------------------------------------------------- read
def read_label_dir(path: Path) -> pl.DataFrame:
    """Read a folder of MEDS LabelSchema parquet files (at any depth; hidden folders such as ACES'
    .logs are skipped) or one parquet file.

    Args:
        path: the folder or file.

    Returns:
        The rows of all files, with every MEDS LabelSchema column (absent value columns are null),
        in file order.

    Raises:
        UserError: no such path, no parquet file, a file that is not parquet, a missing column or a
            column whose type cannot be read as the LabelSchema's (naming the file and the column).
    """
    return _read_files(Path(path)).drop(_SOURCE, _SPLIT_DIR)


def _label_files(path: Path) -> list[Path]:
    fix = ("pass the folder of a task's labels (ACES / MEDS-DEV: <dir>/<split>/*.parquet; "
           "`python -m benchmark labels --export DIR` writes DIR/<task>/<split>/0.parquet) or one parquet file")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError("no such label folder or file", file=path, field="--labels", fix=fix)
    files = sorted(p for p in path.rglob("*.parquet")
                   if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts))
    if not files:
        raise UserError("holds no parquet label file", file=path, field="--labels", fix=fix)
    return files


def _split_of(root: Path, f: Path) -> str | None:
    """The split a file's folder names (<root>/<split>/...), or None (a flat file)."""
    if f == root:
        return None
    parts = f.relative_to(root).parts[:-1]
    return parts[0] if parts and parts[0] in SPLITS else None


def _read_files(path: Path) -> pl.DataFrame:
    """All label files under path with their LabelSchema columns, the file and its split folder."""
    frames = [_read_one(f).with_columns(pl.lit(str(f)).alias(_SOURCE),
                                        pl.lit(_split_of(path, f), dtype=pl.String).alias(_SPLIT_DIR))
              for f in _label_files(path)]
    return pl.concat(frames, how="vertical")


def _read_one(f: Path) -> pl.DataFrame:
    """One label file as a frame of every LabelSchema column (extra columns are ignored, as ACES does)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    try:
        table = pq.read_table(f)
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"cannot be read as parquet ({str(e).splitlines()[0]})", file=f, fix=_FIX_FORMAT) from None
    want = schema.schema()
    for col in ("subject_id", "prediction_time"):
        if col not in table.column_names:
            raise UserError("required MEDS LabelSchema column is missing", file=f, field=col, fix=_FIX_FORMAT)
    cols = [c for c in want.names if c in table.column_names]
    # cast column by column to the LabelSchema's types (meds' align would also refuse nulls in a value
    # column, but ACES writes every value column, null where unused; check_labels checks nulls per kind)
    arrays = []
    for c in cols:
        try:
            arrays.append(table.column(c).cast(want.field(c).type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise UserError(f"has type {table.schema.field(c).type}, which cannot be read as MEDS LabelSchema's "
                            f"{want.field(c).type} ({str(e).splitlines()[0]})", file=f, field=c,
                            fix=_FIX_FORMAT) from None
    table = pa.table(arrays, names=cols)
    df = pl.from_arrow(table)
    dtypes = pl.from_arrow(want.empty_table()).schema
    return df.with_columns([pl.lit(None, dtype=dtypes[c]).alias(c) for c in want.names if c not in df.columns]
                           ).select(want.names)


# ---------------------------------------------------------------------------- a task's labels
def anonymous_task(source: Path) -> TaskSpec:
    """The task of a label folder that comes without a task name (a MEDS-DEV model command gets only
    the labels folder): binary, labels = boolean_value, EHR only, every history before the prediction
    time visible, binary metrics. Its index and label rules are never evaluated (labels are given).

    Args:
        source: the label folder (named in the description).

    Returns:
        The TaskSpec, named ANONYMOUS_TASK.
    """
    return TaskSpec(name=ANONYMOUS_TASK, version=1, kind="binary",
                    description=f"binary labels read from {Path(source).name} (boolean_value); no task definition",
                    index=Index(predicate="_record_start"),
                    label=Label(outcome="_record_start", window=Window(start="0", end="inf")),
                    metrics=("auroc", "auprc", "brier", "ece"), main_metric="auroc")


def labels_hash(labels: pl.DataFrame) -> str:
    """A content hash of label rows (order-independent): 16 hex digits.

    Args:
        labels: LabelSchema rows.

    Returns:
        sha256 of the rows sorted by every column, written as CSV.
    """
    cols = [c for c in label_columns() if c in labels.columns]
    text = labels.select(cols).sort(cols, nulls_last=True).write_csv()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def task_folder(source: Path, task: TaskSpec) -> Path:
    """Where a task's labels are under --labels: source/<task name> when that folder exists (an export
    of several tasks), else source itself (one task's labels)."""
    source = Path(source)
    sub = source / task.name
    return sub if sub.is_dir() else source


def task_labels(source: Path, task: TaskSpec, cohort: Cohort) -> tuple[pl.DataFrame, str]:
    """A task's labels read from a label folder (or file) and checked against the task and the cohort.

    Args:
        source: the --labels folder (task_folder picks the task's subfolder of an export).
        task: the task (its kind says which value columns the labels must fill).
        cohort: the cohort the labels are for.

    Returns:
        (rows: subject_id, prediction_time and the kind's value columns, sorted; their labels_hash).

    Raises:
        UserError: unreadable files, or labels that do not fit the task or the cohort (check_labels).
    """
    folder = task_folder(source, task)
    raw = _read_files(folder)
    _check_split_folders(raw, cohort, folder)
    lab = check_labels(raw.drop(_SOURCE, _SPLIT_DIR), task, cohort, folder)
    return lab, labels_hash(lab)


def given_labels(tasks: list[TaskSpec], cohort: Cohort, source: Path) -> dict[str, tuple[pl.DataFrame, str]]:
    """`run --labels DIR`: each task's labels (task_labels) from DIR/<task> of an export, else from DIR
    itself, which then holds one task's labels.

    Returns:
        task name -> (labels, labels_hash).

    Raises:
        UserError: DIR given for several tasks without a subfolder per task, or labels that do not fit.
    """
    shared = [t.name for t in tasks if task_folder(source, t) == Path(source)]
    if len(tasks) > 1 and shared:
        raise UserError(f"--labels {source} holds one task's labels but {len(tasks)} tasks were named "
                        f"(no subfolder {shared[0]}/ in it)", file=source, field="--labels",
                        fix="name one --task, or pass a folder written by `labels --export` (DIR/<task>/<split>/)")
    return {t.name: task_labels(source, t, cohort) for t in tasks}


def _check_split_folders(raw: pl.DataFrame, cohort: Cohort, folder: Path) -> None:
    """A split folder (<dir>/train/...) must hold only subjects of that split in the cohort."""
    placed = raw.filter(pl.col(_SPLIT_DIR).is_not_null())
    if placed.height == 0:
        return
    j = placed.join(cohort.splits, on="subject_id", how="inner").filter(pl.col("split") != pl.col(_SPLIT_DIR))
    if j.height:
        r = j.row(0, named=True)
        raise UserError(f"{j.height} label row(s) sit in a split folder other than their subject's split in "
                        f"the cohort (subject_id {r['subject_id']} is under {r[_SPLIT_DIR]}/ but in the "
                        f"cohort's {r['split']} split)", file=r[_SOURCE], field="split",
                        fix="make the labels from this cohort and its metadata/subject_splits.parquet "
                            "(train, tuning and held_out subjects must be the same), or put them in one flat file")


def check_labels(labels: pl.DataFrame, task: TaskSpec, cohort: Cohort, source: Path) -> pl.DataFrame:
    """Check labels made elsewhere before any model sees them.

    Checks: at least one row; no null subject_id / prediction_time; the task kind's value columns
    (binary: boolean_value; survival: boolean_value + float_value >= 0; multilabel: integer_value
    bitmask over the task's labels; regression: float_value) filled in every row; no duplicated
    (subject_id, prediction_time); every subject in the cohort's splits; every prediction time
    inside its subject's record (between its first and last timed event).

    Args:
        labels: LabelSchema rows (read_label_dir).
        task: the task.
        cohort: the cohort.
        source: the label folder or file (named in errors).

    Returns:
        subject_id, prediction_time and the kind's value columns, sorted by subject_id, prediction_time.

    Raises:
        UserError: the first problem found, with counts, an example row and the fix.
    """
    kind = task.kind_obj
    if labels.height == 0:
        raise UserError("holds no label rows", file=source, field="--labels",
                        fix="pass the labels of a non-empty cohort")
    for col in ("subject_id", "prediction_time", *kind.label_columns):
        n = labels[col].null_count()
        if n:
            why = (f"a {kind.name} task needs {col} in every row" if col in kind.label_columns
                   else f"{col} is required")
            raise UserError(f"{n} of {labels.height} label rows have no {col}: {why}", file=source, field=col,
                            fix=f"write {col} for every row, or pick a task whose kind matches the labels "
                                f"(--task; {task.name} is {kind.name})")
    lab = labels.select("subject_id", "prediction_time", *kind.label_columns)
    _check_values(lab, task, source)
    dup = lab.filter(pl.struct("subject_id", "prediction_time").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise UserError(f"{dup.height} label rows share a (subject_id, prediction_time) with another row "
                        f"(e.g. subject_id {r['subject_id']} at {r['prediction_time']})", file=source,
                        field="prediction_time", fix="keep one label per subject and prediction time")
    unknown = lab.join(cohort.splits, on="subject_id", how="anti")
    if unknown.height:
        ids = unknown["subject_id"].unique().sort().head(5).to_list()
        raise UserError(f"{unknown['subject_id'].n_unique()} subject(s) of the labels are not in the cohort "
                        f"(subject_id {ids}...)", file=source, field="subject_id",
                        fix=f"make the labels from this cohort ({cohort.root}), or pass the cohort they come from")
    bounds = (cohort.scan(("subject_id", "time")).filter(pl.col("time").is_not_null()).group_by("subject_id")
              .agg(pl.col("time").min().alias("__first"), pl.col("time").max().alias("__last"))
              .collect(engine="streaming"))
    j = lab.join(bounds, on="subject_id", how="left")
    out = j.filter(pl.col("__first").is_null() | (pl.col("prediction_time") < pl.col("__first"))
                   | (pl.col("prediction_time") > pl.col("__last")))
    if out.height:
        r = out.row(0, named=True)
        span = "no timed event" if r["__first"] is None else f"a record from {r['__first']} to {r['__last']}"
        raise UserError(f"{out.height} label row(s) have a prediction time outside their subject's record "
                        f"(subject_id {r['subject_id']} at {r['prediction_time']}: {span})", file=source,
                        field="prediction_time",
                        fix="make the labels from this cohort; a prediction time must lie between the subject's "
                            "first and last timed event")
    return lab.sort("subject_id", "prediction_time")


def _check_values(lab: pl.DataFrame, task: TaskSpec, source: Path) -> None:
    """Value ranges a kind's targets need (finite numbers; survival times >= 0; a multilabel bitmask)."""
    if "float_value" in lab.columns:
        bad = lab.filter(~pl.col("float_value").is_finite()
                         | ((pl.col("float_value") < 0) if task.kind_obj.time_to_event else pl.lit(False)))
        if bad.height:
            need = "a finite number of days >= 0" if task.kind_obj.time_to_event else "a finite number"
            raise UserError(f"{bad.height} label rows have a float_value that is not {need} "
                            f"(e.g. {bad['float_value'][0]})", file=source, field="float_value",
                            fix=f"write float_value as {need}")
    if "integer_value" in lab.columns:
        n = len(task.label_names())
        bad = lab.filter((pl.col("integer_value") < 0) | (pl.col("integer_value") >= 1 << n))
        if bad.height:
            raise UserError(f"{bad.height} label rows have an integer_value outside the {n}-label bitmask "
                            f"0..{(1 << n) - 1} (e.g. {bad['integer_value'][0]})", file=source, field="integer_value",
                            fix=f"write integer_value as the bitmask over {task.name}'s labels (bit i = label i)")
