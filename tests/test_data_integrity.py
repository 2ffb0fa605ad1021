"""Issue 12, data integrity: `run` applies validate's integrity checks, null-time rows are static
only when they truly are, a missing required column is never read as nulls, bad files give clean
errors, sidecar paths stay inside the cohort. Each reproduction of the issue is a test here.

The CLI runs in-process (benchmark.cli.main) so each case costs milliseconds, not an interpreter start;
main() re-raises anything but UserError, so "no traceback" is "main returned 2".
"""

from __future__ import annotations

import json
from datetime import datetime
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.cli import main
from benchmark.data.cohort import Cohort
from benchmark.data.integrity import integrity_findings, require_integrity
from benchmark.data.shard_checks import nonstatic_null_codes
from benchmark.data.validate import validate_cohort
from benchmark.errors import UserError
from tests.cohort_factory import make_cohort

TASK = "oncology/mortality_1y"
EVENTS = [(1, None, "GENDER/F"), (1, "1950-01-01", "MEDS_BIRTH"), (1, "2019-12-01", "ICD10CM/C34.90"),
          (1, "2020-01-01", "RXNORM/2555"), (1, "2020-02-01", "LOINC/2160-0", 1.0),
          (2, None, "GENDER/M"), (2, "1960-01-01", "MEDS_BIRTH"), (2, "2020-01-01", "RXNORM/2555"),
          (2, "2020-03-01", "MEDS_DEATH")]
SPLITS = {1: "train", 2: "held_out"}


