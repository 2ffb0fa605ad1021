"""Every task yields usable labels on the embedded default cohort, and `tasks --json` lists them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmark.labels import extract_labels
from benchmark.model_api import TaskData
from benchmark.task_registry import load_tasks

TASKS = load_tasks()
REQUIRED = ["oncology/mortality_1y", "oncology/progression_free_survival_1y", "oncology/metastasis_1y",
            "oncology/aki_1y", "oncology/neutropenic_fever_1y", "oncology/transfusion_1y", "icu/mortality_24h",
            "icu/los_gt3d_24h", "icu/los_days_24h", "cxr/chexpert_multilabel", "survival/pe_mortality",
            "survival/mace", "onset/t2d_10y"]


def test_tasks_json_lists_every_required_task():
    r = subprocess.run([sys.executable, "-m", "benchmark", "tasks", "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {t["name"]: t for t in json.loads(r.stdout)}
    for name in REQUIRED:
        assert name in rows
        assert {"kind", "modalities", "version", "description"} <= set(rows[name])
    assert rows["icu/los_days_24h"]["kind"] == "regression"
    assert rows["survival/mace"]["kind"] == "survival"
    assert rows["cxr/chexpert_multilabel"]["kind"] == "multilabel"


# Replicas of real-data benchmarks whose outcome the synthetic cohort barely simulates (proven on the
# MIMIC-IV demo instead: tests/test_meds_dev_replicas.py)
NOT_ON_SYNTHETIC = {"meds_dev/readmission_30d": "the synthetic cohort has ~1% 30-day readmissions"}
NOT_ON_SYNTHETIC.update({n: "imported from MEDS-DEV abnormal_lab: the synthetic map lacks its lab names (proven on "
                            "the MIMIC-IV demo: tests/test_aces_import.py)" for n, t in TASKS.items()
                         if any(r.startswith("adapted from MEDS-DEV abnormal_lab/") for r in t.references)})


@pytest.mark.parametrize("name", sorted(TASKS))
def test_labels_are_non_degenerate_on_default_cohort(name, default_cohort, tmp_path):
    if name in NOT_ON_SYNTHETIC:
        pytest.skip(NOT_ON_SYNTHETIC[name])
    task = TASKS[name]
    labels = extract_labels(task, default_cohort).labels.join(default_cohort.splits, on="subject_id")
    assert labels.height >= 200, f"{name}: only {labels.height} samples"
    test = labels.filter(labels["split"] == "held_out")
    data = TaskData(task, default_cohort, labels, 0, tmp_path)
    if task.kind == "binary":
        for split in ("train", "held_out"):
            y = data.y(split)
            assert 0.02 <= y.mean() <= 0.80, f"{name} {split}: event rate {y.mean():.3f}"
        assert data.y("held_out").sum() >= 20
    elif task.kind == "survival":
        y = data.y("held_out")
        assert 0.02 <= y[:, 1].mean() <= 0.80 and y[:, 1].sum() >= 20, "needs events and censoring"
        assert (y[:, 0] > 0).all()
    elif task.kind == "multilabel":
        Y = data.y("held_out")
        assert Y.shape[1] == 14
        rates = Y.mean(axis=0)
        assert (rates > 0).all() and (rates < 1).all(), dict(zip(task.label_names(), rates.round(3)))
    else:
        y = data.y("held_out")
        assert np.isfinite(y).all() and y.std() > 0 and (y > 0).all()
    assert test.height >= 50
