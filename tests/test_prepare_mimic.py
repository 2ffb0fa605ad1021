"""`prepare mimic-iv`: raw MIMIC-IV CSVs -> MEDS through MIMIC_IV_MEDS in its own venv (issue 14, item 1).

Fast tests fake the ETL (monkeypatched venv and subprocess): bad --raw / --out, the split writer,
dataset.json, the atomic move when the ETL fails, and a venv that cannot be built. The slow test
runs each supported ETL version on the shared MIMIC-IV demo 2.2 (skipped where it is absent or
the ETL venv cannot be built, e.g. offline).
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from data_prep import etl, mimic_iv, prepared
from tests.cohort_factory import make_cohort

DEMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mimic-iv-demo-2.2"


def fake_raw(root: Path, tables=mimic_iv.REQUIRED_TABLES, empty=("icu/chartevents",)) -> Path:
    """A folder in the MIMIC-IV layout: one-row tables, plus header-only ones."""
    for t in tables:
        (root / t).parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(root / f"{t}.csv.gz", "wt") as fh:
            fh.write("subject_id,x\n1,2\n")
    for t in empty:
        (root / t).parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(root / f"{t}.csv.gz", "wt") as fh:
            fh.write("subject_id,x\n")
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["prepare", "mimic-iv", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---------------------------------------------------------------------------- bad input
def test_missing_raw_is_a_user_error(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "--raw", tmp_path / "nope", "--out", tmp_path / "out")
    assert rc == 2 and "--raw" in err and "folder not found" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_raw_not_in_mimic_layout_names_the_missing_file(tmp_path, capsys):
    raw = fake_raw(tmp_path / "raw", tables=[t for t in mimic_iv.REQUIRED_TABLES if t != "hosp/patients"])
    rc, _, err = run_cli(capsys, "--raw", raw, "--out", tmp_path / "out")
    assert rc == 2 and "hosp/patients.csv.gz" in err and "fix:" in err


def test_out_not_empty_is_refused_and_untouched(tmp_path, capsys):
    raw = fake_raw(tmp_path / "raw")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _, err = run_cli(capsys, "--raw", raw, "--out", out)
    assert rc == 2 and "--out" in err and "not empty" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unsupported_etl_version_is_refused(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "--raw", fake_raw(tmp_path / "raw"), "--out", tmp_path / "o", "--etl-version", "0.0.7")
    assert rc == 2 and "--etl-version" in err and "0.2.0" in err


def test_empty_tables_are_found(tmp_path):
    assert mimic_iv.empty_tables(fake_raw(tmp_path)) == ["icu/chartevents"]


# ---------------------------------------------------------------------------- splits and metadata
def test_seeded_splits_are_70_15_15_at_subject_level_and_seeded():
    ids = np.arange(1000, 3000, 2)
    a, b, c = (prepared.seeded_splits(ids, s) for s in (7, 7, 8))
    assert a.equals(b) and not a.equals(c)
    assert a["subject_id"].is_unique().all() and sorted(a["subject_id"].to_list()) == ids.tolist()
    counts = dict(a["split"].value_counts().rows())
    assert counts == {"train": 700, "tuning": 150, "held_out": 150}


def _cohort(root: Path, splits: dict[int, str] | None) -> Path:
    make_cohort(root, [(s, "2020-01-01 10:00", "X", None) for s in range(1, 41)], splits=splits)
    return root


def test_etl_splits_are_kept(tmp_path):
    theirs = {s: ("train" if s <= 30 else "tuning" if s <= 35 else "held_out") for s in range(1, 41)}
    root = _cohort(tmp_path / "c", theirs)
    kept, counts = prepared.write_splits(root, seed=0)
    assert kept and counts == {"train": 30, "tuning": 5, "held_out": 5}
    got = dict(pl.read_parquet(root / "metadata" / "subject_splits.parquet").iter_rows())
    assert got == theirs


@pytest.mark.parametrize("bad", ["missing", "no_held_out", "other_name"])
def test_unusable_etl_splits_are_replaced_by_seeded_ones(tmp_path, bad):
    splits = {s: "train" for s in range(1, 41)} if bad != "other_name" else {s: "test" for s in range(1, 41)}
    root = _cohort(tmp_path / "c", splits)
    if bad == "missing":
        (root / "metadata" / "subject_splits.parquet").unlink()
    kept, counts = prepared.write_splits(root, seed=3)
    assert not kept and counts == {"train": 28, "tuning": 6, "held_out": 6}
    got = pl.read_parquet(root / "metadata" / "subject_splits.parquet")
    assert got.equals(prepared.seeded_splits(np.arange(1, 41), 3))


def test_dataset_json_names_the_etl_and_keeps_the_pipeline(tmp_path):
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "dataset.json").write_text(json.dumps(
        {"dataset_name": "MIMIC-IV", "dataset_version": "3.1:0.2.0", "etl_name": "MEDS_transforms",
         "etl_version": "0.7.0", "meds_version": "0.4.1"}))
    meta = prepared.stamp_dataset_json(tmp_path, mimic_iv.DATASET_NAME, mimic_iv.ETL_NAME, "0.2.0")
    assert json.loads((tmp_path / "metadata" / "dataset.json").read_text()) == meta
    assert (meta["dataset_name"], meta["etl_name"], meta["etl_version"]) == ("MIMIC-IV", "MIMIC_IV_MEDS", "0.2.0")
    assert (meta["pipeline_name"], meta["pipeline_version"], meta["dataset_version"]) == (
        "MEDS_transforms", "0.7.0", "3.1:0.2.0")


# ---------------------------------------------------------------------------- the ETL, faked
@pytest.fixture
def fake_etl(tmp_path, monkeypatch):
    """Replace the venv build and the ETL run; the returned dict sets what the fake ETL does."""
    monkeypatch.setenv("MEHR_BENCH_ETL_CACHE", str(tmp_path / "etlcache"))
    monkeypatch.setattr(mimic_iv, "ensure_venv", lambda package, version, log=print: tmp_path / "venv")
    behaviour = {"fail": False, "calls": []}

    def run(venv, argv, log_file, *, what, fix):
        behaviour["calls"].append(argv)
        out = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")) if argv[0] != "python"
                   else argv[4])
        # the fake ETL writes a MEDS dataset (the ETL's splits: 30/5/5) plus intermediate stage folders
        _cohort(out, {s: ("train" if s <= 30 else "tuning" if s <= 35 else "held_out") for s in range(1, 41)})
        (out / "shard_events").mkdir()
        (out / "metadata" / "dataset.json").write_text('{"etl_name": "MEDS_transforms", "etl_version": "0.7.0"}')
        if behaviour["fail"]:
            log_file.write_text("Traceback ...\nValueError: boom in stage merge\n")
            raise UserError("MIMIC_IV_MEDS failed (exit 1)", file=log_file, fix=fix)

    monkeypatch.setattr(mimic_iv, "run_in_venv", run)
    return behaviour


def test_prepare_with_a_fake_etl_writes_a_valid_cohort(tmp_path, capsys, fake_etl):
    raw, out = fake_raw(tmp_path / "raw"), tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--raw", raw, "--out", out)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["data", "metadata"]  # no stage folders
    assert "train 30" in stdout and "the ETL's" in stdout and "integrity check passed" in stdout
    assert json.loads((out / "metadata" / "dataset.json").read_text())["etl_version"] == mimic_iv.DEFAULT_VERSION
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp folder gone
    assert main(["validate", "--data", str(out)]) == 0


def test_0_1_x_runs_the_driver_without_the_empty_tables(tmp_path, capsys, fake_etl):
    rc, _, err = run_cli(capsys, "--raw", fake_raw(tmp_path / "raw"), "--out", tmp_path / "o", "--etl-version", "0.1.3")
    assert rc == 0, err
    argv = fake_etl["calls"][0]
    assert argv[1] == str(mimic_iv.DRIVER_01X) and argv[-1] == "icu/chartevents"


def test_failing_etl_leaves_nothing_half_written(tmp_path, capsys, fake_etl):
    fake_etl["fail"] = True
    raw, out = fake_raw(tmp_path / "raw"), tmp_path / "out"
    rc, _, err = run_cli(capsys, "--raw", raw, "--out", out)
    assert rc == 2 and "MIMIC_IV_MEDS failed" in err and "fix:" in err and "Traceback" not in err.split("\n")[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_venv_that_cannot_be_built_says_how_to_build_it_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_ETL_CACHE", str(tmp_path))

    def no_network(argv, **kw):
        if "pip" in argv:
            return subprocess.CompletedProcess(argv, 1, "", "ERROR: Could not find a version that satisfies "
                                                            "the requirement mimic-iv-meds==0.2.0\n")
        Path(argv[-1]).mkdir(parents=True)  # `python -m venv DIR`
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(etl.subprocess, "run", no_network)
    with pytest.raises(UserError) as e:
        etl.ensure_venv("mimic-iv-meds", "0.2.0", log=lambda s: None)
    text = e.value.render()
    assert "Could not find a version" in text and "by hand" in text and "pip install mimic-iv-meds==0.2.0" in text
    assert not (tmp_path / "mimic-iv-meds-0.2.0").exists()  # no half-built venv left to be trusted


# ---------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.parametrize("version", mimic_iv.SUPPORTED_VERSIONS)
def test_prepare_the_mimic_iv_demo(tmp_path, capsys, version):
    if not DEMO.is_dir():
        pytest.skip(f"the raw MIMIC-IV demo is not at {DEMO} (a user's clone has no shared/ folder)")
    try:
        etl.ensure_venv(mimic_iv.PACKAGE, version, log=lambda s: None)
    except UserError as e:
        pytest.skip(f"the MIMIC_IV_MEDS {version} venv cannot be built here (offline?): {e.message[:200]}")
    from meds import DataSchema, SubjectSplitSchema

    out = tmp_path / "mimic"
    rc, stdout, err = run_cli(capsys, "--raw", DEMO, "--out", out, "--etl-version", version)
    assert rc == 0, err
    shards = sorted((out / "data").rglob("*.parquet"))
    for f in shards:
        DataSchema.validate(pq.read_table(f))
    splits = pq.read_table(out / "metadata" / "subject_splits.parquet")
    SubjectSplitSchema.validate(splits)
    subjects = pl.scan_parquet(shards).select("subject_id").unique().collect()["subject_id"]
    assert len(subjects) == 100 and splits.num_rows == 100
    assert set(splits.column("split").to_pylist()) == {"train", "tuning", "held_out"}
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    assert (meta["dataset_name"], meta["etl_name"], meta["etl_version"]) == ("MIMIC-IV", "MIMIC_IV_MEDS", version)
    codes = pl.scan_parquet(shards).select("code").unique().collect()["code"]
    assert codes.str.starts_with("LAB//").any() and (codes == "MEDS_DEATH").any()
    assert main(["validate", "--data", str(out)]) == 0