def copy_cohort(src: Cohort, dst: Path) -> Path:
    """A writable copy of a cohort folder (without its fingerprint stamp)."""
    shutil.copytree(src.root, dst)
    (dst / ".fingerprint").unlink(missing_ok=True)
    return dst


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit status, stdout + stderr)."""
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


def assert_clean_error(rc: int, out: str, *needles: str) -> None:
    assert rc == 2, out
    assert "Traceback" not in out and "fix:" in out, out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"


def run_args(data: Path, results: Path, model: str = "logistic_regression") -> tuple[str, ...]:
    return ("run", "--model", model, "--task", TASK, "--budget", "smoke", "--data", str(data),
            "--results", str(results))


# ---------------------------------------------------------------------------- item 1: splits
def test_run_refuses_train_subjects_copied_into_held_out(small_cohort, tmp_path, cache, capsys):
    """Reproduction: 200 train subjects also listed in held_out. Before: run reported ok with an inflated
    AUROC (probe_ct 0.705 on n_test 128 vs 0.540 on 63). Now: refused before any label or cell."""
    d = copy_cohort(small_cohort, tmp_path / "c")
    sp = pl.read_parquet(d / "metadata/subject_splits.parquet")
    extra = sp.filter(pl.col("split") == "train").head(200).with_columns(pl.lit("held_out").alias("split"))
    pl.concat([sp, extra]).write_parquet(d / "metadata/subject_splits.parquet")
    rc, out = cli(capsys, *run_args(d, tmp_path / "res"))
    assert_clean_error(rc, out, "subject_splits.parquet", "'split'", "200 subjects are in more than one split")
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("*.json"))
    assert not (cache / "labels").exists()  # refused before label extraction
    rc, out = cli(capsys, "validate", "--data", str(d))
    assert_clean_error(rc, out, "200 subjects are in more than one split")


def test_subject_listed_twice_in_one_split_is_a_clear_error(tmp_path, cache, capsys):
    """Reproduction: a subject listed twice in one split crashed later with an index error."""
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    pl.DataFrame({"subject_id": [1, 1, 2], "split": ["train", "train", "held_out"]},
                 schema={"subject_id": pl.Int64, "split": pl.String}).write_parquet(root / "metadata/subject_splits.parquet")
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "subject_splits.parquet", "listed more than once in the same split", "deduplicate")
    with pytest.raises(UserError, match="listed more than once"):
        require_integrity(Cohort(root))


@pytest.mark.parametrize("missing", ["held_out", "train"])
def test_missing_train_or_held_out_split(tmp_path, cache, capsys, missing):
    keep = "train" if missing == "held_out" else "held_out"
    root = make_cohort(tmp_path / "c", EVENTS, {1: keep, 2: keep})
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "subject_splits.parquet", f"no subject is in the '{missing}' split")
    rc, out = cli(capsys, *run_args(root, tmp_path / "res"))
    assert_clean_error(rc, out, f"no subject is in the '{missing}' split")


def test_subjects_without_split_refused(tmp_path, cache):
    root = make_cohort(tmp_path / "c", EVENTS + [(3, "2020-01-01", "RXNORM/2555")], SPLITS)
    with pytest.raises(UserError, match="1 subjects in data/ have no split"):
        require_integrity(Cohort(root))


def test_passed_check_is_cached_by_fingerprint(tmp_path, cache, monkeypatch):
    """A second run on an unchanged cohort does not re-scan; a changed cohort is checked again."""
    import benchmark.data.integrity as integ
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    require_integrity(Cohort(root))
    calls = []
    real = integ.integrity_findings
    monkeypatch.setattr(integ, "integrity_findings", lambda *a, **k: calls.append(1) or real(*a, **k))
    require_integrity(Cohort(root))
    assert calls == []
    pl.DataFrame({"subject_id": [1, 2, 2], "split": ["train", "held_out", "held_out"]},
                 schema={"subject_id": pl.Int64, "split": pl.String}).write_parquet(root / "metadata/subject_splits.parquet")
    with pytest.raises(UserError, match="listed more than once"):
        require_integrity(Cohort(root))
    assert calls == [1]


# ---------------------------------------------------------------------------- item 2: null-time rows
def plant_null_time_death(root: Path) -> int:
    """Copy each MEDS_DEATH row with time = null (the issue's planted fault). Returns rows added."""
    added = 0
    for f in sorted((root / "data").rglob("*.parquet")):
        df = pl.read_parquet(f)
        dead = df.filter(pl.col("code") == "MEDS_DEATH").with_columns(pl.lit(None, pl.Datetime("us")).alias("time"))
        added += dead.height
        pl.concat([df, dead]).sort("subject_id", "time", nulls_last=False).write_parquet(f)
    return added


def test_null_time_death_does_not_reach_models(small_cohort, tmp_path, cache, capsys):
    """Reproduction: each MEDS_DEATH row copied with a null time. Before: validate said valid with 0
    warnings and the death count reached every sample (CatBoost mortality AUROC 0.564 -> 0.738 on
    1500 subjects, count:MEDS_DEATH its top SHAP feature; 0.644 -> 0.926 on this 600-subject cohort).
    Now: validate warns with the code and count, run says so once, and the held-out AUROC equals the
    clean cohort's."""
    d = copy_cohort(small_cohort, tmp_path / "planted")
    n = plant_null_time_death(d)
    assert n > 50
    rc, out = cli(capsys, "validate", "--data", str(d))
    assert rc == 0, out
    assert f"{n} rows with a null time" in out and f"MEDS_DEATH: {n} rows" in out, out
    aurocs = {}
    for name, data in (("clean", small_cohort.root), ("planted", d)):
        res = tmp_path / f"res_{name}"
        rc, out = cli(capsys, *run_args(data, res, model="catboost"))
        assert rc == 0, out
        assert out.count("rows with a null time") == (1 if name == "planted" else 0), out
        rec = json.loads((res / "catboost" / TASK / "seed0.json").read_text())
        aurocs[name] = rec["metrics"]["auroc"]["value"]
    assert aurocs["planted"] == pytest.approx(aurocs["clean"], abs=1e-9), aurocs


def test_null_time_rule_static_vs_not(tmp_path, cache):
    """GENDER/* (only ever null-time) stays a static fact; a null-time copy of a timed code is dropped;
    a code only ever null-time but used by a task as its outcome is dropped too."""
    preds = {"death": {"code": "SITE/DEAD"}, "cancer_treatment": {"code": "RXNORM/2555"}}
    ev = EVENTS + [(1, None, "LOINC/2160-0", 2.0), (2, None, "SITE/DEAD")]
    root = make_cohort(tmp_path / "c", ev, SPLITS, predicates=preds)
    co = Cohort(root)
    blocked = co.nonstatic_null_codes
    assert set(blocked) == {"LOINC/2160-0", "SITE/DEAD"}, blocked
    assert "also occurs with a time" in blocked["LOINC/2160-0"]["why"]
    assert "outcome" in blocked["SITE/DEAD"]["why"] and "predicate 'death'" in blocked["SITE/DEAD"]["why"]
    nulls = co.scan().filter(pl.col("time").is_null()).collect()
    assert sorted(nulls["code"].to_list()) == ["GENDER/F", "GENDER/M"]
    # the guard every model input goes through sees the same
    from benchmark.data.leakage import visible_events
    samples = pl.DataFrame({"subject_id": [1, 2], "prediction_time": [datetime(2030, 1, 1)] * 2})
    seen = visible_events(co.scan(), samples).filter(pl.col("time").is_null()).collect()
    assert sorted(seen["code"].to_list()) == ["GENDER/F", "GENDER/M"]
    warn = [f for f in validate_cohort(root) if "null time" in f.message]
    assert len(warn) == 1 and warn[0].level == "warning" and "SITE/DEAD: 1 rows" in warn[0].message


def test_bag_of_events_drops_null_time_death(small_cohort, tmp_path, cache):
    """The featurizer (which streams shards itself) gets no count:MEDS_DEATH from null-time copies."""
    from benchmark.features.bag_of_events import featurize
    from benchmark.labels import extract_labels
    from benchmark.runner import task_data
    from benchmark.task_registry import select_tasks
    d = copy_cohort(small_cohort, tmp_path / "planted")
    plant_null_time_death(d)
    co = Cohort(d)
    task = select_tasks(TASK)[0]
    data = task_data(task, co, 0, extract_labels(task, co).labels)
    bag = featurize(data)
    if "count:MEDS_DEATH" in bag.names:  # only deaths at or before the prediction time may count
        j = bag.names.index("count:MEDS_DEATH")
        assert bag.stacked(("train", "tuning", "held_out"))[:, j].sum() == 0


# ---------------------------------------------------------------------------- item 3: missing columns
@pytest.mark.parametrize("column", ["numeric_value", "code", "time", "subject_id"])
def test_shard_missing_required_column_is_never_read_as_nulls(small_cohort, tmp_path, cache, capsys, column):
    """Reproduction: without numeric_value in one train shard, `labels --task oncology/aki_1y` exited 0
    with event rate 0.039 instead of 0.133; without code, 147 samples instead of 487; validate crashed."""
    d = copy_cohort(small_cohort, tmp_path / "c")
    f = d / "data" / "train" / "0.parquet"
    pl.read_parquet(f).drop(column).write_parquet(f)
    rc, out = cli(capsys, "labels", "--task", "oncology/aki_1y", "--data", str(d))
    assert_clean_error(rc, out, "data/train/0.parquet", f"'{column}'", "required MEDS column is missing")
    assert "samples" not in out
    rc, out = cli(capsys, "validate", "--data", str(d))
    assert_clean_error(rc, out, "data/train/0.parquet", f"'{column}'")


def test_text_value_is_optional(tmp_path, cache):
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    lf = Cohort(root).scan(("subject_id", "time", "code", "numeric_value", "text_value")).collect()
    assert lf["text_value"].null_count() == lf.height
    assert not [f for f in validate_cohort(root) if f.level == "error"]


# ---------------------------------------------------------------------------- item 4: clean errors
def _two_shards(tmp_path: Path) -> Path:
    """A valid cohort with data/train/0.parquet (subject 1) and data/held_out/0.parquet (subject 2)."""
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    df = pl.read_parquet(root / "data/train/0.parquet")
    (root / "data/held_out").mkdir()
    df.filter(pl.col("subject_id") == 2).write_parquet(root / "data/held_out/0.parquet")
    df.filter(pl.col("subject_id") == 1).write_parquet(root / "data/train/0.parquet")
    return root


def test_shards_with_differing_but_compatible_schemas_validate(tmp_path, cache, capsys):
    """One shard in nanoseconds with an extra column and no text_value, another with text_value: no crash."""
    root = _two_shards(tmp_path)
    f = root / "data/held_out/0.parquet"
    pl.read_parquet(f).with_columns(pl.col("time").cast(pl.Datetime("ns")), pl.lit(7).alias("hadm_id")).write_parquet(f)
    g = root / "data/train/0.parquet"
    pl.read_parquet(g).with_columns(pl.lit(None, pl.String).alias("text_value")).write_parquet(g)
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert rc == 0 and "Traceback" not in out, out
    assert "has unit ns" in out and "have no text_value" in out
    require_integrity(Cohort(root))
    assert Cohort(root).scan().collect().height == len(EVENTS)


@pytest.mark.parametrize("column,dtype,needle", [
    ("numeric_value", pl.Int32, "has type int32"),
    ("code", pl.Int64, "MEDS requires string"),
    ("subject_id", pl.String, "MEDS requires int64"),
])
def test_shard_with_wrong_dtype(tmp_path, cache, capsys, column, dtype, needle):
    root = _two_shards(tmp_path)
    f = root / "data/held_out/0.parquet"
    df = pl.read_parquet(f)
    bad = df.with_columns(pl.lit(1).cast(dtype).alias(column)) if column != "subject_id" else \
        df.with_columns(pl.col("subject_id").cast(pl.String))
    bad.write_parquet(f)
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "data/held_out/0.parquet", f"'{column}'", needle)
    rc, out = cli(capsys, *run_args(root, tmp_path / "res"))
    assert_clean_error(rc, out, "data/held_out/0.parquet", f"'{column}'")


