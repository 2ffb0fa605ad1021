"""Dataset profiles wired into the cohort reader, labels, features, tokenizer and CLI (issue 14).

Synthetic: the profile reproduces the behaviour before profiles exactly (demographics parquet bytes,
bag-of-events truncation, MEHRT hierarchy tokens). Real data (the shared fixture
tests/conftest_mimic.py, MEDS of the MIMIC-IV demo from MIMIC_IV_MEDS 0.2.0 and 0.1.3), with no
user-written map: the mimic_iv profile is recognised, demographics are F/M (oracle: the raw
patients.csv.gz, 43 F / 57 M) and the raw admissions' race, `validate` is clean, every task whose
predicates MIMIC maps gets labels and the others are skipped naming what is missing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import polars as pl
import pytest

from benchmark.cli import main
from benchmark.data.cohort import Cohort
from benchmark.data.profiles import DEFAULT_TRUNCATE, Demographics, Source, available_profiles
from benchmark.errors import UserError
from benchmark.features.bag_of_events import normalize_code
from encoders.mehrt.tokenizer import Tokenizer, _code_tokens
from tests.conftest_mimic import RAW_DEMO

VERSIONS = {"0.2.0": "mimic_meds_020", "0.1.3": "mimic_meds_013"}
# tasks whose predicates MIMIC-IV cannot express, and the names they miss
NOT_ON_MIMIC = {"leak/probe": ["leak_outcome"], "oncology/progression_free_survival_1y": ["progression"],
                "survival/mace": ["cardiac_ct", "cardiac_death"], "survival/mace_mi_stroke_first_ct": ["cardiac_ct"],
                "survival/pe_mortality": ["ctpa"]}


def _old_demographics(cohort: Cohort) -> pl.DataFrame:
    """Cohort.demographics() as it was before profiles (the oracle for the synthetic profile)."""
    static = (cohort.scan(("subject_id", "time", "code"))
              .filter(pl.col("code").str.starts_with("GENDER/") | pl.col("code").str.starts_with("RACE/")
                      | pl.col("code").str.starts_with("ETHNICITY/") | (pl.col("code") == "MEDS_BIRTH")).collect())

    def first_of(prefix, name):
        return (static.filter(pl.col("code").str.starts_with(prefix))
                .group_by("subject_id").agg(pl.col("code").first().str.replace(prefix, "").alias(name)))
    birth = static.filter(pl.col("code") == "MEDS_BIRTH").group_by("subject_id").agg(
        pl.col("time").min().alias("birth_time"))
    out = cohort.splits.select("subject_id")
    for prefix, name in (("GENDER/", "sex"), ("RACE/", "race"), ("ETHNICITY/", "ethnicity")):
        out = out.join(first_of(prefix, name), on="subject_id", how="left")
    return out.join(birth, on="subject_id", how="left").sort("subject_id")


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------- synthetic: unchanged
def test_synthetic_profile_gives_byte_identical_demographics(small_cohort):
    assert small_cohort.profile is not None and small_cohort.profile.name == "synthetic"
    new, old = small_cohort.demographics(), _old_demographics(small_cohort)
    assert new["sex"].drop_nulls().len() == small_cohort.splits.height
    assert _parquet_bytes(new) == _parquet_bytes(old)


def test_synthetic_profile_keeps_bag_of_events_and_tokenizer_codes(small_cohort):
    codes = small_cohort.scan(("code",)).select("code").unique().collect()
    trunc = small_cohort.code_truncation
    assert trunc == DEFAULT_TRUNCATE
    old = pl.col("code").str.extract(r"^((?:ICD10CM|ICD10PCS)/[^.]{1,3})", 1)
    before = codes.select(pl.when(old.is_not_null()).then(old).otherwise(pl.col("code")))
    assert codes.select(normalize_code(pl.col("code"), trunc)).equals(before)
    def tokens(h):
        return codes.select(*(t.alias(f"t{i}") for i, t in enumerate(_code_tokens(pl.col("code"), h))))
    assert tokens(trunc).equals(tokens(None)) and tokens(trunc)["t1"].drop_nulls().len() > 0


def test_mimic_hierarchy_truncates_and_splits_icd_codes(tmp_path):
    prof = Cohort(tmp_path, dataset="mimic_iv")
    trunc = prof.code_truncation
    df = pl.DataFrame({"code": ["DIAGNOSIS//ICD//10//C3490", "DIAGNOSIS//ICD//9//4280", "PROCEDURE//ICD//9//3893",
                                "LAB//50912//mg/dL", "ICD10CM/C34.90"]})
    assert df.select(normalize_code(pl.col("code"), trunc))["code"].to_list() == [
        "DIAGNOSIS//ICD//10//C34", "DIAGNOSIS//ICD//9//428", "PROCEDURE//ICD//9//38", "LAB//50912//mg/dL",
        "ICD10CM/C34.90"]
    toks = df.select(*(t.alias(f"t{i}") for i, t in enumerate(_code_tokens(pl.col("code"), trunc)))).rows()
    assert toks[0] == ("DIAGNOSIS//ICD//10//C34", "DIAGNOSIS//ICD//10//90", None)
    assert toks[2] == ("PROCEDURE//ICD//9//38", "PROCEDURE//ICD//9//93", None)
    assert toks[3] == ("LAB//50912//mg/dL", None, None)
    tok = Tokenizer(1, hierarchy=trunc)
    tok.save(tmp_path / "tok.json")
    assert Tokenizer.load(tmp_path / "tok.json").hierarchy == trunc
    assert prof.note_codes == ("NOTE//RADIOLOGY", "NOTE//DISCHARGE")


# ---------------------------------------------------------------------------- no map, bad --dataset
def test_a_cohort_without_any_map_names_the_fix(small_cohort, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(small_cohort.root, root, ignore=shutil.ignore_patterns("predicates.yaml", "dataset.json",
                                                                            "modalities", ".fingerprint"))
    with pytest.raises(UserError) as e:
        Cohort(root).predicate_map()
    text = e.value.render()
    assert "--dataset" in text and all(n in text for n in available_profiles())
    assert Cohort(root, dataset="synthetic").predicate_map()  # the profile's map: the fix works
    with pytest.raises(UserError, match="no dataset profile 'nope'"):
        Cohort(root, dataset="nope")


def test_datasets_command_lists_the_profiles(capsys):
    assert main(["datasets", "--json"]) == 0
    names = {r["name"] for r in __import__("json").loads(capsys.readouterr().out)}
    assert {"synthetic", "mimic_iv"} <= names


# ---------------------------------------------------------------------------- prepare mimic-cxr via the CLI
def test_prepare_mimic_cxr_and_note_through_the_cli(tmp_path, capsys):
    from tests.mimic_fixtures import make_mimic_cohort, write_mimic_cxr, write_mimic_note

    cohort = make_mimic_cohort(tmp_path / "cohort")
    raw = write_mimic_cxr(tmp_path / "cxr")
    assert main(["prepare", "mimic-cxr", "--raw", str(raw), "--data", str(cohort)]) == 0
    assert "linked" in capsys.readouterr().out and (cohort / "modalities" / "cxr.parquet").exists()
    assert main(["prepare", "mimic-cxr", "--raw", str(tmp_path / "nothing"), "--data", str(cohort)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["prepare", "mimic-note", "--raw", str(write_mimic_note(tmp_path / "note")),
                 "--data", str(cohort)]) == 0
    assert "linked notes" in capsys.readouterr().out


# ---------------------------------------------------------------------------- real data, both ETL versions
@pytest.fixture(params=sorted(VERSIONS))
def mimic(request) -> Cohort:
    return Cohort(request.getfixturevalue(VERSIONS[request.param]))


def _raw(name: str) -> pl.DataFrame:
    return pl.read_csv(RAW_DEMO / "hosp" / name, infer_schema_length=0)


def test_mimic_profile_is_recognised_with_its_map(mimic):
    assert mimic.profile.name == "mimic_iv"
    assert mimic.predicates_file == mimic.profile.folder / "predicates.yaml"
    assert len(mimic.predicate_map()) > 30


def test_mimic_demographics_are_the_raw_sex_and_race(mimic):
    if not RAW_DEMO.is_dir():
        pytest.skip(f"the raw MIMIC-IV demo (the oracle) is not at {RAW_DEMO}")
    demo = mimic.demographics()
    raw_sex = dict(_raw("patients.csv.gz").select("subject_id", "gender").iter_rows())
    assert demo["sex"].value_counts().sort("sex").rows() == [("F", 43), ("M", 57)]  # before: "/F", "/M"
    assert all(raw_sex[str(s)] == x for s, x in demo.select("subject_id", "sex").iter_rows())
    # race: the first admission's raw value (before: "unknown" for all on 0.1.3, "/WHITE" on 0.2.0)
    adm = _raw("admissions.csv.gz").sort("subject_id", "admittime").group_by("subject_id", maintain_order=True).agg(
        pl.col("race").first())
    raw_race = dict(adm.iter_rows())
    spec = mimic.profile.demographics
    ungrouped = Demographics(sex=spec.sex, race=spec.race, birth=spec.birth)
    from benchmark.data.profiles import read_demographics
    got = read_demographics(mimic, ungrouped)
    assert all(raw_race.get(str(s)) == r for s, r in got.select("subject_id", "race").iter_rows())
    groups = set(demo["race"].drop_nulls())
    assert {"WHITE", "BLACK"} <= groups and not any(g.startswith("/") for g in groups)
    assert demo["race"].null_count() == 0


def test_mimic_validate_is_clean_without_a_map(mimic, capsys):
    assert main(["validate", "--data", str(mimic.root)]) == 0, capsys.readouterr().err


def test_mimic_labels_every_task_it_can_express(mimic):
    from benchmark.labels import TaskNotApplicable, extract_labels
    from benchmark.task_registry import load_tasks

    ran, skipped = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # suitability warnings (tiny demo) are other tests' business
        for name, task in load_tasks().items():
            try:
                ran[name] = extract_labels(task, mimic, use_cache=False).labels.height
            except TaskNotApplicable as e:
                skipped[name] = sorted(e.missing)
    assert skipped == {n: m for n, m in NOT_ON_MIMIC.items() if n in load_tasks()}
    assert all(ran[t] == 85 for t in ("icu/mortality_24h", "icu/los_gt3d_24h", "icu/los_days_24h"))


@pytest.mark.slow
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_mimic_run_gives_results_or_clean_refusals(version, request, tmp_path):
    root = request.getfixturevalue(VERSIONS[version])
    cmd = [sys.executable, "-m", "benchmark", "run", "--model", "logistic_regression,catboost,ehrt",
           "--task", "icu/mortality_24h,icu/los_gt3d_24h,icu/los_days_24h", "--budget", "smoke",
           "--data", str(root), "--results", str(tmp_path / "results")]
    env = {**__import__("os").environ, "MEHR_BENCH_CACHE": str(tmp_path / "cache")}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
                       timeout=900)
    assert p.returncode in (0, 2), p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    files = sorted((tmp_path / "results").rglob("seed0.json"))
    if p.returncode == 0:
        assert len(files) == 9
    else:
        assert "fix" in p.stderr  # a refusal says why and what to do


def test_fingerprint_follows_the_profile_files(small_cohort, tmp_path, monkeypatch):
    """Editing the profile's dataset.yaml (how demographics / hierarchy are read) or the predicate map
    in use changes the cohort fingerprint, so finished cells are recomputed (planted edit)."""
    import shutil

    from benchmark.data.cohort import Cohort
    folder = tmp_path / "synthetic"
    shutil.copytree(Cohort(small_cohort.root).profile.folder, folder)
    c1 = Cohort(small_cohort.root, dataset=str(folder))
    fp1 = c1.fingerprint()
    y = folder / "dataset.yaml"
    y.write_text(y.read_text().replace("truncate: {ICD10CM/: 3", "truncate: {ICD10CM/: 4"))
    assert Cohort(small_cohort.root, dataset=str(folder)).fingerprint() != fp1
