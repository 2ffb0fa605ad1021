"""Leaderboard honesty (issue 12 item 12): every model statistically tied with the best is marked
(paired bootstrap against the best, the oracle being `benchmark.stats.paired_bootstrap` itself),
the leak probe is a pass / fail audit outside the rankings and averages, cells with too few test
events are not ranked, and results of two datasets are never mixed in one table.

The result files are planted here (metrics from `benchmark.metrics.evaluate` on simulated scores).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.metrics.evaluate import evaluate
from benchmark.results import cell_paths, write_predictions, write_result
from tests._records import record

FP_A = "a1" * 32
FP_B = "b2" * 32
TASKS = {
    "demo/mortality": {"kind": "binary", "main_metric": "auroc", "version": 1, "metrics": ["auroc", "auprc"],
                       "description": "d", "modalities": [], "fairness": [], "references": []},
    "demo/readmission": {"kind": "binary", "main_metric": "auroc", "version": 1, "metrics": ["auroc", "auprc"],
                         "description": "d", "modalities": [], "fairness": [], "references": []},
    "icu/los_gt3d": {"kind": "binary", "main_metric": "auroc", "version": 1, "metrics": ["auroc", "auprc"],
                     "description": "d", "modalities": [], "fairness": [], "references": []},
    "leak/probe": {"kind": "binary", "main_metric": "auroc", "version": 1, "metrics": ["auroc", "auprc"],
                   "description": "planted leak probe", "modalities": [], "fairness": [], "references": []},
}


def write_cell(root: Path, model: str, task: str, y: np.ndarray, score: np.ndarray, *, seed: int = 0,
               sid: np.ndarray | None = None, fingerprint: str = FP_A, cohort: str = "/data/cohort-a",
               metrics: dict | None = None, n_events: int | None = None, extra: dict | None = None) -> None:
    """A result JSON + predictions parquet as the runner writes them (metrics from `evaluate` unless
    given)."""
    n = len(y)
    sid = np.arange(9_000_000, 9_000_000 + n) if sid is None else sid
    if metrics is None:
        metrics = {k: v.to_dict() for k, v in evaluate("binary", y, score, sid, n_boot=300, seed=seed).items()}
    t0 = datetime(2019, 3, 1)
    frame = pl.DataFrame({"subject_id": sid.astype(np.int64),
                          "prediction_time": [t0 + timedelta(hours=int(i)) for i in range(n)],
                          "boolean_value": y.astype(bool), "predicted_boolean_probability": score.astype(float)})
    j, p = cell_paths(root, model, task, seed)
    write_predictions(p, frame)
    # version-1 files: the dataset is derived from the cohort folder (its dataset.json name) on reading
    rec = record(**{"schema_version": 1, "model": model, "task": task, "task_version": 1, "task_kind": "binary",
                    "seed": seed, "status": "ok", "main_metric": "auroc", "metrics": metrics, "n_train": 500,
                    "n_tuning": 100, "n_test": n, "n_events": int(y.sum()) if n_events is None else n_events,
                    "fairness": {"attributes": {}, "notes": []},
                    "model_info": {"kind": "baseline", "modalities": ["structured"]},
                    "provenance": {"package_version": "0.1.0", "data_fingerprint": fingerprint, "cohort": cohort},
                    "compute": {"wall_s": 1.0, "peak_rss_mb": 10.0, "device": "cpu", "n_parameters": None},
                    **(extra or {})})
    write_result(j, rec)


def _scores(y: np.ndarray, strength: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(strength * (y - 0.5) + rng.normal(size=len(y)))))


def _build(root: Path, out: Path) -> Path:
    from leaderboard.build import build
    return build(root, out, model_specs={}, tasks=TASKS)


def _row(html: str, model: str) -> str:
    """The <tr> of a model in the first table of `html` that has one."""
    for tr in re.findall(r"<tr\b[^>]*>.*?</tr>", html, re.S):
        if f'<th scope="row" data-v="{model}">' in tr:
            return tr
    raise AssertionError(f"no row for {model}")


def _results_table(page: str) -> str:
    """The task page's Results table."""
    return page.split("<h2>Results</h2>")[1].split("</table>")[0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Dataset A: three models on demo/mortality (best, a near-copy of the best, a weak one), the
    leak probe (one leaking model), and a tiny icu task; models b/c on demo/readmission."""
    root = tmp_path_factory.mktemp("honest")
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=400) < 0.3).astype(int)
    best = _scores(y, 2.0, 1)
    # "near": as strong as the best, other noise: a slightly lower AUROC, statistically tied
    near = _scores(y, 2.0, 10)
    weak = _scores(y, 0.3, 3)
    for model, s in (("m_best", best), ("m_near", near), ("m_weak", weak)):
        write_cell(root, model, "demo/mortality", y, s)
        write_cell(root, model, "demo/readmission", y, _scores(y, 1.0, hash(model) % 100))
    # leak probe: m_weak "reads the future" (AUROC 1, so no bootstrap CI: the rank test decides);
    # the other two are honest (~0.5)
    yl = (rng.uniform(size=300) < 0.3).astype(int)
    write_cell(root, "m_weak", "leak/probe", yl, _scores(yl, 6.0, 4))
    write_cell(root, "m_best", "leak/probe", yl, np.random.default_rng(5).uniform(size=300))
    write_cell(root, "m_near", "leak/probe", yl, np.random.default_rng(6).uniform(size=300))
    # a 100-subject real cohort's LOS cell: n test 7, 2 with the outcome, AUROC 0.000 (the case)
    y7 = np.array([1, 1, 0, 0, 0, 0, 0])
    s7 = np.array([0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.9])
    write_cell(root, "m_near", "icu/los_gt3d", y7, s7,
               metrics={"auroc": {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "method": "percentile"},
                        "auprc": {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3, "method": "percentile"}})
    write_cell(root, "m_best", "icu/los_gt3d", y7, s7[::-1].copy(),
               metrics={"auroc": {"value": 1.0, "ci_low": None, "ci_high": None, "method": "percentile",
                                  "ci_note": "CI not reported: 2 positive subjects (needs >= 10)"}})
    return root, {"y": y, "best": best, "near": near, "weak": weak}


@pytest.fixture(scope="module")
def site(planted, tmp_path_factory):
    return _build(planted[0], tmp_path_factory.mktemp("site") / "lb")


# =========================================================================== ties
def test_every_model_tied_with_the_best_is_starred(site, planted):
    """Old behaviour: one star, on the best point estimate, although m_near's AUROC differs from the
    best's by far less than its CI. Now m_near is starred (paired test: CI covers 0) and m_weak is not."""
    from benchmark.stats.paired import paired_bootstrap
    from leaderboard.rules import TIE_N_BOOT, TIE_SEED
    _, d = planted
    sid = np.arange(9_000_000, 9_000_000 + len(d["y"]))
    near = paired_bootstrap(d["y"], d["best"], d["near"], sid, metric="auroc", n_boot=TIE_N_BOOT, seed=TIE_SEED)
    weak = paired_bootstrap(d["y"], d["best"], d["weak"], sid, metric="auroc", n_boot=TIE_N_BOOT, seed=TIE_SEED)
    assert near.delta > 0 and near.ci_low <= 0 <= near.ci_high, "the planted near-copy must be a tie"
    assert weak.ci_low > 0 and weak.p_value < 0.05, "the planted weak model must be significantly worse"
    page = (site / "tasks" / "demo--mortality.html").read_text()
    table = _results_table(page)
    assert 'aria-label="best in column"' in _row(table, "m_best")
    assert 'aria-label="tied with the best"' in _row(table, "m_near")
    assert "&#9733;" not in _row(table, "m_weak")
    # the test's numbers are on the page (hover text) and match the oracle
    assert f"{-near.delta:+.3f}" in page or f"{near.delta:+.3f}" in page
    # the rule is stated on the index and the task page
    index = (site / "index.html").read_text()
    for html in (index, page):
        assert "statistically tied" in html and "paired" in html
    # index: both m_best and m_near cells carry the star, m_weak's does not
    fam = index.split('data-family="demo"')[1].split("</table>")[0]

    def mortality(model):  # cells: kind, modalities, demo/mortality, demo/readmission, macro, mean rank
        return re.findall(r"<td\b.*?</td>", _row(fam, model), re.S)[2]
    assert "&#9733;" in mortality("m_best") and "&#9733;" in mortality("m_near")
    assert "&#9733;" not in mortality("m_weak")


def test_tie_rule_handles_unreported_paired_results():
    """A paired result without CI / p (too few events, the new `benchmark.stats` rule) counts as tied,
    with the note (small counts redacted), instead of crashing or claiming a winner."""
    from leaderboard.records import Cell, TaskInfo
    from leaderboard.rules import tie_with_best
    t = TaskInfo(name="x/y", slug="x--y", family="x", short="y", kind="binary", main_metric="c_index_uno",
                 version=1, description="", modalities=[], fairness=[], references=[], metrics=(),
                 label_names=[], horizon_days=None, registered=False)

    def cell(model, v, lo, hi):
        return Cell(model=model, task="x/y", status="ok", seeds=[0], n_ok=1, metrics={},
                    main={"value": v, "ci_low": lo, "ci_high": hi}, records=[], compute={}, n_test=100,
                    n_events=40)
    # no paired kernel for Uno's C: the CI-overlap fallback, which says so
    tied, how = tie_with_best(cell("a", 0.8, 0.75, 0.85), cell("b", 0.7, 0.65, 0.74), t)
    assert not tied and "do not overlap" in how and "no paired test" in how
    tied, how = tie_with_best(cell("a", 0.8, 0.75, 0.85), cell("b", 0.78, 0.70, 0.8), t)
    assert tied and "overlap" in how
    tied, how = tie_with_best(cell("a", 0.8, None, None), cell("b", 0.7, 0.6, 0.8), t)
    assert tied and "no CI" in how


# =========================================================================== leak probe
def test_leak_probe_is_an_audit_not_a_ranking(site):
    """Old behaviour: leak/probe was a family table like any task, its best (the leaking model!)
    starred and ranked #1, and it entered the mean rank. Now it is an audit with pass / fail."""
    index = (site / "index.html").read_text()
    assert 'data-family="leak"' not in index
    audit = index.split('id="audits"')[1].split("</section>")[0]
    verdicts = {m: re.search(r'class="verdict (\w+)"', _row(audit, m)).group(1) for m in ("m_best", "m_near", "m_weak")}
    assert verdicts == {"m_best": "pass", "m_near": "pass", "m_weak": "fail"}
    assert "contains 0.5" in audit and "[" in _row(audit, "m_best")  # the CI is shown with the verdict
    assert "Mann-Whitney" in _row(audit, "m_weak") and "every resample" in _row(audit, "m_weak")
    page = (site / "tasks" / "leak--probe.html").read_text()
    table = _results_table(page)
    assert "is an audit" in page and "&#9733;" not in table and ">1<" not in table
    assert 'class="verdict fail"' in _row(table, "m_weak") and 'class="verdict pass"' in _row(table, "m_best")
    card = (site / "models" / "m_weak.html").read_text()
    assert "audit:" in card and 'class="verdict fail"' in card
    # mean rank of m_weak counts demo tasks only (2 ranks), never the probe
    fam = index.split('data-family="demo"')[1].split("</table>")[0]
    assert '<span class="ci">(2)</span>' in _row(fam, "m_weak")


def test_audit_verdict_rule():
    from leaderboard.records import Cell
    from leaderboard.rules import audit_verdict

    def cell(lo, hi, note=None):
        return Cell(model="m", task="leak/probe", status="ok", seeds=[0], n_ok=1, metrics={},
                    main={"value": 0.5, "ci_low": lo, "ci_high": hi, "ci_note": note}, records=[], compute={},
                    n_test=100, n_events=30)
    assert audit_verdict(cell(0.45, 0.58))[0] == "pass"
    assert audit_verdict(cell(0.501, 0.6))[0] == "fail"
    assert audit_verdict(cell(0.3, 0.45))[0] == "pass"
    v, why = audit_verdict(cell(None, None, "CI not reported: <10 positive subjects"))
    assert v == "inconclusive" and "not reported" in why  # no predictions to test either


# =========================================================================== too few events
def test_cells_with_few_test_events_are_not_ranked(site):
    """Old behaviour: n = 7 LOS cell shown as "0.000 [0.000, 0.000]" with rank #1 and a star. Now
    it is unranked with the reason, its n is "<10" and nothing in the column gets a star."""
    index = (site / "index.html").read_text()
    fam = index.split('data-family="icu"')[1].split("</table>")[0]
    assert "&#9733;" not in fam and "#1" not in fam
    assert fam.count('<span class="tag">unranked</span>') == 2
    # the older file's CI "[0.000, 0.000]" on 2 events is not shown: too few for any interval
    assert "[0.000, 0.000]" not in fam and "CI not reported: fewer than 10 test subjects" in fam
    assert "fewer than 10 test subjects with the outcome" in index  # "Not ranked" list with the reason
    page = (site / "tasks" / "icu--los_gt3d.html").read_text()
    assert "&#9733;" not in _results_table(page) and "not ranked: fewer than 10 test subjects" in page
    assert "&lt;10" in page and ">7<" not in page
    # the CI note is shown instead of a CI, with its small count redacted
    assert "CI not reported: &lt;10 positive subjects (needs &gt;= 10)" in page
    assert "2 positive" not in page
    # an unranked cell enters no macro average: icu has one task, so no macro value for its models
    assert 'title="1 task(s) missing or unranked"' in fam


# =========================================================================== datasets
def test_dataset_shown_on_every_page(site):
    for p in sorted(site.rglob("*.html")):
        text = p.read_text()
        assert "Dataset: <strong>cohort-a</strong>" in text, p
        assert FP_A[:16] in text, p


def test_two_datasets_are_never_mixed(planted, tmp_path):
    """Results of two cohorts in one folder (old behaviour: one table mixing them, no dataset named).
    Now: a selector page and one leaderboard per fingerprint, named from each cohort's dataset.json."""
    import shutil

    from leaderboard.build import build
    root = tmp_path / "res"
    shutil.copytree(planted[0], root)
    cohort_b = tmp_path / "cohort-b"
    (cohort_b / "metadata").mkdir(parents=True)
    (cohort_b / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": "MIMIC-IV demo"}))
    y = (np.random.default_rng(7).uniform(size=200) < 0.4).astype(int)
    for model, st in (("m_other", 3.0), ("m_best", 0.5)):
        write_cell(root, model, "demo/mortality", y, _scores(y, st, 8), seed=1, fingerprint=FP_B,
                   cohort=str(cohort_b))
    out = build(root, tmp_path / "lb", model_specs={}, tasks=TASKS)
    index = (out / "index.html").read_text()
    subs = sorted(p.name for p in (out / "datasets").iterdir())
    assert len(subs) == 2, subs
    assert "MIMIC-IV demo" in index and "cohort-a" in index and FP_B[:16] in index and FP_A[:16] in index
    assert 'class="board" data-family' not in index, "the selector page holds no leaderboard table"
    for sub in subs:
        a_side = FP_A[:12] in sub
        pages = sorted((out / "datasets" / sub).rglob("*.html"))
        assert pages
        for p in pages:
            text = p.read_text()
            assert (FP_A if a_side else FP_B)[:16] in text and (FP_B if a_side else FP_A)[:16] not in text, p
            assert "all datasets" in text
        sub_index = (out / "datasets" / sub / "index.html").read_text()
        # m_other exists only in dataset B; m_near only in A
        assert ("m_other" in sub_index) != a_side and ("m_near" in sub_index) == a_side
        link = re.search(r'href="([^"]*index\.html)">all datasets', sub_index).group(1)
        assert (out / "datasets" / sub / link).resolve() == (out / "index.html").resolve()
    # deterministic with several datasets too
    again = build(root, tmp_path / "lb2", model_specs={}, tasks=TASKS)
    fa = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert fa == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in fa:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


# =========================================================================== one typed reader
def test_v1_and_v2_files_build_one_leaderboard(tmp_path):
    """A results folder holding files of both schema versions on one cohort: one dataset, one table
    (the v1 file's dataset is derived from its cohort folder, the v2 file names it)."""
    y = (np.random.default_rng(11).uniform(size=200) < 0.4).astype(int)
    write_cell(tmp_path / "res", "m_old", "demo/mortality", y, _scores(y, 1.0, 1))
    write_cell(tmp_path / "res", "m_new", "demo/mortality", y, _scores(y, 2.0, 2),
               extra={"schema_version": 2, "dataset": {"name": "cohort-a", "fingerprint": FP_A}})
    files = {p.parent.parent.parent.name: json.loads(p.read_text()) for p in (tmp_path / "res").rglob("seed0.json")}
    assert files["m_old"]["schema_version"] == 1 and "dataset" not in files["m_old"]
    assert files["m_new"]["schema_version"] == 2
    out = _build(tmp_path / "res", tmp_path / "lb")
    index = (out / "index.html").read_text()
    assert not (out / "datasets").exists() and "Dataset: <strong>cohort-a</strong>" in index
    fam = index.split('data-family="demo"')[1].split("</table>")[0]
    assert _row(fam, "m_old") and _row(fam, "m_new")
    assert "not a result record" not in index


def _corrupt(root: Path, model: str, **change) -> Path:
    """Copy m_ok's demo/mortality cell to `model` with fields changed, bypassing validation."""
    src, pred = cell_paths(root, "m_ok", "demo/mortality", 0)
    dst, dst_pred = cell_paths(root, model, "demo/mortality", 0)
    write_result(dst, {**json.loads(src.read_text()), "model": model, **change})
    dst_pred.write_bytes(pred.read_bytes())
    return dst


def test_a_file_that_is_not_a_record_is_listed_with_its_path_not_used(tmp_path):
    """Old behaviour: the leaderboard read raw dicts, so a misspelt field was silently ignored and a
    wrong type was guarded field by field. Now every file goes through the one typed reader: a file
    that is not a valid record is listed as a problem (path relative to the results, field, fix) and
    its model is not in the tables; the build never crashes."""
    root = tmp_path / "res"
    y = (np.random.default_rng(12).uniform(size=200) < 0.4).astype(int)
    write_cell(root, "m_ok", "demo/mortality", y, _scores(y, 1.0, 1))
    _corrupt(root, "m_typo", n_tset=200)
    _corrupt(root, "m_wrong", n_test="many")
    out = _build(root, tmp_path / "lb")
    index = (out / "index.html").read_text()
    assert "m_typo/demo/mortality/seed0.json: not a result record (field &#39;n_tset&#39;" in index
    assert "m_wrong/demo/mortality/seed0.json: not a result record (field &#39;n_test&#39;" in index
    assert "rerun that cell with --force, or remove the file" in index
    assert str(tmp_path) not in index  # paths relative to the results folder, never absolute
    fam = index.split('data-family="demo"')[1].split("</table>")[0]
    assert _row(fam, "m_ok")
    for model in ("m_typo", "m_wrong"):
        assert f'data-v="{model}"' not in fam
        assert not (out / "models" / f"{model}.html").exists()


def test_compare_reads_the_same_typed_records(tmp_path):
    """compare pairs a v1 and a v2 file of one cohort, and never uses a file that is not a record."""
    from benchmark.errors import UserError
    from leaderboard.compare import compare
    root = tmp_path / "res"
    y = (np.random.default_rng(13).uniform(size=200) < 0.4).astype(int)
    write_cell(root, "m_ok", "demo/mortality", y, _scores(y, 1.0, 1))
    write_cell(root, "m_v2", "demo/mortality", y, _scores(y, 2.0, 2),
               extra={"schema_version": 2, "dataset": {"name": "cohort-a", "fingerprint": FP_A}})
    _corrupt(root, "m_wrong", n_test="many")
    res = compare(root, "m_v2", "m_ok", n_boot=50)
    assert {(r["task"], r["metric"]) for r in res["rows"]} == {("demo/mortality", "auroc"), ("demo/mortality", "auprc")}
    assert res["skipped"] == []
    with pytest.raises(UserError, match="m_wrong"):
        compare(root, "m_v2", "m_wrong", n_boot=50)
