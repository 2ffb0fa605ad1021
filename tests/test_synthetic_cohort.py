"""Tests of the synthetic multimodal cohort generator (data_prep.synthetic).

Every planted effect is checked against the generator's own ground truth (``_latents.parquet``), so
a change that breaks an oracle (e.g. u leaking into structured data, or vanishing from the CT
embedding) fails here.  Small cohorts (n = 400) keep the whole module well under a minute.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
import json
import re
from pathlib import Path

import meds
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from sklearn.linear_model import RidgeCV

from benchmark.errors import UserError
from data_prep import synthetic

N = 400


def _generate(path: Path, **kw) -> Path:
    kw.setdefault("n_subjects", N)
    return synthetic.generate(path, **kw)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("syn") / "cohort", seed=0, write_latents=True)


@pytest.fixture(scope="module")
def events(cohort) -> pl.DataFrame:
    return pl.read_parquet(sorted((cohort / "data").glob("*/*.parquet")))


@pytest.fixture(scope="module")
def latents(cohort) -> pl.DataFrame:
    return pl.read_parquet(cohort / synthetic.LATENTS_FILE)


def _hashes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


def _emb(t: pl.DataFrame) -> np.ndarray:
    return np.asarray(t["embedding"].to_list(), dtype=np.float64)


def _matches(rule: dict, df: pl.DataFrame) -> pl.Series:
    """Reference matcher for the predicates.yaml rule format (independent of benchmark's own)."""
    code = df["code"]
    if "code" in rule:
        m = code == rule["code"]
    elif "any_of" in rule:
        m = code.is_in(rule["any_of"])
    elif "prefix" in rule:
        prefixes = rule["prefix"] if isinstance(rule["prefix"], list) else [rule["prefix"]]
        m = pl.Series([any(c.startswith(p) for p in prefixes) for c in code])
    else:
        rx = re.compile(rule["regex"])
        m = pl.Series([rx.search(c) is not None for c in code])
    v = df["numeric_value"]
    if "value_min" in rule:
        m = m & (v >= rule["value_min"]).fill_null(False)
    if "value_max" in rule:
        m = m & (v <= rule["value_max"]).fill_null(False)
    return m


# --- determinism -----------------------------------------------------------------------------------

def test_byte_identical_for_same_seed_and_different_for_other_seed(cohort, tmp_path):
    again = _generate(tmp_path / "again", seed=0, write_latents=True)
    first, second = _hashes(cohort), _hashes(again)
    assert len(first) > 10 and first == second
    other = _hashes(_generate(tmp_path / "other", seed=1, write_latents=True))
    for name in ("data/train/0.parquet", "modalities/ct.parquet", "modalities/cxr.parquet", "_latents.parquet"):
        assert other[name] != first[name], name


def test_images_off_changes_nothing_but_images(cohort, tmp_path):
    plain = _generate(tmp_path / "plain", seed=0, images=False)
    a = _hashes(cohort, skip=("images", "modalities/cxr", synthetic.LATENTS_FILE))
    b = _hashes(plain, skip=("modalities/cxr",))
    assert a == b
    with_img = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    no_img = pl.read_parquet(plain / "modalities" / "cxr.parquet")
    assert "path" in with_img.columns and "path" not in no_img.columns
    assert with_img.drop("path").equals(no_img)
    assert not (plain / "images").exists()


def test_small_shards_and_progress(tmp_path):
    calls = []
    root = _generate(tmp_path / "sharded", n_subjects=200, seed=3, shard_size=50, images=False,
                     progress=lambda done, total: calls.append((done, total)))
    files = sorted(str(p.relative_to(root / "data")) for p in (root / "data").glob("*/*.parquet"))
    # 140 train -> 3 shards, 30 tuning -> 1, 30 held_out -> 1
    assert files == ["held_out/0.parquet", "train/0.parquet", "train/1.parquet", "train/2.parquet", "tuning/0.parquet"]
    assert all(pq.read_metadata(root / "data" / f).num_rows > 0 for f in files)
    assert calls[-1] == (200, 200) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    ids = [set(pl.read_parquet(root / "data" / f)["subject_id"].unique()) for f in files]
    assert sum(len(s) for s in ids) == 200 and len(set.union(*ids)) == 200     # each subject in one file


# --- format ------------------------------------------------------------------------------------------

def test_schemas_match_meds(cohort):
    for f in sorted((cohort / "data").glob("*/*.parquet")):
        schema = pq.read_schema(f)
        assert schema.names == ["subject_id", "time", "code", "numeric_value", "text_value"]
        for field in meds.DataSchema.schema():
            assert schema.field(field.name).type == field.type, (f, field.name)
        meds.DataSchema.validate(pq.read_table(f))
    meds.CodeMetadataSchema.validate(pq.read_table(cohort / "metadata" / "codes.parquet"))
    meds.SubjectSplitSchema.validate(pq.read_table(cohort / "metadata" / "subject_splits.parquet"))
    meta = json.loads((cohort / "metadata" / "dataset.json").read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert meta["etl_version"] == synthetic.GENERATOR_VERSION and "created_at" not in meta
    dims = {"cxr": 128, "ct": 64, "wsi": 64, "note": 64, "prs": 32}
    for name, dim in dims.items():
        s = pq.read_schema(cohort / "modalities" / f"{name}.parquet")
        assert s.field("subject_id").type == pa.int64() and s.field("time").type == pa.timestamp("us")
        assert s.field("embedding").type == pa.list_(pa.float32(), dim), name
    cxr = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    assert set(cxr["view"].unique()) <= {"AP", "PA"}
    assert cxr["labels"].list.len().unique().to_list() == [14]
    assert pq.read_schema(cohort / "modalities" / "cxr.parquet").field("labels").type == pa.list_(pa.int8())
    assert set(pl.read_parquet(cohort / "modalities" / "ct.parquet")["series"]) == {"staging", "ctpa", "cardiac"}
    prs = pl.read_parquet(cohort / "modalities" / "prs.parquet")
    assert prs["time"].null_count() == prs.height == N


def test_splits_disjoint_cover_and_match_files(cohort):
    splits = pl.read_parquet(cohort / "metadata" / "subject_splits.parquet")
    assert splits["subject_id"].n_unique() == splits.height == N
    counts = dict(splits.group_by("split").len().iter_rows())
    assert counts == {"train": 280, "tuning": 60, "held_out": 60}
    for split in ("train", "tuning", "held_out"):
        in_files = set(pl.read_parquet(cohort / "data" / split / "0.parquet")["subject_id"])
        assert in_files == set(splits.filter(pl.col("split") == split)["subject_id"])


def test_sorted_by_subject_time_code(cohort):
    for f in sorted((cohort / "data").glob("*/*.parquet")):
        df = pl.read_parquet(f)
        resorted = df.sort(["subject_id", "time", "code"], nulls_last=False, maintain_order=True)
        assert df.select("subject_id", "time", "code").equals(resorted.select("subject_id", "time", "code")), f
        # static rows (time null) come first within each subject
        first_timed = df.with_row_index().filter(pl.col("time").is_not_null()).group_by("subject_id").agg(
            pl.col("index").min())
        last_static = df.with_row_index().filter(pl.col("time").is_null()).group_by("subject_id").agg(
            pl.col("index").max().alias("s"))
        assert first_timed.join(last_static, on="subject_id").filter(pl.col("s") > pl.col("index")).height == 0


def test_codes_metadata_lists_exactly_the_codes_used(cohort, events):
    codes = pl.read_parquet(cohort / "metadata" / "codes.parquet")
    assert codes["code"].to_list() == sorted(events["code"].unique().to_list())
    assert codes["description"].null_count() == 0
    assert codes.filter(pl.col("code") == "ICD10CM/C34.90")["parent_codes"].to_list() == [["ICD10CM/C34"]]


def test_timeline_is_plausible(events):
    birth = events.filter(pl.col("code") == "MEDS_BIRTH").select("subject_id", pl.col("time").alias("birth"))
    death = events.filter(pl.col("code") == "MEDS_DEATH").select("subject_id", pl.col("time").alias("death"))
    assert birth.height == N and death["subject_id"].n_unique() == death.height
    timed = events.filter(pl.col("time").is_not_null()).join(birth, on="subject_id")
    timed = timed.join(death, on="subject_id", how="left")
    assert timed.filter(pl.col("time") < pl.col("birth")).height == 0
    assert timed.filter(pl.col("time") > pl.col("death")).height == 0
    assert timed["time"].max() <= datetime(2025, 12, 31, 23, 59)                  # data cut-off
    static = events.filter(pl.col("time").is_null())["code"].str.extract(r"^([A-Z]+)/").unique().to_list()
    assert sorted(static) == ["ETHNICITY", "GENDER", "RACE"]


# --- predicates --------------------------------------------------------------------------------------

def test_every_predicate_matches_an_event(cohort, events):
    assert (cohort / "predicates.yaml").read_bytes() == synthetic.PREDICATES_FILE.read_bytes()
    preds = yaml.safe_load(synthetic.PREDICATES_FILE.read_text())
    required = {"death", "birth", "cancer_diagnosis", "cancer_treatment", "metastasis", "progression", "creatinine",
                "anc", "temperature", "hemoglobin", "platelets", "hba1c", "glucose", "bmi", "lactate", "wbc",
                "heart_rate", "map", "resp_rate", "spo2", "gcs", "transfusion", "icu_admission", "icu_discharge",
                "hospital_admission", "hospital_discharge", "cxr_study", "pe_diagnosis", "ctpa", "cardiac_ct",
                "mace_event", "t2d", "leak_outcome"} | {f"cxr_{f.lower()}" for f in synthetic.V.CXR_FINDINGS}
    assert required <= set(preds)
    for name, rule in preds.items():
        assert set(rule) - {"value_min", "value_max", "unit"} in ({"code"}, {"any_of"}, {"prefix"}, {"regex"}), name
        assert _matches(rule, events).sum() > 0, f"predicate {name} matches no event"


def test_predicates_do_not_overmatch(events):
    preds = yaml.safe_load(synthetic.PREDICATES_FILE.read_text())
    dx = set(events.filter(_matches(preds["cancer_diagnosis"], events))["code"])
    assert dx and not any(c.startswith(("ICD10CM/C77", "ICD10CM/C78", "ICD10CM/C79")) for c in dx)
    chemo = set(events.filter(_matches(preds["cancer_treatment"], events))["code"])
    assert chemo <= set(synthetic.V.CHEMO_DRUGS)
    assert "RXNORM/6809" not in chemo


# --- planted oracles ---------------------------------------------------------------------------------

def _ridge_r2(x: np.ndarray, y: np.ndarray) -> float:
    """Out-of-fold R^2 of a 5-fold ridge (as the README's R^2 column; a 50/50 split left ~65 training
    rows for 64 dimensions at n = 400 and swung by +-0.1 between cohorts)."""
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 3, 12)), x, y, cv=KFold(5, shuffle=True, random_state=0))
    return float(r2_score(y, pred))