@pytest.mark.parametrize("content,needle", [(b"", "empty (zero-byte)"),
                                            (b"subject_id,time,code\n1,,X\n", "not a readable parquet file")])
def test_unreadable_shard(tmp_path, cache, capsys, content, needle):
    root = _two_shards(tmp_path)
    (root / "data/held_out/0.parquet").write_bytes(content)
    for args in (("validate", "--data", str(root)), ("labels", "--task", TASK, "--data", str(root)),
                 run_args(root, tmp_path / "res")):
        rc, out = cli(capsys, *args)
        assert_clean_error(rc, out, "data/held_out/0.parquet", needle)


@pytest.mark.parametrize("content,needle", [(b"", "empty (zero-byte)"), (b"\x89PNG junk", "not a readable parquet")])
def test_unreadable_modality_file(tmp_path, cache, capsys, content, needle):
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    (root / "modalities").mkdir()
    (root / "modalities" / "ct.parquet").write_bytes(content)
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "modalities/ct.parquet", needle)
    with pytest.raises(UserError, match=needle.split(" (")[0]):
        Cohort(root).modality("ct")


def test_split_file_without_split_column(tmp_path, cache, capsys):
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    pl.DataFrame({"subject_id": [1, 2]}).write_parquet(root / "metadata/subject_splits.parquet")
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "subject_splits.parquet", "'split'", "required column is missing")
    rc, out = cli(capsys, *run_args(root, tmp_path / "res"))
    assert_clean_error(rc, out, "subject_splits.parquet", "'split'")
    with pytest.raises(UserError, match="required column is missing"):
        _ = Cohort(root).splits


