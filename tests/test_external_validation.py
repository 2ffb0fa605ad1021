"""`run --external-data DIR`: the SAME fitted model scores another cohort (or an image folder).

Oracles: a model applied by hand to the external cohort's own TaskData gives the same scores as the
external predictions file; the external labels are the external cohort's own; shuffling the external
labels changes no internal number and no external score (nothing of B reaches a fit).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from benchmark import registry
from benchmark.cli import main
from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.external import ExternalSet, predictions_name
from benchmark.labels import extract_labels
from benchmark.model_api import Prediction, TaskData
from benchmark.results import cell_paths, read_record
from benchmark.task_registry import select_tasks

TASK = "oncology/mortality_1y"
CXR = "cxr/chexpert_multilabel"


@pytest.fixture(scope="session")
def site_b(tmp_path_factory) -> Cohort:
    """A second synthetic cohort (another seed, 300 subjects): the stand-in external site."""
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("site_b") / "cohort"
    generate(root, n_subjects=300, seed=5, images=False)
    return Cohort(root)


def _spec(name, factory, kinds=("binary",), modalities=("structured",)):
    return registry.ModelSpec(name=name, kind="baseline", description="test model", modalities=modalities,
                              task_kinds=kinds, n_parameters=1, training_data="none", license="none",
                              reference="none", authors="tests", factory=factory)


class EventCount:
    """Score = visible events of the sample / mean visible events of the training samples."""

    fits = 0

    def __init__(self, budget=None, seed=0):
        pass

    def _counts(self, data: TaskData, split: str) -> np.ndarray:
        s = data.samples(split).with_row_index("row")
        vis = data.visible_events(split, columns=("subject_id", "time", "code")).collect()
        n = vis.group_by("subject_id", "prediction_time").agg(pl.len().alias("n"))
        return s.join(n, on=["subject_id", "prediction_time"], how="left").sort("row")["n"].fill_null(0).to_numpy()

    def fit(self, data: TaskData):
        EventCount.fits += 1
        self.scale_ = float(self._counts(data, "train").mean())
        return self

    def predict(self, data: TaskData, split: str) -> Prediction:
        c = self._counts(data, split) / self.scale_
        return Prediction(score=c / (1.0 + c))


def _by_hand(model, site: Cohort, tmp_path) -> pl.DataFrame:
    """The model applied directly to the external cohort: all its samples as a held_out split."""
    task = select_tasks(TASK)[0]
    lab = extract_labels(task, site).labels.with_columns(pl.lit("held_out").alias("split"))
    data = TaskData(task=task, cohort=site, labels=lab, seed=0, work_dir=tmp_path)
    return data.samples("held_out").with_columns(pl.Series("score", model.predict(data, "held_out").score),
                                                 pl.Series("y", data.y("held_out").astype(bool)))


def test_external_predictions_equal_the_model_applied_by_hand_and_labels_come_from_b(
        small_cohort, site_b, tmp_path, cache, with_models):
    from benchmark import runner

    fitted = []
    with_models["event_count"] = _spec("event_count", lambda budget, seed: fitted.append(EventCount()) or fitted[-1])
    [rec] = runner.evaluate("event_count", TASK, data=small_cohort, results=tmp_path / "r", budget="smoke",
                            external_data=site_b.root)
    assert rec.status == "ok" and rec.schema_version == runner.SCHEMA_VERSION
    [ext] = rec.external
    assert ext.dataset.fingerprint == site_b.fingerprint() and ext.error is None and ext.not_applicable is None
    jp, pp = cell_paths(tmp_path / "r", "event_count", TASK, 0)
    got = pl.read_parquet(jp.with_name(predictions_name(0, site_b.fingerprint())))
    [model] = [m for m in fitted if hasattr(m, "scale_")]  # the runner also builds one to look for a prepare step
    want = _by_hand(model, site_b, tmp_path / "w")
    assert got["subject_id"].to_list() == want["subject_id"].to_list()  # B's own ids, every sample of B
    assert np.allclose(got["predicted_boolean_probability"].to_numpy(), want["score"].to_numpy(), rtol=0, atol=1e-7)
    assert got["boolean_value"].to_list() == want["y"].to_list()  # labels extracted from B alone
    assert ext.n_test == want.height and ext.n_events == int(want["y"].sum())
    assert ext.metrics["auroc"].value is not None and "_threshold" not in ext.metrics


def test_shuffled_external_labels_change_no_internal_number_and_no_external_score(
        small_cohort, site_b, tmp_path, cache, monkeypatch):
    """Planted fault: B's labels shuffled. Internal metrics and predictions stay bit for bit those of a
    run without --external-data; B's scores stay the same; only B's metrics move."""
    from benchmark import runner

    plain = runner.evaluate("logistic_regression", TASK, data=small_cohort, results=tmp_path / "plain",
                            budget="smoke")[0]
    honest = runner.evaluate("logistic_regression", TASK, data=small_cohort, results=tmp_path / "honest",
                             budget="smoke", external_data=site_b.root)[0]
    real = ExternalSet.labels

    def shuffled(self, task):
        lab = real(self, task)
        perm = np.random.default_rng(0).permutation(lab.height)
        return lab.with_columns(pl.Series("boolean_value", lab["boolean_value"].to_numpy()[perm]))

    monkeypatch.setattr(ExternalSet, "labels", shuffled)
    faulty = runner.evaluate("logistic_regression", TASK, data=small_cohort, results=tmp_path / "faulty",
                             budget="smoke", external_data=site_b.root)[0]
    for r in (honest, faulty):
        assert r.metrics == plain.metrics and r.fairness == plain.fairness
    pred = {k: pl.read_parquet(cell_paths(tmp_path / k, "logistic_regression", TASK, 0)[1])
            for k in ("plain", "honest", "faulty")}
    assert pred["honest"].equals(pred["plain"]) and pred["faulty"].equals(pred["plain"])
    name = predictions_name(0, site_b.fingerprint())
    eh, ef = (pl.read_parquet(cell_paths(tmp_path / k, "logistic_regression", TASK, 0)[0].with_name(name))
              for k in ("honest", "faulty"))
    assert eh["predicted_boolean_probability"].equals(ef["predicted_boolean_probability"])
    assert not eh["boolean_value"].equals(ef["boolean_value"])
    assert honest.external[0].metrics["auroc"].value != faulty.external[0].metrics["auroc"].value


def test_a_finished_cell_gets_its_external_entry_on_rerun_and_then_nothing_is_recomputed(
        small_cohort, site_b, tmp_path, cache, with_models):
    from benchmark import runner

    with_models["event_count"] = _spec("event_count", EventCount)
    EventCount.fits = 0
    [first] = runner.evaluate("event_count", TASK, data=small_cohort, results=tmp_path, budget="smoke")
    jp, _ = cell_paths(tmp_path, "event_count", TASK, 0)
    assert first.external is None and EventCount.fits == 1
    [second] = runner.evaluate("event_count", TASK, data=small_cohort, results=tmp_path, budget="smoke",
                               external_data=site_b.root)
    assert EventCount.fits == 2 and second.external[0].metrics["auroc"].value is not None
    assert second.metrics == first.metrics and second.compute == first.compute  # internal fields kept as on disk
    assert read_record(jp) == second
    text = jp.read_bytes()
    [third] = runner.evaluate("event_count", TASK, data=small_cohort, results=tmp_path, budget="smoke",
                              external_data=site_b.root)
    assert EventCount.fits == 2 and jp.read_bytes() == text and third == second


def test_a_bad_external_folder_is_refused_before_any_cell_naming_it_and_the_fix(small_cohort, tmp_path, cache,
                                                                                   capsys):
    from benchmark import runner

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    for bad in (tmp_path / "missing", junk):
        with pytest.raises(UserError) as e:
            runner.evaluate("logistic_regression", TASK, data=small_cohort, results=tmp_path / "r",
                            budget="smoke", external_data=bad)
        assert str(bad) in e.value.render() and "--external-data" in e.value.render()
        assert "labels.csv" in e.value.render()  # the fix names both accepted layouts
    assert not list((tmp_path / "r").rglob("seed*"))  # no half-written output
    with pytest.raises(UserError, match="the cohort the models are fitted on"):
        runner.evaluate("logistic_regression", TASK, data=small_cohort, results=tmp_path / "r", budget="smoke",
                        external_data=small_cohort.root)
    rc = main(["run", "--model", "logistic_regression", "--task", TASK, "--data", str(small_cohort.root),
               "--results", str(tmp_path / "r"), "--budget", "smoke", "--external-data", str(junk)])
    assert rc == 2 and str(junk) in capsys.readouterr().err


# ---------------------------------------------------------------------------- image folders
class FakeImageModel:
    """Reads each image file's planted label bits: a perfect ImagePredictor."""

    def __init__(self, budget=None, seed=0):
        pass

    def fit(self, data):
        self.n_ = len(data.task.label_names())
        return self

    def predict(self, data, split):
        return Prediction(score=np.full((data.frame(split).height, self.n_), 0.5))

    def predict_images(self, paths):
        return np.array([[float(c) for c in p.read_text().split(",")] for p in paths])


