"""`python -m benchmark scale` (encoders/mehrt/scale.py): the MEHRT paper's scaling study.

Oracles: the token rule's steps against hand arithmetic; non-embedding counts against the measured
table of encoders/mehrt/sizes.py; the summary's macro AUROC against leaderboard/scaling.py's own
`macro_points` on the same records and against scikit-learn on the predictions file; resume
against the stage trainer never being called.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.model_api import BUDGETS
from benchmark.registry import get_model
from encoders.mehrt import scale
from encoders.mehrt.scale import ScaleEntry, TokenRule, parse_rule, steps_for


def test_parse_rule():
    assert parse_rule("fixed:300k") == TokenRule("fixed", 300_000.0)
    assert parse_rule("fixed:1.5M", max_epochs=4) == TokenRule("fixed", 1_500_000.0, 4)
    assert parse_rule("chinchilla:20") == TokenRule("chinchilla", 20.0)
    assert parse_rule("fixed:614400").text() == "fixed:614400"
    assert parse_rule("chinchilla:0.5").text() == "chinchilla:0.5"
    for bad in ("fixed", "fixed:", "kaplan:20", "fixed:-3", "chinchilla:x", "fixed:0"):
        with pytest.raises(UserError):
            parse_rule(bad)
    with pytest.raises(UserError):
        parse_rule("fixed:10", max_epochs=0)


def test_steps_closed_form():
    """fixed: N / tokens per step; chinchilla: R x non-embedding / tokens per step; both capped at
    max_epochs x corpus tokens (floor), at least one step."""
    # fixed 614,400 tokens: 600 steps of 4 x 256, 150 steps of 16 x 256 (same tokens for every size)
    assert steps_for(TokenRule("fixed", 614_400), 2_360_000, 10**9, 1024) == (600, False)
    assert steps_for(TokenRule("fixed", 614_400), 100_000, 10**9, 4096) == (150, False)
    # chinchilla 20: 20 x 100,000 = 2,000,000 tokens / 4096 = 488.28 -> 488 steps
    assert steps_for(TokenRule("chinchilla", 20), 100_000, 10**9, 4096) == (488, False)
    # ... capped: 10 epochs of 863,170 tokens = 8,631,700 / 1024 = 8429.39 -> 8429 steps, instead of
    # 20 x 6,640,000 / 1024 = 129,688
    assert steps_for(TokenRule("chinchilla", 20), 6_640_000, 863_170, 1024) == (8429, True)
    assert steps_for(TokenRule("chinchilla", 20, max_epochs=2), 6_640_000, 863_170, 1024) == (1685, True)
    assert steps_for(TokenRule("fixed", 10), 1, 10**6, 4096) == (1, False)  # at least one step


def test_steps_per_size_and_non_embedding_counts():
    """Tokens per step from each size's plan; non-embedding counts match sizes.py's measured table
    (vocabulary-independent: embeddings are excluded)."""
    assert scale.tokens_per_step("tiny") == 16 * 256
    assert [scale.tokens_per_step(s) for s in ("small", "9M", "109M")] == [4 * 256] * 3
    got = {s: round(scale.non_embedding_parameters(s, v) / 1e6, 2) for s in ("tiny", "small", "9M", "28M")
           for v in (1200,)}
    assert got == {"tiny": 0.10, "small": 2.36, "9M": 6.64, "28M": 25.18}
    assert scale.non_embedding_parameters("9M", 1200) == scale.non_embedding_parameters("9M", 8192)
    # the default rule is the budget level's own Stage-1 tokens (pipeline.LEVELS)
    assert scale.default_rule("default") == TokenRule("fixed", 600 * 1024)
    assert scale.default_rule("smoke") == TokenRule("fixed", 60 * 4096)


def test_sizes_and_families_are_resolved_or_refused_by_name():
    assert scale.resolve_sizes("tiny, 9m,SMALL,tiny") == ["tiny", "9M", "small"]
    assert scale.resolve_sizes("109m,982M") == ["109M", "982M"]
    with pytest.raises(UserError, match="unknown MEHRT size '7M'"):
        scale.resolve_sizes("tiny,7M")
    assert scale.resolve_families("mehrt,ehrt") == ["mehrt", "ehrt"]
    with pytest.raises(UserError):
        scale.resolve_families("gpt")
    assert main(["scale", "--sizes", "13M"]) == 2
    assert main(["scale", "--sizes", "tiny", "--tokens-rule", "fixed"]) == 2


def test_rule_steps_reach_the_sized_spec_without_changing_run():
    """`scale` passes steps through sized_spec(size, steps=...); the registered entries (what `run
    --model ehrt-9m` builds) keep the budget's steps. Sizes without an entry are made the same way."""
    budget = BUDGETS["default"]
    assert get_model("ehrt-9m").factory(budget).settings().steps == 600
    assert get_model("mehrt-9m").factory(budget).settings().steps == 600
    for fam in ("ehrt", "mehrt"):
        e = ScaleEntry(fam, "109M", f"{fam}-109m", 100_690_000, 37, 1024, 37 * 1024, 0.1, False)
        spec = scale.spec_of(e, compile=True)
        s = spec.factory(budget).settings()
        assert (spec.name, s.size, s.steps, s.compile, s.multimodal) == (f"{fam}-109m", "109M", 37, True, fam == "mehrt")