def test_non_utf8_codes(tmp_path, cache, capsys):
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    f = root / "data/train/0.parquet"
    t = pq.read_table(f)
    codes = [c.encode() for c in t["code"].to_pylist()]
    codes[2] = b"ICD10CM/C34\xff\xfe"  # latin-1 bytes in a UTF-8 column
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])]).astype(np.int32)
    arr = pa.Array.from_buffers(pa.string(), len(codes), [None, pa.py_buffer(offsets.tobytes()),
                                                          pa.py_buffer(b"".join(codes))])
    pq.write_table(t.set_column(t.schema.get_field_index("code"), "code", arr), f)
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "data/train/0.parquet", "'code'", "not valid UTF-8")
    rc, out = cli(capsys, *run_args(root, tmp_path / "res"))
    assert_clean_error(rc, out, "not valid UTF-8")


def test_nan_and_inf_numeric_values_reported_and_read_as_null(tmp_path, cache):
    """Decision: NaN/inf in numeric_value are a warning and read as null (no value), never passed on."""
    ev = EVENTS + [(1, "2020-02-02", "LOINC/2160-0", float("nan")), (1, "2020-02-03", "LOINC/2160-0", float("inf"))]
    root = make_cohort(tmp_path / "c", ev, SPLITS)
    found = [f for f in validate_cohort(root) if f.field == "numeric_value"]
    assert len(found) == 1 and found[0].level == "warning" and "2 values are NaN or infinite" in found[0].message
    v = Cohort(root).scan().collect()["numeric_value"]
    assert v.is_nan().sum() == 0 and v.is_infinite().sum() == 0 and v.drop_nulls().to_list() == [1.0]


def _modality(root: Path, name: str, **cols) -> Path:
    (root / "modalities").mkdir(exist_ok=True)
    n = len(next(iter(cols.values())))
    base = {"subject_id": pa.array([1] * n, pa.int64()),
            "time": pa.array([None] * n, pa.timestamp("us")) if name == "prs" else
            pa.array([datetime(2019, 12, 15)] * n, pa.timestamp("us"))}
    p = root / "modalities" / f"{name}.parquet"
    pq.write_table(pa.table({**base, **cols}), p)
    return p


