"""The leaderboard's scaling view (issue 15 item 7): macro-average AUROC over the oncology tasks
against parameters, EHRT and MEHRT series as two lines, 95% CI from a subject bootstrap drawn jointly
across tasks (the MEHRT paper's scaling figure, OpenReview ywFxZhMnuB).

Oracles: the macro value against scikit-learn AUROCs averaged by hand, and the interval against a
brute-force bootstrap written out here (materialised subject draws, weighted scikit-learn AUROC per
task and seed, logit-scale Wald interval).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from benchmark.metrics.evaluate import evaluate
from benchmark.results import cell_paths, write_predictions, write_result
from leaderboard import scaling
from leaderboard.views import collect
from tests._records import record

ONC = ("oncology/aki_1y", "oncology/metastasis_1y", "oncology/mortality_1y")
TASKS = {t: {"kind": "binary", "main_metric": "auroc", "version": 1, "metrics": ["auroc", "auprc"],
             "description": t, "modalities": ["ct"], "fairness": [], "references": []} for t in (*ONC, "demo/other")}
TASKS["oncology/pfs"] = {"kind": "survival", "main_metric": "c_index_harrell", "version": 1,
                         "metrics": ["c_index_harrell"], "description": "not binary", "modalities": [],
                         "fairness": [], "references": [], "horizon_days": 365.0}
PARAMS = {"ehrt-tiny": 600_000, "ehrt-small": 3_900_000, "mehrt-tiny": 800_000, "mehrt-small": 4_500_000,
          "mehrt-9m": 9_000_000, "mehrt": 4_500_000}


def _spec(name: str) -> dict:
    return {"name": name, "kind": "foundation", "description": name, "modalities": ["structured"], "requires": [],
            "task_kinds": ["binary"], "n_parameters": None, "training_data": "t", "license": "x",
            "reference": "r", "authors": "a"}


FINGERPRINT = "ab" * 32
N_SUBJECTS = 150


def _write(root: Path, model: str, task: str, seed: int, sid, y, score) -> None:
    times = [datetime(2020, 1, 1) + timedelta(days=int(s)) for s in sid]
    res = evaluate("binary", y, score, sid, n_boot=20, seed=seed)
    frame = pl.DataFrame({"subject_id": sid.astype(np.int64), "prediction_time": times,
                          "boolean_value": y.astype(bool), "predicted_boolean_probability": score})
    j, p = cell_paths(root, model, task, seed)
    write_predictions(p, frame)
    write_result(j, record(model=model, task=task, seed=seed, metrics={k: v.to_dict() for k, v in res.items()},
                           n_test=len(sid), n_events=int(y.sum()), dataset={"name": "c", "fingerprint": FINGERPRINT},
                           provenance={"data_fingerprint": FINGERPRINT},
                           compute={"n_parameters": PARAMS.get(model)}))


def plant(root: Path) -> dict:
    """Shared subjects across the oncology tasks (each task a different subset), a model strength
    per size, two seeds for mehrt-small, mehrt-9m lacking one task. Returns the oracle AUROCs."""
    rng = np.random.default_rng(3)
    subjects = np.arange(1000, 1000 + N_SUBJECTS)
    latent = rng.normal(size=N_SUBJECTS)
    strength = {"ehrt-tiny": 0.5, "ehrt-small": 1.0, "mehrt-tiny": 0.8, "mehrt-small": 1.5, "mehrt-9m": 2.0,
                "mehrt": 1.5, "gbdt": 1.0}
    oracle: dict = {}
    for ti, task in enumerate((*ONC, "demo/other")):
        keep = rng.random(N_SUBJECTS) < 0.85
        sid = subjects[keep]
        y = (latent[keep] + rng.normal(size=keep.sum()) > 0.3 * ti).astype(int)
        for model, s in strength.items():
            if model == "mehrt-9m" and task == ONC[1]:
                continue
            for seed in ((0, 1) if model == "mehrt-small" else (0,)):
                score = 1 / (1 + np.exp(-(s * (2 * y - 1) + rng.normal(size=len(y)) * 1.5)))
                _write(root, model, task, seed, sid, y, score)
                oracle.setdefault(model, {}).setdefault(task, []).append((sid, y, score))
    return oracle


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling_results")
    oracle = plant(root)
    specs = {m: _spec(m) for m in (*PARAMS, "gbdt")}
    return root, oracle, specs


def _macro_oracle(oracle: dict, model: str) -> float:
    return float(np.mean([np.mean([roc_auc_score(y, s) for _, y, s in oracle[model][t]]) for t in ONC]))


def _brute_force_ci(oracle: dict, model: str, n_boot: int, seed: int) -> tuple[float, float]:
    """Materialised joint subject bootstrap: the same draw of subjects for every task and seed."""
    subjects = np.unique(np.concatenate([sid for t in ONC for sid, _, _ in oracle[model][t]]))
    n = len(subjects)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        per_task = []
        for t in ONC:
            vals = []
            for sid, y, s in oracle[model][t]:
                w = counts[np.searchsorted(subjects, sid)]
                vals.append(roc_auc_score(y, s, sample_weight=w))
            per_task.append(np.mean(vals))
        reps.append(np.mean(per_task))
    est = _macro_oracle(oracle, model)
    lg = np.log(np.asarray(reps) / (1 - np.asarray(reps)))
    # rarer-class subjects of the weakest task (the reporting rule's support) for the small-sample factor
    m = min(min(int(y.sum()), int((1 - y).sum())) for t in ONC for _, y, _ in oracle[model][t][:1])
    half = norm.ppf(0.975) * lg.std(ddof=1) * np.sqrt(m / (m - 1))
    c = np.log(est / (1 - est))
    return float(1 / (1 + np.exp(-(c - half)))), float(1 / (1 + np.exp(-(c + half))))


def test_macro_auroc_and_joint_bootstrap_match_the_oracles(planted):
    root, oracle, specs = planted
    site = collect(root, model_specs=specs, tasks=TASKS)[0]
    assert scaling.oncology_tasks(site.tasks) == sorted(ONC)  # survival and non-oncology tasks left out
    points, notes = scaling.macro_points(site.models, site.cells, site.tasks, n_boot=60)
    by = {p.model: p for p in points}
    # unsized `mehrt` and `gbdt` are not points; mehrt-9m lacks a task and is named in a note
    assert set(by) == {"ehrt-tiny", "ehrt-small", "mehrt-tiny", "mehrt-small"}
    assert any(n.startswith("mehrt-9m: not plotted") and ONC[1] in n for n in notes)
    assert [(p.series, p.model) for p in points] == [("ehrt", "ehrt-tiny"), ("ehrt", "ehrt-small"),
                                                     ("mehrt", "mehrt-tiny"), ("mehrt", "mehrt-small")]
    for name, p in by.items():
        assert p.value == pytest.approx(_macro_oracle(oracle, name), abs=1e-12), name
        assert p.n_parameters == PARAMS[name]
        assert p.ci_low < p.value < p.ci_high and p.note is None
    for name in ("ehrt-tiny", "mehrt-small"):  # one seed / two seeds (the brute force is slow)
        lo, hi = _brute_force_ci(oracle, name, 60, scaling.SEED)
        assert (by[name].ci_low, by[name].ci_high) == pytest.approx((lo, hi), abs=1e-9), name
    # the macro interval is not the mean of the cells' intervals (those come from other resamples)
    cells = [site.cells[("mehrt-tiny", t)].main for t in ONC]
    mean_of_cis = (np.mean([c["ci_low"] for c in cells]), np.mean([c["ci_high"] for c in cells]))
    assert (by["mehrt-tiny"].ci_low, by["mehrt-tiny"].ci_high) != pytest.approx(mean_of_cis, abs=1e-6)


def test_identical_tasks_give_the_single_tasks_interval():
    """Joint draws: K copies of one task have the macro interval of that task alone (independent
    draws per task would shrink it by about sqrt(K))."""
    rng = np.random.default_rng(0)
    sid = np.arange(200)
    y = (rng.random(200) < 0.4).astype(int)
    s = y + rng.normal(size=200)
    frame = pl.DataFrame({"subject_id": sid, "boolean_value": y.astype(bool), "predicted_boolean_probability": s})
    one = scaling.joint_bootstrap({"a": [frame]}, n_boot=300)
    three = scaling.joint_bootstrap({"a": [frame], "b": [frame], "c": [frame]}, n_boot=300)
    assert three[:3] == pytest.approx(one[:3], abs=1e-12)


def test_missing_predictions_give_the_point_without_a_ci(tmp_path):
    plant(tmp_path)
    next((tmp_path / "ehrt-tiny").rglob("*.predictions.parquet")).unlink()
    site = collect(tmp_path, model_specs={m: _spec(m) for m in PARAMS}, tasks=TASKS)[0]
    points, _ = scaling.macro_points(site.models, site.cells, site.tasks, n_boot=50)
    p = next(p for p in points if p.model == "ehrt-tiny")
    assert p.ci_low is None and p.ci_high is None and p.note.startswith("CI not computed")
    assert 0.5 < p.value < 1.0


def test_scaling_view_renders_two_lines(planted, tmp_path):
    from leaderboard.build import build

    root, _, specs = planted
    out = tmp_path / "site"
    build(root, out, model_specs=specs, tasks=TASKS)
    index = (out / "index.html").read_text()
    assert "Oncology: macro-average AUROC vs parameters" in index and 'id="scaling-oncology"' in index
    section = index[index.index('id="scaling-oncology"'):]
    svg = section[section.index("<svg"):section.index("</svg>")]
    assert svg.count('class="line"') == 2  # EHRT and MEHRT lines
    assert ">ehrt<" in svg and ">mehrt<" in svg
    assert svg.count('class="err"') == 4  # a CI bar per point
    assert "mehrt-9m: not plotted" in section and "subject bootstrap" in section