class NoImages(FakeImageModel):
    predict_images = None  # the attribute exists but is not callable: not an ImagePredictor


def _image_folder(root, names, n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, len(names)))
    y[0], y[1] = 1, 0
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        (root / "images" / f"{i}.png").write_text(",".join(str(v) for v in y[i]))
        cells = ["1" if v else ("" if (i + j) % 3 == 0 else "0") for j, v in enumerate(y[i])]
        rows.append(",".join([f"images/{i}.png", *cells]))
    (root / "labels.csv").write_text("\n".join([",".join(["Path", *names]), *rows]) + "\n")
    return y


def test_an_image_folder_scores_image_predictors_and_marks_the_others_not_applicable(
        small_cohort, tmp_path, cache, with_models):
    from benchmark import runner

    names = select_tasks(CXR)[0].label_names()
    y = _image_folder(tmp_path / "folder", names)
    for name, cls in (("fake_images", FakeImageModel), ("no_images", NoImages)):
        with_models[name] = _spec(name, cls, kinds=("multilabel",), modalities=("cxr",))
    recs = runner.evaluate(["fake_images", "no_images"], CXR, data=small_cohort, results=tmp_path / "r",
                           budget="smoke", external_data=tmp_path / "folder")
    good, other = (r.external[0] for r in recs)
    assert good.n_test == 40 and good.n_events == int(y.sum())
    assert good.metrics["auroc_macro"].value == pytest.approx(1.0)
    assert other.metrics is None and "predict_images" in other.not_applicable
    fp = good.dataset.fingerprint
    f = pl.read_parquet(cell_paths(tmp_path / "r", "fake_images", CXR, 0)[0].with_name(predictions_name(0, fp, "multilabel")))
    assert f["Path"][3] == "images/3.png" and f[f"boolean_value/{names[0]}"].to_list() == y[:, 0].astype(bool).tolist()
    assert not cell_paths(tmp_path / "r", "no_images", CXR, 0)[0].with_name(predictions_name(0, fp, "multilabel")).exists()


