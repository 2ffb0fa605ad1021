"""The second synthetic site (external validation) and generator 2.0's promises for site a.

Site b shares the latent model and every coefficient (a Cox fit on the true latents recovers the same
coefficients at both sites) but has another case mix (event rates), coding habits (ICD sub-codes) and
image distribution (embedding and pixel shift).  Site a keeps every other task's labels byte for byte
(hashes pinned from generator 2.1.0)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from data_prep import synthetic
from data_prep.cxr_folder import export_chexpert_folder

N = 2500
TASKS = load_tasks()


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sites")
    return {s: synthetic.generate(root / s, n_subjects=N, seed=0, images=False, write_latents=True, site=s)
            for s in ("a", "b")}


def _labels(task: str, root: Path) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_labels(TASKS[task], Cohort(root)).labels


def test_site_a_other_tasks_labels_pinned(tmp_path):
    # (rows, sha256[:16] of the label CSV) from generator 2.1.0 at n = 600, seed 1. Generator 2.0 kept every
    # generator-1 draw (new randomness comes from new streams) but raised the PE death hazard (PE v2 needs
    # one-year deaths), so PE patients' death times, and through them other tasks' labels, moved once; this
    # pin catches any further unintended change of site a.
    before = {"icu/mortality_24h": (149, "679523827d07e75b"), "oncology/mortality_1y": (211, "c66319c8b5b4b5af"),
              "onset/t2d_10y": (439, "d55787ab21b252f6"), "cxr/chexpert_multilabel": (311, "5c4730137af25912"),
              "oncology/aki_1y": (213, "0c63b1b1c5f9f78c"), "icu/los_days_24h": (149, "7f9dce5cdd1397bd")}
    root = synthetic.generate(tmp_path / "a", n_subjects=600, seed=1, images=False)
    for task, want in before.items():
        df = _labels(task, root)
        assert (df.height, hashlib.sha256(df.write_csv().encode()).hexdigest()[:16]) == want, task


def test_site_b_metadata_and_profile(sites):
    meta = json.loads((sites["b"] / "metadata" / "dataset.json").read_text())
    assert meta["dataset_name"] == "MEHR-Bench synthetic cohort (site b)"
    assert json.loads((sites["a"] / "metadata" / "dataset.json").read_text())["dataset_name"] == \
        "MEHR-Bench synthetic cohort"
    assert Cohort(sites["b"]).profile.name == "synthetic"
    with pytest.raises(UserError):
        synthetic.generate(sites["b"].parent / "c", n_subjects=50, site="c")


def test_site_b_case_mix_gives_other_event_rates(sites):
    rate = {s: {t: _labels(t, r)["boolean_value"].mean() for t in ("survival/mace", "survival/pe_mortality")}
            for s, r in sites.items()}
    # as the paper's external cohorts: fewer MACE (ED chest CTs), more deaths after PE
    assert rate["b"]["survival/mace"] < rate["a"]["survival/mace"] - 0.05
    assert rate["b"]["survival/pe_mortality"] > rate["a"]["survival/pe_mortality"]


def test_site_b_coding_habits(sites):
    codes = {s: set(pl.read_parquet(r / "metadata" / "codes.parquet")["code"]) for s, r in sites.items()}
    assert {"ICD10CM/I21.A1", "ICD10CM/I63.50", "ICD10CM/I50.23", "ICD10CM/I26.92"} <= codes["b"]
    assert not {"ICD10CM/I21.9", "ICD10CM/I63.9", "ICD10CM/K21.9", "ICD10CM/F32.9"} & codes["b"]
    assert {"ICD10CM/I21.9", "ICD10CM/K21.9"} <= codes["a"] and "ICD10CM/I21.A1" not in codes["a"]


def test_site_b_shifts_the_image_embeddings(sites):
    mean = {s: np.asarray(pl.read_parquet(r / "modalities" / "ct.parquet").filter(pl.col("series") == "cardiac")
                          ["embedding"].to_list()).mean(0) for s, r in sites.items()}
    assert np.linalg.norm(mean["b"] - mean["a"]) > 2.0


def test_same_coefficients_at_both_sites(sites):
    from lifelines import CoxPHFitter
    cols = ["u_cac", "card_htn", "card_hld", "card_age_std", "negz"]
    fits = {}
    for s, r in sites.items():
        lat = pl.read_parquet(r / synthetic.LATENTS_FILE).with_columns(negz=-pl.col("z"))
        d = _labels("survival/mace", r).join(lat, on="subject_id").filter(
            pl.col("prediction_time") == pl.col("cardiac_ct_time"))
        fits[s] = CoxPHFitter(alpha=0.01).fit(d.select(cols + ["float_value", "boolean_value"]).to_pandas(),
                                              "float_value", "boolean_value")
    for c in cols:
        a, b = fits["a"].params_[c], fits["b"].params_[c]
        assert abs(a - b) < 0.35, (c, a, b)
    for s, f in fits.items():           # the image latent's true coefficient (1.0) lies in each site's 99 % CI
        lo, hi = f.confidence_intervals_.loc["u_cac"]
        assert lo < 1.0 < hi, (s, lo, hi)


def test_generator_2_events_exist_at_site_a(sites):
    ev = pl.read_parquet(sorted((sites["a"] / "data").glob("*/*.parquet")))
    codes = set(ev["code"])
    assert {"ICD10CM/I50.21", "DEATH_CAUSE/I46.9", "DEATH_CAUSE/I21.9"} <= codes
    deaths = ev.filter(pl.col("code") == "MEDS_DEATH").height
    assert ev.filter(pl.col("code").str.starts_with("DEATH_CAUSE/")).height == deaths   # one cause per death
    mace = _labels("survival/mace", sites["a"])
    assert mace.height > mace["subject_id"].n_unique()           # repeat cardiac CTs
    ct = pl.read_parquet(sites["a"] / "modalities" / "ct.parquet")
    assert ct["study_id"].n_unique() == ct.height


@pytest.mark.parametrize("site", ["a", "b"])
def test_cxr_folder_export_equals_sidecar(tmp_path, site):
    root = synthetic.generate(tmp_path / "c", n_subjects=120, seed=2, site=site)
    out, n = export_chexpert_folder(root, tmp_path / "folder")
    labels = pl.read_csv(out / "labels.csv")
    names = list(TASKS["cxr/chexpert_multilabel"].label.outcomes)
    assert labels.columns == ["Path", *names]
    side = pl.read_parquet(root / "modalities" / "cxr.parquet").sort("subject_id", "time", "study_id")
    assert n == side.height == labels.height
    assert np.array_equal(labels.select(names).to_numpy(), np.asarray(side["labels"].to_list()))
    for rel, src in zip(labels["Path"].head(5), side["path"].head(5)):
        assert (out / rel).read_bytes() == (root / src).read_bytes()
    assert not list(tmp_path.glob(".folder.*tmp*"))
    with pytest.raises(UserError):
        export_chexpert_folder(root, out)                        # not empty


def test_site_b_pngs_differ_in_intensity(tmp_path):
    px = {s: np.stack([np.asarray(Image.open(p)) for p in sorted((synthetic.generate(
        tmp_path / s, n_subjects=80, seed=4, site=s) / "images" / "cxr").glob("*.png"))]) for s in ("a", "b")}
    assert px["b"].mean() - px["a"].mean() > 10 and px["b"].std() < px["a"].std()


def test_cli_prepare_site_b_and_cxr_folder(tmp_path):
    from benchmark.cli import main
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "b"), "--subjects", "60", "--site", "b"]) == 0
    assert "site b" in json.loads((tmp_path / "b" / "metadata" / "dataset.json").read_text())["dataset_name"]
    assert main(["prepare", "cxr-folder", "--data", str(tmp_path / "b"), "--out", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "labels.csv").exists()
    assert main(["prepare", "cxr-folder", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "g")]) != 0
    assert not (tmp_path / "g").exists()


def test_default_cohort_for_site_b_has_its_own_cache_folder(monkeypatch, tmp_path):
    from benchmark import default_cohort
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(default_cohort, "cohort_generator", lambda name="synthetic": synthetic)
    a = default_cohort.ensure_default_cohort(60, 0)
    b = default_cohort.ensure_default_cohort(60, 0, site="b")
    assert a != b and b.name.endswith("-siteb")
    assert "site b" in json.loads((b / "metadata" / "dataset.json").read_text())["dataset_name"]
