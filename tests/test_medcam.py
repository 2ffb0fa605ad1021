"""MedCAM (Modular Multimodal Alignment Using Time-Series EHR Data for Enhancing Medical Image
Classification) and its image-only baselines: the paper's losses against hand computations, the
adapted encoder, weights files, the EHR-free predict path, the planted CXR signal, image folders."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.labels import extract_labels
from benchmark.metrics.multilabel import auroc_macro
from benchmark.model_api import BUDGETS, TaskData
from benchmark.task_registry import load_tasks

torch = pytest.importorskip("torch")

TASK = "cxr/chexpert_multilabel"
BUDGET = dataclasses.replace(BUDGETS["smoke"], name="test", n_trials=1, n_folds=3, max_iterations=25, n_boot=50)


# ------------------------------------------------------------------ losses (oracles: plain Python)
def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


C = [[1.0, 0.0], [0.6, 0.8]]                                      # B = 2 images, D = 2
E = [[[1.0, 0.2], [0.0, 1.0], [-1.0, 0.5]],                        # t = 3 steps of patient 0
     [[0.3, 0.9], [1.0, -0.4], [0.5, 0.5]]]                        # patient 1


def test_local_loss_equals_hand_computation_on_2x3():
    from encoders.medcam.losses import attention_topk, local_loss
    tau, k = 0.5, 2
    # top-k by attention = the k steps most similar to the image (softmax keeps the order)
    top = [sorted(range(3), key=lambda j: -_cos(C[b], E[b][j]))[:k] for b in range(2)]
    l6a = l6b = 0.0
    for b in range(2):
        for j in top[b]:
            num = math.exp(_cos(C[b], E[b][j]) / tau)
            l6a -= math.log(num / sum(math.exp(_cos(C[b], E[b][jj]) / tau) for jj in range(3)))
            l6b -= math.log(num / sum(math.exp(_cos(E[b][j], C[bb]) / tau) for bb in range(2)))
    want = 0.5 * (l6a / (2 * k) + l6b / (2 * k))
    c, e = torch.tensor(C), torch.tensor(E)
    got = float(local_loss(c, e, k=k, tau=tau))
    assert got == pytest.approx(want, rel=1e-6)
    assert got == pytest.approx(0.856137, abs=1e-5)               # the same number, written down once
    a, idx = attention_topk(c, e, k)
    assert a.shape == (2, 3) and torch.allclose(a.sum(1), torch.ones(2))
    assert [sorted(r) for r in idx.tolist()] == [sorted(r) for r in top]
    # k larger than t is capped at t
    assert math.isfinite(float(local_loss(c, e, k=10, tau=tau)))


def test_global_loss_is_the_symmetric_infonce_of_eq_3_to_5():
    from encoders.medcam.losses import global_loss
    tau = 0.3
    zc = [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [-0.5, 0.4, 1.0]]
    ze = [[0.9, 0.1, 0.4], [0.0, -1.0, 0.2], [0.3, 0.3, 0.8]]
    s = [[_cos(zc[i], ze[j]) / tau for j in range(3)] for i in range(3)]
    c2e = -sum(math.log(math.exp(s[i][i]) / sum(math.exp(s[i][j]) for j in range(3))) for i in range(3)) / 3
    e2c = -sum(math.log(math.exp(s[i][i]) / sum(math.exp(s[j][i]) for j in range(3))) for i in range(3)) / 3
    got = float(global_loss(torch.tensor(zc), torch.tensor(ze), tau))
    assert got == pytest.approx(0.5 * (c2e + e2c), rel=1e-6)


def test_nt_xent_matches_a_direct_computation():
    from encoders.medcam.losses import nt_xent
    z1, z2 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.randn(4, 3)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    tot = 0.0
    for i in range(8):
        pos = (i + 4) % 8
        den = sum(math.exp(float(z[i] @ z[j]) / 0.2) for j in range(8) if j != i)
        tot -= math.log(math.exp(float(z[i] @ z[pos]) / 0.2) / den)
    assert float(nt_xent(z1, z2, 0.2)) == pytest.approx(tot / 8, rel=1e-5)


# ------------------------------------------------------------------ encoder, alignment, weights
def test_alignment_updates_the_image_encoder(torch_one_thread):
    """The old medcam kept a frozen precomputed embedding; MedCAM adapts the image encoder itself."""
    from encoders.medcam.cnn import make_cnn
    from encoders.medcam.pretrain import align
    rng = np.random.default_rng(0)
    cnn = make_cnn()
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    out = align(cnn, rng.integers(0, 255, (16, 64, 64), dtype=np.uint8),
                rng.normal(size=(16, 24, 6)).astype(np.float32), epochs=1, seed=0, k=10, batch_size=8)
    assert out["epochs"] == 1 and out["n_pairs"] == 16
    changed = [k for k, v in cnn.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(k.startswith("stem.0") for k in changed) and any(k.startswith("blocks.3") for k in changed)


def test_weights_file_round_trip(tmp_path):
    from encoders.medcam.cnn import load_encoder, make_cnn, save_encoder, to_tensor
    torch.manual_seed(1)
    a = make_cnn().eval()
    path = save_encoder(a, tmp_path / "enc.pt")
    torch.manual_seed(2)
    b = load_encoder(make_cnn(), path).eval()
    x = to_tensor(np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    torch.save({"model": {"module." + k: v for k, v in a.state_dict().items()}}, tmp_path / "wrapped.pt")
    load_encoder(make_cnn(), tmp_path / "wrapped.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="do not fit"):
        load_encoder(make_cnn(), tmp_path / "bad.pt")
    with pytest.raises(UserError, match="not found"):
        load_encoder(make_cnn(), tmp_path / "missing.pt")


# ------------------------------------------------------------------ fitted models on a small cohort
@pytest.fixture(scope="module")
def cxr_data(tmp_path_factory) -> TaskData:
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("medcam") / "cohort"
    generate(root, n_subjects=600, seed=1, images=True)
    task = load_tasks()[TASK]
    cohort = Cohort(root)
    lab = extract_labels(task, cohort).labels.join(cohort.splits, on="subject_id").sort("subject_id", "prediction_time")
    return TaskData(task=task, cohort=cohort, labels=lab, seed=0, work_dir=root.parent / "work")


@pytest.fixture(scope="module")
def fitted(cxr_data):
    from encoders.models.cxr_supervised import make as make_sup
    from encoders.models.medcam import make as make_medcam
    torch.set_num_threads(1)
    return {"medcam": make_medcam(budget=BUDGET, seed=0).fit(cxr_data),
            "cxr_supervised": make_sup(budget=BUDGET, seed=0).fit(cxr_data)}


@pytest.mark.slow  # fits CNNs on a 600-subject cohort with images (~1-2 min on two cores)
def test_planted_cxr_signal_is_learned(fitted, cxr_data):
    """The synthetic CXR draws each finding into the image: both models beat chance held-out."""
    y = cxr_data.y("held_out")
    for name, m in fitted.items():
        assert auroc_macro(y, m.predict(cxr_data, "held_out").score) > 0.7, name
    info = fitted["medcam"].info_
    assert info["alignment"]["n_pairs"] > 10 and info["alignment"]["k"] == 10   # EHR rows did take part
    assert info["base_encoder"] == "SimCLR on the training images"


@pytest.mark.slow  # fits CNNs on a 600-subject cohort with images (~1-2 min on two cores)
def test_medcam_predict_reads_no_ehr(fitted, cxr_data, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("EHR read at prediction time")
    before = fitted["medcam"].predict(cxr_data, "held_out").score
    monkeypatch.setattr(TaskData, "visible_events", boom)
    monkeypatch.setattr("encoders.timeline.timeline_features", boom)
    monkeypatch.setattr("encoders.medcam.ehr_lstm.make_ehr_lstm", boom)
    p = fitted["medcam"].predict(cxr_data, "held_out")
    np.testing.assert_array_equal(p.score, before)
    assert p.info["modalities_used"] == ["cxr"]


@pytest.mark.slow  # fits CNNs on a 600-subject cohort with images (~1-2 min on two cores)
def test_predict_images_equals_predict_on_the_same_files(fitted, cxr_data):
    m = fitted["medcam"]
    held = cxr_data.samples("held_out")
    side = cxr_data.cohort.modality("cxr").select("subject_id", "time", "path").collect()
    rows = held.join(side, left_on=["subject_id", "prediction_time"], right_on=["subject_id", "time"], how="left")
    assert rows["path"].null_count() == 0                            # one study per sample, at its time
    paths = [cxr_data.cohort.root / p for p in rows["path"].to_list()]
    np.testing.assert_allclose(m.predict_images(paths), m.predict(cxr_data, "held_out").score, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # fits CNNs on a 600-subject cohort with images (~1-2 min on two cores)
def test_medcam_starts_from_a_local_weights_file(cxr_data, tmp_path, monkeypatch):
    from encoders.medcam.cnn import WEIGHTS_ENV, make_cnn, save_encoder
    from encoders.models.medcam import make
    path = save_encoder(make_cnn(), tmp_path / "base.pt")
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    tiny = dataclasses.replace(BUDGET, max_iterations=5)
    m = make(budget=tiny, seed=0).fit(cxr_data)
    assert m.info_["base_encoder"] == "weights file base.pt" and "simclr" not in m.info_


def _export_folder(cohort_root, out):
    """A CheXpert-style folder written by hand from a cohort's cxr sidecar (labels column)."""
    task = load_tasks()[TASK]
    side = pl.read_parquet(cohort_root / "modalities" / "cxr.parquet")
    (out / "img").mkdir(parents=True)
    names = list(task.label_names())
    rows = {"Path": []} | {n: [] for n in names}
    for i, (p, lab) in enumerate(zip(side["path"].to_list(), side["labels"].to_list())):
        shutil.copy(cohort_root / p, out / "img" / f"{i}.png")
        rows["Path"].append(f"img/{i}.png")
        for n, v in zip(names, lab):
            rows[n].append("" if i % 7 == 0 and n == names[0] else str(int(v)))   # some blanks
    pl.DataFrame(rows).write_csv(out / "labels.csv")
    return out