def test_ct_and_wsi_embeddings_recover_tumour_latent(cohort, latents):
    ct = pl.read_parquet(cohort / "modalities" / "ct.parquet").filter(pl.col("series") == "staging")
    ct = ct.join(latents, on="subject_id")
    assert ct.height >= 80
    assert _ridge_r2(_emb(ct), ct["u_onc"].to_numpy()) > 0.5
    wsi = pl.read_parquet(cohort / "modalities" / "wsi.parquet").join(latents, on="subject_id")
    assert _ridge_r2(_emb(wsi), wsi["u_onc"].to_numpy()) > 0.5
    # negative control: the PRS vector must not carry the tumour latent
    prs = pl.read_parquet(cohort / "modalities" / "prs.parquet").join(latents, on="subject_id")
    assert _ridge_r2(_emb(prs), prs["u_onc"].to_numpy()) < 0.1
    assert _ridge_r2(_emb(prs), prs["g"].to_numpy()) > 0.5


def test_tumour_latent_absent_from_structured_baseline(events, latents):
    # u_onc must be invisible in structured data: baseline labs at treatment start do not correlate
    onc = latents.filter(pl.col("treatment_start").is_not_null())
    labs = events.filter(pl.col("code").is_in(["LOINC/2160-0", "LOINC/718-7", "LOINC/751-8"])).join(
        onc.select("subject_id", "treatment_start", "u_onc", "z"), on="subject_id").filter(
        pl.col("time") <= pl.col("treatment_start")).group_by("subject_id").agg(
        pl.col("numeric_value").mean(), pl.col("u_onc").first(), pl.col("z").first())
    assert labs.height > 50
    r_u = np.corrcoef(labs["numeric_value"], labs["u_onc"])[0, 1]
    assert abs(r_u) < 0.25


