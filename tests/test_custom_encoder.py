"""A user's own study encoder ("module:function", encoders/custom.py).

Oracle: the identity encoder (return each study's precomputed `embedding`) must reproduce the
built-in `precomputed` encoder exactly; the function must see each visible study once and nothing
after any sample's prediction time.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmark.errors import UserError
from tests.contracts.test_model_contract import build_leak_cohort, task_data_for

SEEN: list[pl.DataFrame] = []


def identity(studies: pl.DataFrame, modality: str) -> np.ndarray:
    SEEN.append(studies)
    return np.stack([np.asarray(e, dtype=np.float32) for e in studies["embedding"].to_list()])


def wrong_shape(studies: pl.DataFrame, modality: str) -> np.ndarray:
    return np.zeros((len(studies) + 1, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom_enc") / "cohort"
    truth = build_leak_cohort(root, n=120)
    return task_data_for("binary", root, truth, tmp_path_factory.mktemp("work")), truth


def test_identity_encoder_equals_precomputed(data):
    from encoders.custom import encode_custom
    from encoders.precomputed import encode_precomputed
    d, truth = data
    SEEN.clear()
    got = encode_custom(d, "ct", "tests.test_custom_encoder:identity", cache=False)
    ref = encode_precomputed(d, "ct", cache=False)
    for k in ("mean", "seq", "seq_mask", "count"):
        np.testing.assert_array_equal(getattr(got, k), getattr(ref, k), err_msg=k)
    (studies,) = SEEN
    # each study once, none after its subject's prediction time (the post-prediction CT carries the leak)
    assert studies["study_id"].n_unique() == len(studies)
    t0 = dict(zip(range(1, len(truth["t0"]) + 1), truth["t0"]))
    assert all(t <= t0[s] for s, t in zip(studies["subject_id"], studies["time"]))
    assert "labels" not in studies.columns


def test_custom_source_feeds_a_fusion_head_and_is_cached(data):
    from encoders.fusion.estimator import FusionModel
    from encoders.fusion.inputs import InputConfig
    d, _ = data
    cfg = InputConfig(structured=False, timeline=False, modalities=("ct",),
                      sources={"ct": "tests.test_custom_encoder:identity"})
    SEEN.clear()
    a = FusionModel(head="concat_lr", inputs=cfg, seed=0).fit(d).predict(d, "held_out")
    b = FusionModel(head="concat_lr", inputs=InputConfig(structured=False, timeline=False, modalities=("ct",)),
                    seed=0).fit(d).predict(d, "held_out")
    np.testing.assert_allclose(a.score, b.score, rtol=1e-6)
    assert a.info["sources"] == {"ct": "tests.test_custom_encoder:identity"}
    n_calls = len(SEEN)
    FusionModel(head="concat_lr", inputs=cfg, seed=0).fit(d)
    assert len(SEEN) == n_calls  # second time from the disk cache


@pytest.mark.parametrize("source,match", [("tests.test_custom_encoder:wrong_shape", "returned shape"),
                                          ("tests.test_custom_encoder:nope", "cannot load"),
                                          ("no_such_module_xyz:f", "cannot load")])
def test_bad_custom_encoders_are_user_errors(data, source, match):
    from encoders.custom import encode_custom
    d, _ = data
    with pytest.raises(UserError, match=match):
        encode_custom(d, "ct", source, cache=False)