def test_uncertain_labels_read_as_negative_and_bad_columns_name_the_file_and_the_fix(small_cohort, tmp_path, cache):
    from benchmark.external import open_external
    from benchmark.external_images import image_applicability

    names = select_tasks(CXR)[0].label_names()
    _image_folder(tmp_path / "f", names, n=4)
    csv = tmp_path / "f" / "labels.csv"
    lines = csv.read_text().splitlines()
    lines[1] = ",".join(["images/0.png", "-1", *["1"] * (len(names) - 1)])
    csv.write_text("\n".join(lines) + "\n")
    ext = open_external(tmp_path / "f")
    assert ext.images.labels[0, 0] == 0 and ext.images.labels[0, 1] == 1  # U-Zeros
    csv.write_text("\n".join([lines[0].replace(names[2], "lung_nodule"), *lines[1:]]) + "\n")
    with pytest.raises(UserError) as e:
        image_applicability(open_external(tmp_path / "f").images, select_tasks(CXR)[0])
    text = e.value.render()
    assert str(csv) in text and names[2] in text and "outcomes" in text
    assert image_applicability(open_external(tmp_path / "f").images, select_tasks(TASK)[0]) is not None
    csv.write_text("\n".join([lines[0], lines[1].replace("-1", "2"), *lines[2:]]) + "\n")
    with pytest.raises(UserError, match="row 2"):
        open_external(tmp_path / "f")


def test_the_task_page_shows_internal_and_external_side_by_side_and_why_a_model_has_no_number(tmp_path):
    from leaderboard.build import build
    from benchmark.results import write_result

    d = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "result_v3.json").read_text())
    write_result(cell_paths(tmp_path / "r", d["model"], d["task"], 0)[0], d)
    other = {**d, "model": "image_only_toy", "external": [{**d["external"][0], "metrics": None, "n_test": None,
                                                            "not_applicable": "it reads no cohort"}]}
    write_result(cell_paths(tmp_path / "r", "image_only_toy", d["task"], 0)[0], other)
    site = build(tmp_path / "r", tmp_path / "site")
    html = next((site / "tasks").glob("*pe_mortality*.html")).read_text()
    part = html[html.index("Internal and external validation"):]
    assert d["external"][0]["dataset"]["name"] in part and "not applicable: it reads no cohort" in part
    assert f"{d['external'][0]['metrics']['c_index_uno']['value']:.3f}" in part