@pytest.mark.slow  # fits CNNs on a 600-subject cohort with images (~1-2 min on two cores)
def test_ood_scoring_on_an_image_folder_from_another_cohort(fitted, tmp_path):
    from data_prep.synthetic import generate
    from benchmark.external_images import open_image_folder, score_images
    other = generate(tmp_path / "other", n_subjects=200, seed=5, images=True)
    folder = open_image_folder(_export_folder(other, tmp_path / "folder"))
    task = load_tasks()[TASK]
    assert len(folder.paths) == folder.labels.shape[0]
    # the benchmark's image-folder path (run --external-data) scores medcam's predict_images
    res, frame = score_images(fitted["medcam"], task, folder, n_boot=50, seed=0)
    m = res["metrics"]["auroc_macro"]
    assert 0.6 < m["value"] <= 1 and frame.height == len(folder.paths)
    # a 200-subject folder may have too few positives of some finding for a CI: then it is refused, never made up
    assert (m["ci_low"] is None and m["ci_high"] is None) or m["ci_low"] <= m["value"] <= m["ci_high"]
    bad = tmp_path / "bad"
    bad.mkdir()
    pl.DataFrame({"Path": ["a.png"], "edema": ["1"]}).write_csv(bad / "labels.csv")
    with pytest.raises(UserError):
        score_images(fitted["medcam"], task, open_image_folder(bad), n_boot=50, seed=0)
