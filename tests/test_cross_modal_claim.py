"""The benchmark's headline self-check on the default cohort: on the tasks whose risk the simulator
splits between an image and the structured record (MACE, PE mortality, oncology death / progression /
metastasis; data_prep/README.md), the fusion head `concat_lr` beats the best single-source probe
per task, pooled over the five tasks with a 95 % CI above 0.

The "best" single source is chosen per task on the held-out metric itself (`compare --b x,y,z`), which
tilts the test towards the probes. A fusion head that stops combining sources (or a generator whose
cross-modal signal fades) fails here.
"""

from __future__ import annotations

import pytest

TASKS = ("survival/mace,survival/pe_mortality,oncology/mortality_1y,oncology/progression_free_survival_1y,"
         "oncology/metastasis_1y")
PROBES = "probe_ct,probe_structured,probe_wsi"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]


def test_fusion_beats_best_single_source_on_planted_cross_modal_tasks(default_cohort, tmp_path):
    from benchmark.runner import run_grid
    from leaderboard.compare import compare
    res = tmp_path / "results"
    assert run_grid("concat_lr," + PROBES, TASKS, default_cohort, res, budget="smoke") == 0
    out = compare(res, "concat_lr", PROBES, tasks="all", n_boot=500)
    assert {r["task"] for r in out["rows"]} == set(TASKS.split(","))
    pooled = out["meta"]["discrimination"]
    assert pooled["k"] == 5
    assert pooled["fixed"]["ci_low"] > 0, (pooled["fixed"], [(r["task"], r["model_b"], r["delta"])
                                                            for r in out["rows"]])