def test_leak_probe_coincides_with_leak_outcome(events, latents):
    probe = events.filter(pl.col("code") == "SYNTH/LEAK_PROBE").select("subject_id", pl.col("time").alias("probe"))
    outcome = events.filter(pl.col("code") == "SYNTH/LEAK_OUTCOME").select("subject_id", pl.col("time").alias("out"))
    assert probe.height > 10 and set(probe["subject_id"]) == set(outcome["subject_id"])
    assert probe["subject_id"].n_unique() == probe.height
    preds = yaml.safe_load(synthetic.PREDICATES_FILE.read_text())
    start = events.filter(_matches(preds["cancer_treatment"], events)).group_by("subject_id").agg(
        pl.col("time").min().alias("start"))
    j = probe.join(outcome, on="subject_id").join(start, on="subject_id")
    assert j.height == probe.height
    assert ((j["probe"] - j["start"]) == timedelta(hours=1)).all()           # after the prediction time
    assert ((j["out"] - j["start"]) <= timedelta(days=180)).all() and (j["out"] > j["probe"]).all()
    treated = latents.join(start, on="subject_id")
    frac = probe.height / treated.height
    assert 0.15 < frac < 0.45                                                   # coin with p = 0.3
    coin = treated.join(probe, on="subject_id", how="left")["probe"].is_not_null()
    assert abs(np.corrcoef(coin.to_numpy(), treated["u_onc"].to_numpy())[0, 1]) < 0.2