def test_nan_and_inf_in_embeddings_are_an_error(tmp_path, cache, capsys):
    """Decision: a NaN/inf embedding has no meaningful 'missing' part, so validate and run refuse it."""
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    emb = pa.array([[0.1, 0.2], [float("nan"), 0.0], [float("inf"), 1.0]], pa.list_(pa.float32(), 2))
    _modality(root, "ct", embedding=emb)
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "modalities/ct.parquet", "'embedding'", "2 embeddings contain NaN or infinite")
    rc, out = cli(capsys, *run_args(root, tmp_path / "res"))
    assert_clean_error(rc, out, "2 embeddings contain NaN or infinite")


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 1000])
def test_embedding_check_counts_across_batches_as_one_pass(tmp_path, monkeypatch, batch_rows):
    """The embedding check reads a sidecar in batches (bounded memory at 1M subjects): NaN / inf rows in
    any batch, lengths that differ only between batches, null embeddings and null values, compared
    with the one-pass polars expression the check used before (the oracle)."""
    from benchmark.data import sidecar_checks
    from benchmark.data.findings import Collector
    monkeypatch.setattr(sidecar_checks, "EMBEDDING_BATCH_ROWS", batch_rows)
    rows = [[0.1, 0.2], [0.3, 0.4], None, [0.5, None], [float("nan"), 0.0], [1.0, 2.0], [0.0, float("-inf")]]
    for kind, data in (("fixed", rows), ("ragged", rows[:5] + [[1.0, 2.0, 3.0], [0.0, float("-inf")]])):
        t = pa.list_(pa.float32(), 2) if kind == "fixed" else pa.list_(pa.float32())
        f = tmp_path / f"{kind}.parquet"
        pq.write_table(pa.table({"embedding": pa.array(data, t)}), f)
        c = Collector(tmp_path)
        sidecar_checks._check_embeddings(c, f, t)
        emb = pl.col("embedding").cast(pl.List(pl.Float64))
        oracle = pl.read_parquet(f).select(
            emb.list.len().n_unique().alias("sizes"),
            emb.list.eval(pl.element().is_finite().not_()).list.any().fill_null(False).sum().alias("nonfinite"))
        msgs = [x.message for x in c.findings]
        assert oracle["nonfinite"][0] == 2 and f"2 embeddings contain NaN or infinite values; a model would train on them" in msgs
        assert ("embeddings have different lengths" in msgs) == (kind == "ragged")


# ---------------------------------------------------------------------------- item 8: sidecar paths
@pytest.mark.parametrize("bad", ["/etc/passwd", "../../etc/passwd", "images/../../outside.png"])
def test_sidecar_paths_must_stay_inside_the_cohort(tmp_path, cache, capsys, bad):
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    (root / "images").mkdir()
    (root / "images" / "ok.png").write_bytes(b"png")
    (tmp_path / "outside.png").write_bytes(b"png")
    _modality(root, "cxr", path=pa.array(["images/ok.png", bad]))
    rc, out = cli(capsys, "validate", "--data", str(root))
    assert_clean_error(rc, out, "modalities/cxr.parquet", "'path'", "absolute or lead outside the cohort folder",
                       repr(bad))
    co = Cohort(root)
    assert co.sidecar_file("images/ok.png", "cxr") == (root / "images/ok.png").resolve()
    with pytest.raises(UserError, match="outside the cohort folder"):
        co.sidecar_file(bad, "cxr")


def test_symlink_placed_inside_the_cohort_is_followed(tmp_path, cache):
    """A path VALUE never leaves the cohort; a symlink the cohort's owner put inside the folder (an
    image store kept elsewhere) is followed, as the planted-cohort contract test relies on."""
    root = make_cohort(tmp_path / "c", EVENTS, SPLITS)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "1.png").write_bytes(b"x")
    (root / "images").symlink_to(tmp_path / "store", target_is_directory=True)
    assert Cohort(root).sidecar_file("images/1.png", "cxr").read_bytes() == b"x"
    with pytest.raises(UserError, match="outside the cohort folder"):
        Cohort(root).sidecar_file("images/../../store/1.png", "cxr")


def test_synthetic_cohort_passes_every_integrity_check(small_cohort):
    """The generator's output (what tests and `make run` use) has no integrity error and no null-time warning."""
    findings = integrity_findings(small_cohort.root)
    assert not [f for f in findings if f.level == "error"], [f.render() for f in findings]
    assert nonstatic_null_codes(small_cohort.data_files(), small_cohort.predicates_file) == {}
