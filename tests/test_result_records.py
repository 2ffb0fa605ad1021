"""Typed result records (issue 13 item 5): the ResultRecord schema, v1 files, the one reader, and
the keys of Prediction.info the runner reads.

tests/data/result_v1.json is a real file written by the runner before records were typed (CatBoost,
oncology/mortality_1y, default budget, `make run` of 2026-12-05): it must load, and writing the
loaded record again must give the same bytes. tests/data/result_v2.json was written by the runner at
schema version 2, which adds `dataset` (logistic_regression, oncology/mortality_1y, smoke budget, the
600-subject synthetic cohort of seed 0).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from benchmark import registry
from benchmark.model_api import Prediction
from benchmark.records import SCHEMA_VERSION, DatasetRef, Metric, ModelInfo, ResultRecord
from benchmark.results import (cell_paths, predictions_path, read_record, read_record_files, read_records, result_json,
                               write_result)

V1 = Path(__file__).parent / "data" / "result_v1.json"
V2 = Path(__file__).parent / "data" / "result_v2.json"
V3 = Path(__file__).parent / "data" / "result_v3.json"
TASK = "oncology/mortality_1y"


def _spec(name: str, factory) -> registry.ModelSpec:
    return registry.ModelSpec(name=name, kind="baseline", description="test model", modalities=("structured",),
                              task_kinds=("binary",), n_parameters=7, training_data="none", license="none",
                              reference="none", authors="tests", factory=factory)


# ---------------------------------------------------------------------------- v1 files
def test_a_v1_file_loads_typed_and_round_trips_byte_identical():
    text = V1.read_text()
    rec = ResultRecord.from_json_dict(json.loads(text))
    assert rec.schema_version == 1 <= SCHEMA_VERSION
    assert (rec.model, rec.task, rec.seed, rec.budget, rec.status) == ("catboost", TASK, 0, "default", "ok")
    assert isinstance(rec.main(), Metric) and rec.main() is rec.metrics["auroc"]
    assert rec.main().ci_low < rec.main().value < rec.main().ci_high
    assert rec.metrics["_threshold"].value == 0.27 and rec.metrics["_threshold"].ci_note is None
    assert (rec.n_train, rec.n_tuning, rec.n_test, rec.n_events) == (1128, 249, 257, 62)
    assert rec.provenance.data_fingerprint == "976d38c4c6ceb5da" and rec.provenance.hardware.cpus == 2
    assert rec.compute.n_parameters == 4096 and rec.compute.device == "cpu"
    # the model's own info stays verbatim next to the spec's typed fields
    assert rec.model_info.kind == "baseline" and rec.model_info.model_extra["library"] == "catboost"
    assert rec.fairness["metric"] == "auroc" and rec.explanations["method"] == "TreeExplainer"
    assert result_json(rec) == text  # nothing added, dropped or reformatted


def test_a_v2_file_loads_typed_and_round_trips_byte_identical():
    text = V2.read_text()
    rec = ResultRecord.from_json_dict(json.loads(text))
    assert rec.schema_version == 2 < SCHEMA_VERSION
    assert rec.external is None
    assert rec.dataset == DatasetRef(name="MEHR-Bench synthetic cohort", fingerprint="99655e242700d572")
    assert rec.dataset.fingerprint == rec.provenance.data_fingerprint
    # a cell too small for a CI: the value with the note, no interval
    assert rec.main().value is not None and rec.main().ci_low is None and "CI not reported" in rec.main().ci_note
    assert result_json(rec) == text


def test_a_v3_file_with_an_external_result_loads_typed_and_round_trips_byte_identical():
    """tests/data/result_v3.json: written by `run --external-data` (logistic_regression, smoke budget,
    a 600-subject synthetic cohort scored on a 400-subject one made with another seed)."""
    text = V3.read_text()
    rec = ResultRecord.from_json_dict(json.loads(text))
    assert rec.schema_version == 3 < SCHEMA_VERSION
    [ext] = rec.external
    assert ext.dataset.fingerprint != rec.dataset.fingerprint and ext.n_test > 0 and ext.not_applicable is None
    c = ext.main("c_index_harrell")
    assert c.ci_low < c.value < c.ci_high
    assert rec.external_for(ext.dataset.fingerprint) is ext and rec.external_for("0" * 16) is None
    assert result_json(rec) == text


def test_a_v1_file_gets_its_dataset_from_the_cohort_it_names(tmp_path):
    """Version 1 had no `dataset`: the reader derives it (dataset.json's name, else the cohort folder's
    name; the fingerprint from provenance) and writes the record back as version 1, unchanged."""
    d = json.loads(V1.read_text())

    def with_cohort(path: Path) -> dict:
        return {**d, "provenance": {**d["provenance"], "cohort": str(path)}}
    gone = ResultRecord.from_json_dict(with_cohort(tmp_path / "moved" / "my-cohort"))
    assert gone.dataset == DatasetRef(name="my-cohort", fingerprint="976d38c4c6ceb5da")
    cohort = tmp_path / "c"
    (cohort / "metadata").mkdir(parents=True)
    (cohort / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": " MIMIC-IV demo "}))
    named = ResultRecord.from_json_dict(with_cohort(cohort))
    assert named.dataset.name == "MIMIC-IV demo" and named.schema_version == 1
    assert json.loads(result_json(named)) == with_cohort(cohort)  # no dataset key added to a v1 file
    # from version 2 on the file must carry it
    with pytest.raises(ValidationError, match="dataset"):
        ResultRecord.from_json_dict({**d, "schema_version": 2})


def test_fields_absent_from_a_file_stay_absent_when_rewritten(tmp_path):
    """A failed v1 cell has no metrics, fairness or explanations keys (not nulls); they stay absent."""
    d = json.loads(V1.read_text())
    for k in ("metrics", "fairness", "explanations"):
        del d[k]
    d.update(status="failed", error="RuntimeError: boom", traceback="Traceback ...")
    rec = ResultRecord.from_json_dict(d)
    assert rec.metrics is None and rec.main() is None
    p = tmp_path / "seed0.json"
    write_result(p, rec)
    assert json.loads(p.read_text()) == d


def test_records_are_frozen_and_strict():
    d = json.loads(V1.read_text())
    rec = ResultRecord.from_json_dict(d)
    with pytest.raises(ValidationError):
        rec.status = "failed"
    with pytest.raises(ValidationError, match="n_tset"):
        ResultRecord.from_json_dict({**d, "n_tset": 3})  # a typo is an error, not a silent extra
    with pytest.raises(ValidationError, match="status"):
        ResultRecord.from_json_dict({**d, "status": "done"})
    with pytest.raises(ValidationError, match="upgrade"):
        ResultRecord.from_json_dict({**d, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ValidationError, match="valeu"):
        Metric.model_validate({"value": 0.5, "valeu": 0.5})


def test_read_records_skips_bad_files_with_a_warning_naming_them(tmp_path):
    good = json.loads(V1.read_text())
    write_result(cell_paths(tmp_path, "catboost", TASK, 0)[0], good)
    write_result(cell_paths(tmp_path, "catboost", TASK, 1)[0], {**good, "seed": 1})
    newer = cell_paths(tmp_path, "catboost", TASK, 2)[0]
    write_result(newer, {**good, "seed": 2, "schema_version": SCHEMA_VERSION + 1})
    torn = cell_paths(tmp_path, "xgboost", TASK, 0)[0]
    torn.parent.mkdir(parents=True)
    torn.write_text(V1.read_text()[:500])  # a truncated file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = read_records(tmp_path)
    assert [(r.model, r.seed) for r in recs] == [("catboost", 0), ("catboost", 1)]
    text = "\n".join(str(w.message) for w in caught)
    assert len(caught) == 2 and str(newer) in text and str(torn) in text and "schema_version" in text
    assert read_record(torn) is None and read_record(tmp_path / "nothing.json") is None


def test_read_record_files_gives_paths_and_skips_hidden_and_excluded_folders(tmp_path):
    """What the leaderboard needs from the one reader: each record's file (its predictions sit next
    to it), the problems as text, and no records from a hidden folder or the site inside results."""
    good = json.loads(V1.read_text())
    jp, pp = cell_paths(tmp_path, "catboost", TASK, 0)
    write_result(jp, good)
    write_result(tmp_path / ".trash" / "catboost" / TASK / "seed1.json", {**good, "seed": 1})
    write_result(tmp_path / "site" / "catboost" / TASK / "seed2.json", {**good, "seed": 2})
    bad = cell_paths(tmp_path, "xgboost", TASK, 0)[0]
    write_result(bad, {**good, "model": "xgboost", "n_test": "many"})
    found, problems = read_record_files(tmp_path, exclude=tmp_path / "site")
    assert [(p, r.seed) for p, r in found] == [(jp, 0)] and predictions_path(jp) == pp
    assert problems == [f"{bad}: not a result record (field 'n_test': Input should be a valid integer, unable to "
                        "parse string as an integer); fix: rerun that cell with --force, or remove the file"]


def test_read_results_is_gone():
    """Three readers were too many: the untyped read_results had no caller."""
    import benchmark.results as results
    assert not hasattr(results, "read_results")


# ---------------------------------------------------------------------------- the runner writes typed records
class _Reporting:
    """A model that reports every Prediction.info key the runner reads, plus one of its own."""

    def __init__(self, explanations):
        self.explanations = explanations

    def fit(self, data):
        return self

    def predict(self, data, split):
        y = data.y(split).astype(float)
        rng = np.random.default_rng(0)
        score = np.clip(0.6 * y + 0.4 * rng.random(len(y)), 0, 1)
        return Prediction(score=score, info={"device": "cuda:7", "n_parameters": 123, "tokens_per_s": 5.5,
                                             "explanations": self.explanations, "my_knob": [1, 2]})


def test_prediction_info_keys_reach_their_record_fields(small_cohort, tmp_path, cache, with_models):
    """The runner reads four keys of Prediction.info (records.PredictionInfo); others are kept in model_info."""
    from benchmark import runner

    with_models["reporting"] = _spec("reporting", lambda budget, seed: _Reporting({"method": "planted"}))
    [rec] = runner.evaluate("reporting", TASK, data=small_cohort, results=tmp_path, budget="smoke")
    assert rec.status == "ok"
    assert (rec.compute.device, rec.compute.n_parameters, rec.compute.tokens_per_s) == ("cuda:7", 123, 5.5)
    assert rec.explanations == {"method": "planted"}
    assert rec.model_info.model_extra == {"device": "cuda:7", "n_parameters": 123, "tokens_per_s": 5.5,
                                          "my_knob": [1, 2]}  # explanations are not copied into model_info
    assert read_record(cell_paths(tmp_path, "reporting", TASK, 0)[0]) == rec


def test_model_output_a_record_cannot_hold_fails_the_cell_not_the_grid(small_cohort, tmp_path, cache, with_models):
    """Explanations that are not a mapping: the cell is recorded as failed with the reason, its
    predictions file is removed, and the other model still runs."""
    from benchmark import runner

    with_models["bad_info"] = _spec("bad_info", lambda budget, seed: _Reporting(["not", "a", "mapping"]))
    recs = runner.evaluate(["bad_info", "logistic_regression"], TASK, data=small_cohort, results=tmp_path,
                           budget="smoke")
    assert [r.status for r in recs] == ["failed", "ok"]
    assert "does not fit a result record" in recs[0].error and "explanations" in recs[0].error
    jp, pp = cell_paths(tmp_path, "bad_info", TASK, 0)
    assert json.loads(jp.read_text())["status"] == "failed" and not pp.exists()


def test_the_runner_writes_v3_records_naming_the_dataset(small_cohort, tmp_path, cache):
    from benchmark import runner

    [rec] = runner.evaluate("logistic_regression", TASK, data=small_cohort, results=tmp_path, budget="smoke")
    meta = json.loads((small_cohort.root / "metadata" / "dataset.json").read_text())
    fp = small_cohort.fingerprint()
    assert rec.schema_version == SCHEMA_VERSION == 5 and rec.external is None and rec.few_shot is None  # no --external-data: no list
    assert rec.dataset == DatasetRef(name=meta["dataset_name"], fingerprint=fp) and rec.provenance.data_fingerprint == fp
    on_disk = json.loads(cell_paths(tmp_path, "logistic_regression", TASK, 0)[0].read_text())
    assert on_disk["schema_version"] == 5 and "external" not in on_disk and "few_shot" not in on_disk and on_disk["dataset"] == {"name": meta["dataset_name"], "fingerprint": fp}


def test_model_info_keeps_spec_fields_typed():
    info = ModelInfo(kind="baseline", modalities=["structured"], reference="x", hyperparameters={"depth": 3})
    assert info.hyperparameters == {"depth": 3} and info.maskable_modalities is None
    with pytest.raises(ValidationError):
        ModelInfo(kind="baseline", modalities="structured", reference="x")