def test_cxr_events_labels_and_images(cohort, events):
    cxr = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    studies = events.filter(pl.col("code") == "IMAGING/CXR")
    assert studies.height == cxr.height > 50
    finding = events.filter(pl.col("code").str.starts_with("CXR_FINDING/"))
    notes = events.filter(pl.col("code") == "NOTE/RADIOLOGY")
    assert notes["text_value"].null_count() == 0 and notes.height == cxr.height
    # findings and report are signed 2 h after the study (after the prediction time)
    names = synthetic.V.CXR_FINDINGS
    labels = np.asarray(cxr["labels"].to_list())
    row, j = np.nonzero(labels)
    expected = pl.DataFrame({"subject_id": cxr["subject_id"].to_numpy()[row],
                             "time": (cxr["time"] + timedelta(hours=2)).to_numpy()[row],
                             "code": [f"CXR_FINDING/{names[k]}" for k in j]})
    got = finding.select("subject_id", "time", "code").sort(["subject_id", "time", "code"])
    assert got.equals(expected.sort(["subject_id", "time", "code"]))
    for path in cxr["path"].head(20):
        img = Image.open(cohort / path)
        assert img.size == (64, 64) and img.mode == "L"
    assert len(list((cohort / "images" / "cxr").glob("*.png"))) == cxr.height


def test_cxr_embedding_encodes_findings(cohort):
    cxr = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    labels = np.asarray(cxr["labels"].to_list())
    x = _emb(cxr)
    # a positive finding shifts the embedding along its fixed direction: class means differ clearly
    j = synthetic.V.CXR_FINDINGS.index("No_Finding")
    diff = x[labels[:, j] == 1].mean(0) - x[labels[:, j] == 0].mean(0)
    assert np.linalg.norm(diff) > 2.0


def test_outcome_rates_in_planned_ranges(events, latents):
    # coarse bands at n = 400 (deterministic for seed 0); the README lists rates measured at n = 5000
    start = latents.filter(pl.col("treatment_start").is_not_null()).select("subject_id", "treatment_start")
    death = events.filter(pl.col("code") == "MEDS_DEATH").select("subject_id", pl.col("time").alias("death"))
    d = start.join(death, on="subject_id", how="left").with_columns(
        y=((pl.col("death") - pl.col("treatment_start")) <= pl.duration(days=365)).fill_null(False))
    assert 0.25 < start.height / N < 0.45
    assert 0.1 < d["y"].mean() < 0.45
    icu = events.filter(pl.col("code") == "ICU_ADMISSION")["subject_id"].n_unique() / N
    assert 0.15 < icu < 0.40


def test_refuses_non_empty_out_dir(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError) as err:
        synthetic.generate(out, n_subjects=50)
    assert err.value.field == "--out" and err.value.fix == "choose a new folder or delete it"
    assert err.value.file == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]          # no temp folder left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synthetic.generate(empty, n_subjects=50, images=False) == empty
    assert (empty / "metadata" / "codes.parquet").exists()


def test_rejects_tiny_cohort(tmp_path):
    with pytest.raises(UserError):
        synthetic.generate(tmp_path / "x", n_subjects=5)
    assert not (tmp_path / "x").exists()