def test_stale_cells_of_another_rule_are_named():
    class R:
        def __init__(self, model, steps, status="ok"):
            self.model, self.task, self.seed, self.status = model, "oncology/x", 0, status
            self.model_info = type("MI", (), {"model_extra": {"hyperparameters": {"pretrain_steps_stage1": steps}}})()

    entries = [ScaleEntry("ehrt", "tiny", "ehrt-tiny", 1, 5, 4096, 5 * 4096, 0.1, False)]
    assert scale.stale_cells([R("ehrt-tiny", 5), R("ehrt-small", 9), R("ehrt-tiny", 7, "failed")], entries) == []
    assert scale.stale_cells([R("ehrt-tiny", 7)], entries) == [
        "ehrt-tiny on oncology/x (seed 0): 7 Stage-1 steps, planned 5"]


@pytest.mark.slow
def test_tiny_scale_run_writes_records_summary_view_and_resumes(small_cohort, cache, tmp_path, monkeypatch,
                                                                torch_one_thread):
    """End to end on a 600-subject cohort: tiny EHRT and MEHRT, one oncology task, smoke probes.
    Records and predictions land in --results, the summary carries the scaling view's point for
    each model (equal to leaderboard/scaling.py's own computation and, with one task, to
    scikit-learn's AUROC of the predictions), and a second run pretrains nothing."""
    from encoders.mehrt import pipeline, pretrain
    from leaderboard.scaling import macro_points
    from leaderboard.views import collect

    results = tmp_path / "scale"
    task = "oncology/mortality_1y"
    args = ["scale", "--sizes", "tiny", "--tasks", task, "--budget", "smoke", "--tokens-rule", "fixed:8k",
            "--data", str(small_cohort.root), "--results", str(results)]
    assert main(args) == 0
    summary = json.loads((results / "scale_summary.json").read_text())
    assert summary["rule"] == "fixed:8000" and summary["tasks"] == [task]
    rows = {r["model"]: r for r in summary["rows"]}
    assert set(rows) == {"ehrt-tiny", "mehrt-tiny"}
    site = collect(results)[0]
    points, _ = macro_points(site.models, site.cells, site.tasks)
    for name, row in rows.items():
        assert row["steps"] == 2 and row["planned_tokens"] == 2 * 4096  # round(8000 / 4096)
        assert row["stage_steps"]["1"] == 2
        assert row["tokens_seen"]["1"] <= row["planned_tokens"]
        assert set(row["perplexity"]) == ({"1"} if name == "ehrt-tiny" else {"1", "2", "3"})
        pred = pl.read_parquet(results / name / task / "seed0.predictions.parquet")
        auroc = roc_auc_score(pred["boolean_value"].to_numpy(), pred["predicted_boolean_probability"].to_numpy())
        point = next(p for p in points if p.model == name)
        m = row["macro_auroc"]
        assert m["value"] == pytest.approx(auroc) == pytest.approx(point.value)
        assert (m["ci_low"], m["ci_high"], m["note"]) == (point.ci_low, point.ci_high, point.note)
        # 8 held-out positives here: the view refuses the interval and says why (a CI-backed number or none)
        assert m["ci_low"] is not None or "10" in m["note"]
    # MEHRT started from the very EHRT checkpoint (same steps): one Stage-1 perplexity
    assert rows["ehrt-tiny"]["perplexity"]["1"] == rows["mehrt-tiny"]["perplexity"]["1"]
    assert (results / "scale_summary.md").read_text().count("| ehrt-tiny |") == 1
    assert "<svg" in (results / "scale_plot.svg").read_text()

    # resume: finished cells are kept and, for a cell whose result is gone, cached stages are loaded
    (results / "mehrt-tiny" / task / "seed0.json").unlink()
    pipeline._MODELS.clear()
    monkeypatch.setattr(pretrain, "_train_one", lambda *a, **k: pytest.fail("a stage was pretrained again"))
    assert main(args) == 0
    again = {r["model"]: r for r in json.loads((results / "scale_summary.json").read_text())["rows"]}
    assert again["mehrt-tiny"]["perplexity"] == rows["mehrt-tiny"]["perplexity"]
    assert again["mehrt-tiny"]["cells"] == 1
    # another rule into the same folder is refused (the cells would be kept under the same names)
    assert main([*args[:-4], "--tokens-rule", "fixed:16k", "--data", str(small_cohort.root),
                 "--results", str(results)]) == 2
    assert np.isfinite(summary["corpus_tokens"])
