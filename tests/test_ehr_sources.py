"""EHR sources of the fusion heads (InputConfig.ehr_source): bag of events, foundation-model vector, curated."""

from __future__ import annotations

import shutil
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from benchmark.errors import UserError
from benchmark.features.risk_factors import risk_factor_matrix
from benchmark.model_api import BUDGETS
from encoders.fusion.ehr_sources import bag_block
from encoders.fusion.inputs import InputConfig, raw_inputs
from tests.contracts.test_model_contract import build_leak_cohort, task_data_for

EHR_ONLY = dict(timeline=False, modalities=())


@pytest.fixture(scope="module")
def leak(tmp_path_factory):
    """The contract's leak cohort (signal before, leak after the prediction time), a private cache,
    and MEHRT's smoke level shrunk to a tiny model trained for 6 steps."""
    import torch

    from encoders.mehrt import pipeline as P
    root = tmp_path_factory.mktemp("src_leak") / "cohort"
    truth = build_leak_cohort(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEHR_BENCH_CACHE", str(tmp_path_factory.mktemp("src_cache")))
    mp.setitem(P.LEVELS, "smoke", ("tiny", 6))
    torch.set_num_threads(1)
    yield root, truth, tmp_path_factory.mktemp("src_work")
    mp.undo()


def _survival(leak, name: str, root=None):
    r, truth, work = leak
    data = task_data_for("survival", root or r, truth, work / name)
    mace = __import__("benchmark.task_registry", fromlist=["load_tasks"]).load_tasks()["survival/mace"]
    return type(data)(task=data.task.model_copy(update={"risk_factors": mace.risk_factors}), cohort=data.cohort,
                      labels=data.labels, seed=0, work_dir=data.work_dir)


def test_bag_is_the_default_source(leak):
    data = _survival(leak, "bag")
    arrays, _, info = raw_inputs(data, InputConfig(**EHR_ONLY))
    X, names = bag_block(data)
    np.testing.assert_array_equal(arrays["ehr"], X)
    assert info["ehr_source"] == "bag" and info["ehr_names"] == names


def test_curated_source_fills_the_ehr_array_with_the_risk_factors(leak):
    data = _survival(leak, "curated")
    arrays, _, info = raw_inputs(data, InputConfig(ehr_source="curated", **EHR_ONLY))
    rf = risk_factor_matrix(data)
    np.testing.assert_array_equal(arrays["ehr"], rf.X)
    assert set(np.unique(arrays["ehr"])) <= {0.0, 1.0}
    assert info["ehr_source"] == "curated" and info["ehr_names"] == [f"risk:{n}" for n in rf.names]
    assert "hypertension" in info["risk_factors_unmapped"]     # the contract cohort's map has none


def test_curated_source_without_risk_factors_and_unknown_sources_are_refused(leak):
    r, truth, work = leak
    data = task_data_for("survival", r, truth, work / "none")
    data = type(data)(task=data.task.model_copy(update={"risk_factors": ()}), cohort=data.cohort,
                      labels=data.labels, seed=0, work_dir=data.work_dir)
    with pytest.raises(UserError, match="risk_factors"):
        raw_inputs(data, InputConfig(ehr_source="curated", **EHR_ONLY))
    with pytest.raises(ValueError, match="ehr_source"):
        raw_inputs(data, InputConfig(ehr_source="clmbr", **EHR_ONLY))


def test_fm_source_refuses_a_model_without_represent(leak):
    data = _survival(leak, "norep")
    with pytest.raises(UserError) as e:
        raw_inputs(data, InputConfig(ehr_source="fm", ehr_fm_model="logistic_regression", **EHR_ONLY))
    text = e.value.render()
    assert "logistic_regression" in text and "represent" in text and e.value.field == "ehr_fm_model" and e.value.fix


def _edited_copy(src, dst, truth, *, after: bool):
    """A copy of the leak cohort where each held-out subject gets a SYNTH/SIGNAL code 3 h after its
    prediction time and every lab value after it set to 99 (after=True), or the code 1 h before."""
    shutil.copytree(src, dst)
    shard = dst / "data" / "train" / "0.parquet"
    ev = pl.read_parquet(shard)
    held = [(i + 1, t) for i, (t, s) in enumerate(zip(truth["t0"], truth["split"])) if s == "held_out"]
    shift = timedelta(hours=3) if after else -timedelta(hours=1)
    add = pl.DataFrame({"subject_id": [s for s, _ in held], "time": [t + shift for _, t in held],
                        "code": ["SYNTH/SIGNAL"] * len(held), "numeric_value": [None] * len(held)}, schema=ev.schema)
    t0 = pl.DataFrame({"subject_id": [i + 1 for i in range(len(truth["t0"]))], "t0": truth["t0"]},
                      schema={"subject_id": pl.Int64, "t0": pl.Datetime("us")})
    if after:
        ev = (ev.join(t0, on="subject_id")
              .with_columns(pl.when((pl.col("time") > pl.col("t0")) & pl.col("numeric_value").is_not_null())
                            .then(pl.lit(99.0)).otherwise(pl.col("numeric_value")).cast(ev.schema["numeric_value"])
                            .alias("numeric_value")).drop("t0"))
    pl.concat([ev, add]).sort("subject_id", "time", nulls_last=False).write_parquet(shard)
    return dst


def test_fm_vectors_ignore_everything_after_the_prediction_time(leak, tmp_path, monkeypatch):
    """Planted: events after t are added and changed. With the same frozen checkpoint, every
    held-out vector is unchanged; an event added before t does change them (the test can fail)."""
    from encoders.mehrt import pipeline as P
    root, truth, _ = leak
    data = _survival(leak, "fm")
    arrays, _, info = raw_inputs(data, InputConfig(ehr_source="fm", **EHR_ONLY))
    X = arrays["ehr"]
    assert info["ehr_source"] == "fm" and info["ehr_fm"] == {"model": "ehrt", "budget": "smoke", "dim": X.shape[1]}
    assert X.shape[0] == data.labels.height and np.isfinite(X).all() and X.std(0).max() > 0
    bag = raw_inputs(data, InputConfig(**EHR_ONLY))[0]["ehr"]
    assert X.shape != bag.shape or not np.allclose(X, bag)
    frozen = P.load_pretrained(data.cohort, P.settings_for(BUDGETS["smoke"], multimodal=False,
                                                           representations=("last",)))
    monkeypatch.setattr(P, "load_pretrained", lambda cohort, settings, log=None: frozen)
    held = (data.labels["split"] == "held_out").to_numpy()

    def fm_of(name: str, after: bool) -> np.ndarray:
        monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / f"cache-{name}"))  # no cached vectors
        cohort = _edited_copy(root, tmp_path / name, truth, after=after)
        return raw_inputs(_survival(leak, name, root=cohort), InputConfig(ehr_source="fm", **EHR_ONLY))[0]["ehr"]

    np.testing.assert_array_equal(fm_of("future", after=True), X)
    before = fm_of("past", after=False)
    assert not np.allclose(before[held], X[held], atol=1e-5)
    np.testing.assert_array_equal(before[~held], X[~held])


@pytest.mark.slow  # ~30 s: three searches and fits
def test_fusion_model_runs_on_every_source(leak):
    """concat_lr fits and predicts on each source; the foundation model is built at the run's budget."""
    from encoders.fusion.estimator import FusionModel
    data = _survival(leak, "fit")
    dims = {}
    for source in ("bag", "fm", "curated"):
        m = FusionModel(head="concat_lr", budget=BUDGETS["smoke"], inputs=InputConfig(ehr_source=source, **EHR_ONLY))
        pred = m.fit(data).predict(data, "held_out")
        assert pred.score.shape == (data.frame("held_out").height,) and np.isfinite(pred.score).all()
        dims[source] = m.scaler_.ehr_keep_.size
        if source == "fm":
            assert m._raw(data)[2]["ehr_fm"]["budget"] == "smoke"
    assert len(set(dims.values())) == 3, dims
