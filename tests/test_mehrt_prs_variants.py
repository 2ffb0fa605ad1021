"""Issue 15 items 11 and 7 (registration side): `mehrt-prs-cross` / `mehrt-prs-prefix` and the
`ehrt-<size>` size series.

The specs are read through the entry points that pyproject.toml declares (the registry's own loader,
`registry._load`), so these tests hold before the package metadata is reinstalled as well as after.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.model_api import BUDGETS
from encoders.mehrt import pipeline as P
from encoders.mehrt.register_mehrt import FIXED_SIZES
from tests.contracts.test_model_contract import build_leak_cohort, task_data_for

REPO = Path(__file__).resolve().parents[1]
BUDGET = replace(BUDGETS["smoke"], name="mehrt-prs-test")


def declared() -> dict[str, str]:
    """Model name -> entry-point target, as pyproject.toml declares them."""
    toml = tomllib.loads((REPO / "pyproject.toml").read_text())
    return toml["project"]["entry-points"][registry.ENTRY_POINT_GROUP]


@pytest.fixture(autouse=True)
def _declared_entry_points(monkeypatch):
    monkeypatch.setattr(registry, "_entry_point_modules", declared)


# ------------------------------------------------------------------------------ registration
def test_ehrt_size_series_is_registered_for_every_mehrt_size():
    """Before: only `mehrt-<size>` existed, so the scaling view had no EHRT line."""
    for size in FIXED_SIZES:
        e, m = registry.get_model(f"ehrt-{size.lower()}"), registry.get_model(f"mehrt-{size.lower()}")
        assert e.modalities == ("structured",) and e.kind == m.kind == "foundation"
        assert e.factory.keywords == {"size": size} == m.factory.keywords
        pipe = e.factory(budget=BUDGETS["default"], seed=0)
        s = pipe.settings()
        assert (s.size, s.multimodal, s.stage, s.prs_mode) == (size, False, "1", None)


def test_prs_variants_are_registered_and_mehrt_uses_cross_attention():
    cross, prefix = registry.get_model("mehrt-prs-cross"), registry.get_model("mehrt-prs-prefix")
    assert cross.factory.keywords == {"prs_mode": "cross_attention"}
    assert prefix.factory.keywords == {"prs_mode": "prefix"}
    assert cross.modalities == prefix.modalities == registry.get_model("mehrt").modalities
    smoke = BUDGETS["smoke"]
    assert cross.factory(budget=smoke).settings().prs_mode == "cross_attention"
    assert prefix.factory(budget=smoke).settings().prs_mode == "prefix"
    # plain `mehrt` uses the Genomics paper's evaluated variant (GPT-PRS-CROSS); before: prefix hard-coded
    assert registry.get_model("mehrt").factory(budget=smoke).settings().prs_mode == "cross_attention"
    assert P.default_plan("tiny", 6).prs_mode == "cross_attention"
    assert P.default_plan("tiny", 6, prs_mode="prefix").prs_mode == "prefix"
    with pytest.raises(ValueError, match="unknown MEHRT prs_mode 'film'"):
        P.settings_for(smoke, True, prs_mode="film")


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def leak(tmp_path_factory):
    root = tmp_path_factory.mktemp("prs_leak") / "cohort"
    truth = build_leak_cohort(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEHR_BENCH_CACHE", str(tmp_path_factory.mktemp("prs_cache")))
    mp.setitem(P.LEVELS, BUDGET.name, ("tiny", 4))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield root, truth, tmp_path_factory.mktemp("prs_work")
    torch.set_num_threads(threads)
    mp.undo()


def test_prs_mode_reaches_the_model_end_to_end(leak, monkeypatch):
    """`mehrt-prs-cross` and `mehrt-prs-prefix` pretrain, fit and predict in a tiny pipeline, and
    their prs_mode is the one in the pretrained model's config (distinct checkpoints)."""
    root, truth, work = leak
    data = task_data_for("binary", root, truth, work / "binary", which="signal")
    keys = {}
    for name, mode in (("mehrt-prs-cross", "cross_attention"), ("mehrt-prs-prefix", "prefix")):
        model = registry.get_model(name).factory(budget=BUDGET, seed=0).fit(data)
        cfg = model.model_.config
        assert cfg.prs_mode == mode and cfg.prs_dim == 4 and cfg.n_prs_tokens == 10
        assert [b.xattn is not None for b in model.model_.blocks] == [mode == "cross_attention"] * cfg.n_layers
        pred = model.predict(data, "held_out")
        assert len(pred.score) == data.samples("held_out").height and np.isfinite(pred.score).all()
        assert pred.info["settings"]["prs_mode"] == mode and "prs" in pred.info["modalities_used"]
        keys[mode] = model.meta_["key"]
    assert keys["cross_attention"] != keys["prefix"]
