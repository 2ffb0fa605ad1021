"""The model page's perplexity table: held-out perplexity by pretraining stage and size, from the
`pretraining` block MEHRT-family records carry (encoders/mehrt/pipeline.py), as the MEHRT paper's
generative comparison (OpenReview ywFxZhMnuB, Fig. 3b: EHRT, S2, S3, S3-Joint per size)."""

from __future__ import annotations

import re

from benchmark.results import cell_paths, write_result
from tests._records import record

FP = "ab" * 32


def _stage(ppl: float, steps: int, size: str, tokens: int = 5000, n_par: int = 2_000_000) -> dict:
    return {"steps": steps, "held_out_perplexity": ppl, "perplexity_tokens": tokens, "documents": 100,
            "size": size, "n_parameters": n_par, "tokens_per_s": 1000.0, "train_seconds": 3.0}


def _write(root, model, pretraining: dict | None, auroc: float = 0.7):
    info = {"kind": "foundation", "modalities": ["structured"], "reference": "r"}
    if pretraining is not None:
        info["pretraining"] = pretraining
    rec = record(model=model, task="demo/mortality", metrics={"auroc": {"value": auroc, "ci_low": auroc - 0.05,
                                                                          "ci_high": auroc + 0.05}},
                 model_info=info, provenance={"data_fingerprint": FP})
    write_result(cell_paths(root, model, "demo/mortality", 0)[0], rec)


def test_model_page_shows_perplexity_by_stage_and_size(tmp_path):
    from leaderboard.build import build
    root = tmp_path / "res"
    _write(root, "ehrt", {"1": _stage(5.5, 60, "tiny")})
    _write(root, "mehrt", {"1": _stage(5.5, 60, "tiny"), "2": _stage(5.4, 30, "tiny"), "3": _stage(5.25, 30, "tiny")})
    _write(root, "mehrt-joint", {"1": _stage(5.5, 60, "tiny"), "3joint": _stage(5.125, 60, "tiny")})
    _write(root, "mehrt-small", {"1": _stage(4.75, 600, "small", n_par=9_000_000),
                                 "2": _stage(4.5, 300, "small", n_par=9_000_000),
                                 "3": _stage(4.25, 300, "small", tokens=4000, n_par=9_000_000)})
    _write(root, "gbdt", None)
    out = build(root, tmp_path / "site", model_specs={}, tasks={})
    page = (out / "models" / "mehrt.html").read_text()
    assert "Held-out perplexity by pretraining stage" in page
    table = re.search(r'<table class="board perplexity">(.*?)</table>', page, re.S).group(1)
    heads = re.findall(r'<th scope="col">(.*?)</th>', table)
    assert heads[3:7] == ["Stage 1 (EHRT)", "Stage 2", "Stage 3", "Stage 3-Joint"]
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(.*?)</th>(.*?)</tr>", table, re.S)
    assert [r[0] for r in rows] == ["tiny", "small"]  # by parameters
    tiny = re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1], re.S)
    # parameters, steps, S1 (from ehrt / mehrt / mehrt-joint), S2, S3, S3-Joint (bold: lowest), tokens, from
    assert tiny[1:6] == ["60", "5.500", "5.400", "5.250", "<strong>5.125</strong>"]
    assert tiny[6] == "5000" and tiny[7] == "ehrt, mehrt, mehrt-joint"
    small = re.findall(r"<td[^>]*>(.*?)</td>", rows[1][1], re.S)
    assert small[1:6] == ["600", "4.750", "4.500", "<strong>4.250</strong>", "&mdash;"]
    assert small[6] == "differs"  # a stage scored on other target tokens is flagged, not silently compared
    # the same table on ehrt's page; none on a model without pretraining
    assert "Held-out perplexity by pretraining stage" in (out / "models" / "ehrt.html").read_text()
    assert "perplexity" not in (out / "models" / "gbdt.html").read_text()
