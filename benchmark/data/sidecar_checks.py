"""Modality-sidecar checks: readable parquet, required columns, embeddings of one size without
NaN/inf, image paths relative, inside the cohort folder and present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark.data.findings import Collector, read_footer, short_error

EMBEDDING_BATCH_ROWS = 16_384  # rows of a sidecar's embeddings checked at once (bounded memory)


def inside_root(root: Path, rel: str) -> Path | None:
    """`root / rel` if `rel` is a relative path that stays inside root, else None.

    The check is on the path value (what a sidecar row can say): absolute paths, drive letters or
    schemes, backslashes and '..' segments are refused. A symlink that sits inside the cohort
    folder (e.g. `images -> /data/mimic-cxr-jpg`, the usual way to point a cohort at a large image
    store) was put there by the cohort's owner and is followed.
    """
    if not isinstance(rel, str) or pl.select(escaping_paths(pl.lit(rel))).item():
        return None
    return Path(root) / rel


def check_modality(c: Collector, root: Path, f: Path) -> None:
    """One sidecar: readable, subject_id + time + (embedding | path), finite embeddings, confined paths."""
    schema = read_footer(c, f, "modality file")
    if schema is None:
        return
    names = set(schema.names)
    for col in ("subject_id", "time"):
        if col not in names:
            c.error(f, col, "required sidecar column is missing",
                    "a modality table has subject_id, time, and embedding or path")
    if "embedding" not in names and "path" not in names:
        c.error(f, None, "has neither 'embedding' nor 'path'", "add embedding (fixed-size list<float32>) "
                "or path (file relative to the cohort folder)")
    try:
        if "embedding" in names:
            _check_embeddings(c, f, schema.field("embedding").type)
        if "time" in names and f.stem != "prs":
            t = schema.field("time").type
            if not pa.types.is_timestamp(t):
                c.error(f, "time", f"has type {t}", "cast time to timestamp[us]")
            else:
                nulls = pl.scan_parquet(f).select(pl.col("time").null_count()).collect().item()
                if nulls:
                    c.warn(f, "time", f"{nulls} studies have no time; they will be visible at every prediction "
                           "time", "give time-stamped studies their acquisition time (null only for static data "
                           "such as prs)")
        if "path" in names:
            _check_paths(c, root, f)
    except Exception as e:  # noqa: BLE001 - e.g. invalid UTF-8 in a path
        c.error(f, None, f"cannot be read ({short_error(e)})", "rewrite the modality file with pyarrow or polars")


def _check_embeddings(c: Collector, f: Path, t: pa.DataType) -> None:
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        c.error(f, "embedding", f"has type {t}", "store embeddings as fixed-size list<float32>")
        return
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        c.error(f, "embedding", f"has element type {t.value_type}", "store embeddings as fixed-size list<float32>")
        return
    sizes: set[int] = set()
    nonfinite = 0
    # batch by batch with pyarrow kernels, pages decoded as the batches need them (not a whole row
    # group, ~100 MB, at once): a sidecar is one file that grows with the cohort (285 MB of CXR
    # embeddings at 1M subjects); the whole column as polars float64 lists held 3.5 GB, the peak of
    # a cold 1M-subject run
    reader = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
    for batch in reader.iter_batches(batch_size=EMBEDDING_BATCH_ROWS, columns=["embedding"]):
        col = batch.column(0)
        sizes.update(np.unique(pc.list_value_length(col).drop_null().to_numpy()).tolist())
        values = pc.list_flatten(col)
        if not pa.types.is_floating(values.type):
            continue  # integers are finite
        bad = pc.invert(pc.is_finite(values)).fill_null(False).to_numpy(zero_copy_only=False)
        if bad.any():  # embeddings (rows) with at least one NaN / inf value
            nonfinite += np.unique(pc.list_parent_indices(col).to_numpy()[bad]).size
    if not pa.types.is_fixed_size_list(t) and len(sizes) > 1:
        c.error(f, "embedding", "embeddings have different lengths", "use one size per modality")
    if nonfinite:
        c.error(f, "embedding", f"{nonfinite} embeddings contain NaN or infinite values; a model "
                "would train on them", "recompute those embeddings, or drop their rows (the study is then missing)")


def escaping_paths(paths: pl.Expr) -> pl.Expr:
    """True where a path string is absolute, has a '..' segment, a backslash or a scheme/drive
    (vectorized, so a sidecar of 100k images is checked in milliseconds)."""
    return (paths.str.starts_with("/") | paths.str.contains(r"(^|/)\.\.(/|$)") | paths.str.contains("\\", literal=True)
            | paths.str.contains(r"^[^/]*:") | (paths.str.len_chars() == 0))


def _check_paths(c: Collector, root: Path, f: Path) -> None:
    paths = pl.scan_parquet(f).select(pl.col("path").cast(pl.String)).drop_nulls().unique(maintain_order=True)
    flagged = paths.with_columns(escaping_paths(pl.col("path")).alias("bad")).collect()
    outside = flagged.filter(pl.col("bad"))["path"]
    if outside.len():
        c.error(f, "path", f"{outside.len()} paths are absolute or lead outside the cohort "
                f"folder (e.g. {outside[0]!r})", "store each path relative to the cohort folder, inside it "
                "(e.g. images/cxr/123.png); never absolute, never with '..'")
    first = flagged.filter(~pl.col("bad"))["path"].head(200).to_list()
    gone = [p for p in first if not (root / p).exists()]
    if gone:
        c.error(f, "path", f"{len(gone)} of the first {len(first)} files do not exist (e.g. {gone[0]})",
                "paths are relative to the cohort folder; copy the files or fix the paths")


def check_modalities(c: Collector, root: Path) -> None:
    d = root / "modalities"
    if d.is_dir():
        for f in sorted(d.glob("*.parquet")):
            check_modality(c, root, f)
