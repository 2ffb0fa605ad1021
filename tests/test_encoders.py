"""Encoders on hand-built cohorts: exact pooling of precomputed studies, the time-series binning
(carry-forward, normal-value fill, standardization), note text and image files only up to the
prediction time, the on-disk cache, and the image encoders' refusal to run without weights."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.model_api import TaskData
from benchmark.task_registry import load_tasks

T0 = datetime(2020, 1, 10, 12, 0)


def H(hours: float) -> datetime:
    """T0 + hours."""
    return T0 + timedelta(hours=hours)


def write_cohort(root: Path, events: list[tuple], sidecars: dict[str, pl.DataFrame] | None = None) -> Cohort:
    """A one-shard cohort: events (subject_id, time | None, code, numeric_value | None, text_value | None)."""
    (root / "data" / "train").mkdir(parents=True)
    (root / "metadata").mkdir()
    df = pl.DataFrame({"subject_id": [e[0] for e in events], "time": [e[1] for e in events],
                       "code": [e[2] for e in events], "numeric_value": [e[3] for e in events],
                       "text_value": [e[4] if len(e) > 4 else None for e in events]},
                      schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                              "numeric_value": pl.Float32, "text_value": pl.String})
    df.sort("subject_id", "time", nulls_last=False).write_parquet(root / "data" / "train" / "0.parquet")
    subjects = sorted(set(df["subject_id"].to_list()))
    pl.DataFrame({"subject_id": subjects, "split": ["train"] * len(subjects)},
                 schema={"subject_id": pl.Int64, "split": pl.String}).write_parquet(
        root / "metadata" / "subject_splits.parquet")
    (root / "metadata" / "dataset.json").write_text('{"dataset_name": "test"}')
    (root / "predicates.yaml").write_text("death: {code: MEDS_DEATH}\n")
    if sidecars:
        (root / "modalities").mkdir()
        for name, frame in sidecars.items():
            frame.write_parquet(root / "modalities" / f"{name}.parquet")
    return Cohort(root)


def task_data(cohort: Cohort, samples: list[tuple], work: Path, task: str = "icu/mortality_24h",
              modalities=None) -> TaskData:
    """TaskData over hand-chosen (subject_id, prediction_time, label, split) samples."""
    # these tests place studies up to days before t to check the prediction-time rule; the task's own
    # input window (icu/*: 24 h since version 2; tested in tests/test_task_input_window.py) is lifted
    spec = load_tasks()[task].model_copy(update={"input_window": None})
    if modalities is not None:
        spec = spec.model_copy(update={"modalities": list(modalities)})
    labels = pl.DataFrame({"subject_id": [s[0] for s in samples], "prediction_time": [s[1] for s in samples],
                           "boolean_value": [bool(s[2]) for s in samples], "split": [s[3] for s in samples]},
                          schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                  "boolean_value": pl.Boolean, "split": pl.String})
    work.mkdir(parents=True, exist_ok=True)
    return TaskData(task=spec, cohort=cohort, labels=labels, seed=0, work_dir=work)


def emb_frame(rows: list[tuple], dim: int = 2) -> pl.DataFrame:
    """Sidecar rows (subject_id, time | None, embedding list)."""
    return pl.DataFrame({"subject_id": [r[0] for r in rows], "time": [r[1] for r in rows],
                         "embedding": [list(map(float, r[2])) for r in rows]},
                        schema={"subject_id": pl.Int64, "time": pl.Datetime("us"),
                                "embedding": pl.Array(pl.Float32, dim)})


# --------------------------------------------------------------------------- precomputed
def test_precomputed_pools_only_visible_studies(tmp_path):
    from encoders.precomputed import encode_precomputed
    ct = emb_frame([(1, H(-48), [1, 0]), (1, H(-2), [3, 2]), (1, H(+1), [100, 100]),   # the last is future
                    (2, H(+5), [7, 7]),                                                # only future: absent
                    (3, None, [4, -4])])                                               # static: always visible
    c = write_cohort(tmp_path / "c", [(1, H(-100), "A", None), (2, H(-100), "A", None), (3, H(-100), "A", None)],
                     {"ct": ct})
    d = task_data(c, [(1, T0, 1, "train"), (2, T0, 0, "train"), (3, T0, 0, "train"), (1, H(2), 1, "train")],
                  tmp_path / "w")
    enc = encode_precomputed(d, "ct", max_studies=2, cache=False)
    np.testing.assert_allclose(enc.mean, [[2, 1], [0, 0], [4, -4], [104 / 3, 102 / 3]], rtol=1e-6)
    np.testing.assert_array_equal(enc.count, [2, 0, 1, 3])
    # tokens: most recent first
    np.testing.assert_allclose(enc.seq[0], [[3, 2], [1, 0]])
    np.testing.assert_allclose(enc.seq[3], [[100, 100], [3, 2]])
    np.testing.assert_array_equal(enc.seq_mask, [[True, True], [False, False], [True, False], [True, True]])
    assert enc.present.tolist() == [True, False, True, True]


def test_auto_pooling_uses_the_study_of_a_per_study_task(tmp_path):
    """pooling="auto": a modality whose study sits at the prediction time (one prediction per study)
    gives its most recent study; otherwise the mean of the visible studies (MEHRT paper, OpenReview ywFxZhMnuB)."""
    from encoders.fusion.inputs import InputConfig, raw_inputs, study_at_index_share
    cxr = emb_frame([(1, H(-48), [1, 0]), (1, T0, [3, 2]), (2, H(-5), [5, 5]), (2, T0, [7, 9]), (3, T0, [4, 4])])
    ct = emb_frame([(1, H(-48), [2, 2]), (1, H(-10), [4, 0]), (2, H(-3), [1, 1]), (3, T0, [6, 6])])
    c = write_cohort(tmp_path / "c", [(s, H(-100), "A", None) for s in (1, 2, 3)], {"cxr": cxr, "ct": ct})
    d = task_data(c, [(1, T0, 1, "train"), (2, T0, 0, "train"), (3, T0, 1, "train")], tmp_path / "w",
                  modalities=("cxr", "ct"))
    assert study_at_index_share(d, "cxr") == 1.0 and study_at_index_share(d, "ct") == pytest.approx(1 / 3)
    arrays, mods, info = raw_inputs(d, InputConfig(structured=False, timeline=False, modalities=("cxr", "ct")))
    assert info["pooling"] == {"cxr": "last", "ct": "mean"}
    np.testing.assert_allclose(arrays["cxr.mean"], [[3, 2], [7, 9], [4, 4]])        # the study at T0
    np.testing.assert_allclose(arrays["ct.mean"], [[3, 1], [1, 1], [6, 6]])         # averages
    forced, _, info = raw_inputs(d, InputConfig(structured=False, timeline=False, modalities=("cxr",), pooling="mean"))
    np.testing.assert_allclose(forced["cxr.mean"], [[2, 1], [6, 7], [4, 4]])
    with pytest.raises(ValueError, match="pooling"):
        raw_inputs(d, InputConfig(structured=False, timeline=False, modalities=("cxr",), pooling="max"))


def test_precomputed_without_embedding_column_is_a_user_error(tmp_path):
    from encoders.precomputed import encode_precomputed
    side = pl.DataFrame({"subject_id": [1], "time": [H(-1)], "path": ["x.png"]})
    c = write_cohort(tmp_path / "c", [(1, H(-100), "A", None)], {"cxr": side})
    d = task_data(c, [(1, T0, 1, "train")], tmp_path / "w")
    with pytest.raises(UserError, match="embedding"):
        encode_precomputed(d, "cxr", cache=False)


def test_cache_reuses_and_invalidates(tmp_path, monkeypatch):
    import encoders.precomputed as pre
    ct = emb_frame([(1, H(-2), [1, 2])])
    c = write_cohort(tmp_path / "c", [(1, H(-100), "A", None)], {"ct": ct})
    d = task_data(c, [(1, T0, 1, "train")], tmp_path / "w")
    a = pre.encode_precomputed(d, "ct")
    files = list((tmp_path / "w" / "encoders").glob("*.npz"))
    assert len(files) == 1
    calls = []
    real = pre.pool_studies
    monkeypatch.setattr(pre, "pool_studies", lambda *a, **k: calls.append(1) or real(*a, **k))
    b = pre.encode_precomputed(d, "ct")
    assert calls == [] and np.array_equal(a.mean, b.mean)          # served from disk
    pre.encode_precomputed(d, "ct", max_studies=2)                 # new config -> recomputed
    d2 = task_data(c, [(1, H(-3), 1, "train")], tmp_path / "w")   # new prediction time -> recomputed
    e = pre.encode_precomputed(d2, "ct")
    assert len(calls) == 2 and e.count.tolist() == [0]
    assert len(list((tmp_path / "w" / "encoders").glob("*.npz"))) == 3


# --------------------------------------------------------------------------- timeline
def test_timeline_bins_carry_forward_and_normal_fill(tmp_path):
    from encoders.timeline import timeline_features
    HR, LAC = "LOINC/8867-4", "LOINC/2524-7"
    ev = [
        # subject 1 (train): HR at -7 h (bin 8 of 12 for a 24 h window) and -0.5 h (bin 11); two values
        # in one bin: the later wins; a future value must be ignored
        (1, H(-7.5), HR, 80.0), (1, H(-7), HR, 90.0), (1, H(-0.5), HR, 110.0), (1, H(+1), HR, 999.0),
        (1, H(-30), HR, 50.0),                               # outside the 24 h window
        # subject 2 (train): HR once at -3 h; lactate once (-1 h)
        (2, H(-3), HR, 70.0), (2, H(-1), LAC, 2.0),
        # subject 3 (held_out): nothing in the window -> normal values everywhere
        (3, H(-40), HR, 300.0),
    ]
    c = write_cohort(tmp_path / "c", ev)
    d = task_data(c, [(1, T0, 1, "train"), (2, T0, 0, "train"), (3, T0, 0, "held_out")], tmp_path / "w")
    tl = timeline_features(d, window_hours=24, bin_hours=2, min_sample_frac=0.0, cache=False)
    assert tl.codes == sorted([HR, LAC]) and tl.x.shape == (3, 12, 4)
    hr, lac = tl.codes.index(HR), tl.codes.index(LAC)
    # training stats of HR over the binned training values: 90, 110, 70
    med, mu, sd = 90.0, 90.0, np.std([90, 110, 70], ddof=1)
    raw_hr_1 = np.array([med] * 8 + [90, 90, 90, 110])       # normal fill, then value, carried forward
    np.testing.assert_allclose(tl.x[0, :, hr], (raw_hr_1 - mu) / sd, rtol=1e-5)
    np.testing.assert_array_equal(tl.x[0, :, 2 + hr], [0] * 8 + [1, 0, 0, 1])
    raw_hr_2 = np.array([med] * 10 + [70, 70])
    np.testing.assert_allclose(tl.x[1, :, hr], (raw_hr_2 - mu) / sd, rtol=1e-5)
    np.testing.assert_allclose(tl.x[2, :, hr], (med - mu) / sd, atol=1e-6)     # held-out: normal values
    assert not tl.observed[2].any() and tl.present.tolist() == [True, True, False]
    # a code with one training value: sd falls back to 1
    np.testing.assert_allclose(tl.x[1, 11, lac], 0.0, atol=1e-6)
    np.testing.assert_array_equal(tl.observed[0], [0] * 8 + [1, 0, 0, 1])
    assert tl.summary().shape == (3, 10)


# --------------------------------------------------------------------------- text
def test_notes_only_up_to_prediction_time(tmp_path):
    from encoders.text import encode_notes, encode_texts
    ev = [(1, H(-5), "NOTE/RADIOLOGY", None, "Small left pleural effusion."),
          (1, H(-1), "NOTE/RADIOLOGY", None, "No acute cardiopulmonary process."),
          (1, H(+1), "NOTE/RADIOLOGY", None, "Large right pneumothorax."),       # future
          (2, H(-1), "OTHER", None, "Not a note code."),
          (2, H(-2), "A", 1.0)]
    c = write_cohort(tmp_path / "c", ev)
    d = task_data(c, [(1, T0, 1, "train"), (2, T0, 0, "train")], tmp_path / "w")
    enc = encode_notes(d, max_notes=2, cache=False)
    ref = encode_texts(["Small left pleural effusion.", "No acute cardiopulmonary process."])
    assert enc.mean.shape == (2, 384)
    np.testing.assert_allclose(enc.mean[0], ref.mean(0), atol=1e-5)
    np.testing.assert_allclose(enc.seq[0, 0], ref[1], atol=1e-5)          # most recent first
    assert enc.count.tolist() == [2, 0] and not enc.present[1]


def test_missing_text_model_folder_is_a_user_error(tmp_path):
    from encoders.text import resolve_text_model
    with pytest.raises(UserError, match="text model folder not found"):
        resolve_text_model(tmp_path / "nope")


# --------------------------------------------------------------------------- images
def _png(path: Path, value: int, size: int = 16) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(size * size).reshape(size, size) * value % 256).astype(np.uint8)
    Image.fromarray(arr, mode="L").save(path)


@pytest.fixture()
def image_cohort(tmp_path):
    for i, v in enumerate((3, 7, 11)):
        _png(tmp_path / "c" / "images" / f"{i}.png", v)
    side = pl.DataFrame({"subject_id": [1, 1, 2], "time": [H(-3), H(+3), H(-1)],
                         "path": ["images/0.png", "images/1.png", "images/2.png"]},
                        schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "path": pl.String})
    (tmp_path / "c").mkdir(exist_ok=True)
    c = write_cohort(tmp_path / "c2", [(1, H(-100), "A", None), (2, H(-100), "A", None)], {"cxr": side})
    # images live next to the sidecar's cohort root
    import shutil
    shutil.copytree(tmp_path / "c" / "images", tmp_path / "c2" / "images")
    return task_data(c, [(1, T0, 1, "train"), (2, T0, 0, "train")], tmp_path / "w")


def test_image_encoder_refuses_without_weights(image_cohort, monkeypatch):
    from encoders.image import encode_images
    monkeypatch.delenv("MEHR_BENCH_ALLOW_RANDOM_WEIGHTS", raising=False)
    monkeypatch.delenv("MEHR_BENCH_WEIGHTS_IMAGE_RESNET50", raising=False)
    with pytest.raises(UserError, match="refuses to run with random ones"):
        encode_images(image_cohort, "image_resnet50", cache=False)
    with pytest.raises(UserError, match="not found"):
        encode_images(image_cohort, "image_resnet50", weights="/nonexistent/w.pth", cache=False)


def test_image_encoder_visible_studies_weights_roundtrip_and_determinism(image_cohort, tmp_path):
    import torch
    import torchvision
    from encoders.image import embed_image_files, encode_images
    # a weights file written from a seeded model must give the features of that model
    torch.manual_seed(123)
    net = torchvision.models.resnet50(weights=None)
    wfile = tmp_path / "resnet50.pth"
    torch.save(net.state_dict(), wfile)
    root = image_cohort.cohort.root
    feats = embed_image_files("image_resnet50", [root / "images/0.png"], wfile, image_size=32)
    net.fc = torch.nn.Identity()
    from encoders.image import IMAGE_ENCODERS, load_images
    info = IMAGE_ENCODERS["image_resnet50"]
    with torch.no_grad():
        ref = net.eval()(load_images([root / "images/0.png"], 32, info.mean, info.std)).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-5)
    # pooled per sample: subject 1 sees only image 0 (image 1 is after the prediction time)
    enc = encode_images(image_cohort, "image_resnet50", weights=wfile, image_size=32, cache=False)
    assert enc.mean.shape == (2, 2048) and enc.count.tolist() == [1, 1]
    # a batch of two images vs one: float32 convolutions may accumulate in another order (~2e-5 seen)
    np.testing.assert_allclose(enc.mean[0], feats[0], rtol=1e-4, atol=1e-4)
    # random init (allowed for tests) is seeded: identical twice
    a = encode_images(image_cohort, "image_densenet121", allow_random_init=True, image_size=32, cache=False)
    b = encode_images(image_cohort, "image_densenet121", allow_random_init=True, image_size=32, cache=False)
    assert a.mean.shape == (2, 1024) and np.array_equal(a.mean, b.mean)


def test_clip_image_tower_random_init(image_cohort):
    from encoders.image import encode_images
    enc = encode_images(image_cohort, "image_clip_vit_b32", allow_random_init=True, image_size=32, cache=False)
    assert enc.mean.shape == (2, 512) and np.isfinite(enc.mean).all()
