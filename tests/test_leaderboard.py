"""Leaderboard site: content, escaping, privacy (no subject ids / times / single-patient values),
determinism, atomic rebuild, the CLI entry points and the comparison page.

The result files are fakes written here (metrics computed by benchmark.metrics on random
predictions), so the tests do not wait for real runs.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from benchmark.metrics.evaluate import evaluate
from benchmark.results import cell_paths, write_predictions, write_result
from tests._records import record

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SUBJECT_BASE = 7_100_000
LABELS = ["atelectasis", "edema", "effusion"]

TASKS = {
    "demo/mortality": {"kind": "binary", "main_metric": "auroc", "version": 2,
                       "metrics": ["auroc", "auprc", "brier", "ece"],
                       "description": "Death within a year. " + XSS, "modalities": ["ct", "note"],
                       "fairness": ["sex", "race"], "references": ["Doe et al. 2024"]},
    "demo/readmission": {"kind": "binary", "main_metric": "auroc", "version": 1,
                         "metrics": ["auroc", "auprc", "brier", "ece"], "description": "Readmission in 30 days.",
                         "modalities": [], "fairness": ["sex"], "references": []},
    "demo/los": {"kind": "regression", "main_metric": "mae", "version": 1, "metrics": ["mae", "rmse", "r2"],
                 "description": "Length of stay in days.", "modalities": [], "fairness": [], "references": []},
    "surv/mace": {"kind": "survival", "main_metric": "c_index_uno", "version": 1,
                  "metrics": ["c_index_harrell", "c_index_uno", "td_auc", "ibs"], "description": "Time to MACE.",
                  "modalities": ["ct"], "fairness": ["age_band"], "references": [], "horizon_days": 1825.0},
    "cxr/findings": {"kind": "multilabel", "main_metric": "auroc_macro", "version": 1,
                     "metrics": ["auroc_macro", "auprc_macro"], "description": "CXR findings.",
                     "modalities": ["cxr"], "fairness": [], "references": [], "label_names": LABELS},
}

MODELS = {
    "gbdt": {"name": "gbdt", "kind": "baseline", "description": "Gradient boosting on bags of events. " + XSS,
             "modalities": ["structured"], "requires": [],
             "task_kinds": ["binary", "survival", "regression", "multilabel"],
             "n_parameters": None, "training_data": "none (trained per task)", "license": "Apache-2.0",
             "reference": "Chen & Guestrin 2016", "authors": "MEHR-Bench team"},
    "mehrt-tiny": {"name": "mehrt-tiny", "kind": "foundation", "description": "Multimodal EHR transformer, tiny.",
                   "modalities": ["structured", "ct", "note", "cxr"], "requires": [],
                   "task_kinds": ["binary", "survival", "regression", "multilabel"], "n_parameters": 2_000_000,
                   "training_data": "synthetic cohort", "license": "Apache-2.0", "reference": "this repo",
                   "authors": "MEHR-Bench team"},
    "mehrt-small": {"name": "mehrt-small", "kind": "foundation", "description": "Multimodal EHR transformer, small.",
                    "modalities": ["structured", "ct", "note", "cxr"], "requires": [],
                    "task_kinds": ["binary", "survival", "regression", "multilabel"], "n_parameters": 30_000_000,
                    "training_data": "synthetic cohort", "license": "Apache-2.0", "reference": "this repo",
                    "authors": "MEHR-Bench team"},
    # "fusion" is deliberately not in MODELS: its card falls back to what the result files say
}
# explanation blocks in the layouts the models write (baselines/explain.py)
_TOP = {"method": "TreeExplainer", "n_rows": 200, "output": "log-odds",
        "top_features": [{"feature": "age", "description": None, "mean_abs_shap": 0.31},
                         {"feature": "count:ICD10CM/C34", "description": "Lung cancer", "mean_abs_shap": 0.2},
                         {"feature": "last:LOINC/2160-0", "description": "Creatinine " + XSS, "mean_abs_shap": 0.12},
                         {"feature": XSS, "description": None, "mean_abs_shap": 0.05}]}
EXPLANATIONS = {
    "gbdt": _TOP,
    "fusion": {"method": "leave-one-modality-out drop in out-of-fold auroc", "metric": "auroc", "metric_all": 0.8,
               "modalities": [{"modality": "ct", "n_rows_with": 180, "metric_without": 0.77, "drop": 0.03},
                              {"modality": "note", "n_rows_with": 150, "metric_without": 0.805, "drop": -0.005}],
               "structured_model": {**_TOP, "method": "standardized coefficients", "output": "|coefficient| per SD"}},
    "mehrt-tiny": {"method": None, "reason": "no explainer for this model"},
}
# every fake result comes from one dataset (the runner writes its fingerprint and cohort folder)
FINGERPRINT = "5eed" * 16
PROVENANCE = {"package_version": "0.1.0", "git_sha": "abc", "cohort": "/secret/path/cohort",
              "data_fingerprint": FINGERPRINT}
DATASET = {"name": "cohort", "fingerprint": FINGERPRINT}
STRENGTH = {"gbdt": 0.6, "mehrt-tiny": 1.0, "mehrt-small": 2.5, "fusion": 1.4}


def _samples(rng: np.random.Generator, n: int, task: str):
    sid = SUBJECT_BASE + rng.permutation(5 * n)[:n]
    # a few subjects with two prediction times (the bootstrap resamples subjects)
    sid[n - 20:] = sid[:20]
    t0 = datetime(2018, 1, 1, 8, 0)
    times = [t0 + timedelta(days=int(d), minutes=int(m))
             for d, m in zip(rng.integers(0, 1500, n), rng.integers(0, 1440, n))]
    return sid, times


def write_fake_results(root: Path, seed: int = 0, n: int = 240) -> dict:
    """Write result JSONs + predictions parquets for MODELS x TASKS (+ a failure, a refusal, an old
    task version, a second seed).

    Returns:
        {"subject_ids", "times", "values"}: everything patient-level that was written, to scan for.
    """
    rng = np.random.default_rng(seed)
    leak: dict[str, set] = {"subject_ids": set(), "times": set(), "values": set()}
    for ti, (task, spec) in enumerate(sorted(TASKS.items())):
        sid, times = _samples(np.random.default_rng(100 + ti), n, task)
        leak["subject_ids"] |= {int(s) for s in sid}
        leak["times"] |= set(times)
        kind = spec["kind"]
        trng = np.random.default_rng(200 + ti)
        latent = trng.normal(size=n)
        if kind == "binary":
            y = (latent + trng.normal(size=n) > 0.8).astype(int)
        elif kind == "multilabel":
            y = (latent[:, None] + trng.normal(size=(n, len(LABELS))) > 0.5).astype(int)
        elif kind == "survival":
            tt = np.round(trng.exponential(700, n) * np.exp(-0.5 * latent), 3) + 1.0
            cens = trng.uniform(100, 2500, n)
            y = np.column_stack([np.minimum(tt, cens), (tt <= cens).astype(float)])
            leak["values"] |= {float(v) for v in y[:, 0]}
        else:
            y = np.round(np.exp(1.0 + 0.4 * latent + 0.3 * trng.normal(size=n)), 4)
            leak["values"] |= {float(v) for v in y}
        for model in ("fusion", "gbdt", "mehrt-small", "mehrt-tiny"):
            if model == "fusion" and task == "demo/los":
                continue
            st = STRENGTH[model]
            noise = rng.normal(size=y.shape if kind == "multilabel" else n)
            if kind == "binary":
                score = 1 / (1 + np.exp(-(st * latent[:] + noise - 1.0)))
            elif kind == "multilabel":
                score = 1 / (1 + np.exp(-(st * latent[:, None] + noise)))
            elif kind == "survival":
                score = st * latent + noise
            else:
                score = y * (1 + 0.3 * noise / st)
            score = np.asarray(score, dtype=float)
            leak["values"] |= {float(v) for v in np.ravel(score)}
            seeds = (0, 1) if (model == "gbdt" and task == "demo/mortality") else (0,)
            for s in seeds:
                _write_cell(root, model, task, spec, s, sid, times, y, score + 0.01 * s, kind)
    # a failed cell, a refused cell, an older task version
    _write_raw(root, "fusion", "demo/los", 0, {"status": "failed", "error": "RuntimeError: boom " + XSS})
    _write_raw(root, "gbdt", "demo/mortality", 7, {"status": "ok", "task_version": 1,
                                                    "metrics": {"auroc": {"value": 0.99, "ci_low": 0.98,
                                                                          "ci_high": 1.0}}})
    return {k: sorted(v, key=str) for k, v in leak.items()}


def _write_raw(root: Path, model: str, task: str, seed: int, extra: dict) -> None:
    spec = TASKS[task]
    rec = record(**{"model": model, "task": task, "task_version": spec["version"], "seed": seed,
                    "task_kind": spec["kind"], "main_metric": spec["main_metric"], "n_train": None,
                    "n_tuning": None, "n_test": 240, "n_events": None,
                    "compute": {"wall_s": 1.0, "peak_rss_mb": 100.0, "device": "cpu", "n_parameters": None},
                    "provenance": PROVENANCE, "dataset": DATASET, **extra})
    write_result(cell_paths(root, model, task, seed)[0], rec)


def _fairness_block(kind: str) -> dict:
    return {"split": "held_out", "metric": "auroc" if kind == "binary" else "c_index_harrell", "threshold": 0.42,
            "min_count": 10, "n_boot": 200, "method": "test", "notes": [],
            "attributes": {"sex": {"small_cells_checked": 10, "groups": [
                {"group": "F", "suppressed": False, "value": 0.71, "ci_low": 0.65, "ci_high": 0.77,
                 "selection_rate": 0.3, "tpr": 0.6, "fpr": 0.2},
                {"group": "M", "suppressed": False, "value": 0.69, "ci_low": 0.62, "ci_high": 0.75,
                 "selection_rate": 0.33, "tpr": 0.58, "fpr": 0.24},
                # a malformed file that leaked numbers into a suppressed group: the site must drop them
                {"group": XSS, "suppressed": True, "reason": "fewer than 10 subjects", "value": 0.123987,
                 "n_subjects": 3}],
                "n_groups": 3, "n_suppressed": 1, "counts_withheld": True,
                "worst_group": {"group": "M", "value": 0.69}, "gap": 0.02,
                "demographic_parity_difference": 0.03, "equalized_odds_difference": 0.04}}}


def _write_cell(root, model, task, spec, seed, sid, times, y, score, kind):
    kw = {"n_boot": 50, "seed": seed}
    if kind == "survival":
        kw.update(train_time=y[:, 0], train_event=y[:, 1].astype(bool), horizon=spec["horizon_days"],
                  times=np.array([200.0, 400.0, 800.0]))
        res = evaluate("survival", (y[:, 0], y[:, 1].astype(bool)), score, sid, **kw)
    else:
        res = evaluate(kind, y, score, sid, **kw)
    metrics = {k: v.to_dict() for k, v in res.items()}
    if kind == "binary":
        metrics["_threshold"] = {"value": float(np.median(score)), "ci_low": None, "ci_high": None, "method": "youden"}
    frame = pl.DataFrame({"subject_id": sid.astype(np.int64), "prediction_time": times})
    if kind == "binary":
        frame = frame.with_columns(pl.Series("boolean_value", y.astype(bool)),
                                   pl.Series("predicted_boolean_probability", score))
    elif kind == "multilabel":
        frame = frame.with_columns([c for j, lab in enumerate(LABELS) for c in (
            pl.Series(f"boolean_value/{lab}", y[:, j].astype(bool)),
            pl.Series(f"predicted_boolean_probability/{lab}", score[:, j]))])
    elif kind == "survival":
        frame = frame.with_columns(pl.Series("float_value", y[:, 0]), pl.Series("boolean_value", y[:, 1].astype(bool)),
                                   pl.Series("predicted_risk", score))
    else:
        frame = frame.with_columns(pl.Series("float_value", y), pl.Series("predicted_float_value", score))
    j, p = cell_paths(root, model, task, seed)
    write_predictions(p, frame)
    n_par = MODELS.get(model, {}).get("n_parameters")
    rec = dict(model=model, task=task, task_version=spec["version"], task_kind=kind,
           seed=seed, status="ok", main_metric=spec["main_metric"], metrics=metrics,
           n_train=1000, n_tuning=200, n_test=len(sid), dataset=DATASET,
           n_events=int(np.sum(y if kind != "survival" else y[:, 1])) if kind != "regression" else None,
           fairness=_fairness_block(kind) if kind in ("binary", "survival") else {"attributes": {}, "notes": []},
           explanations=EXPLANATIONS.get(model),
           model_info={"kind": "encoder+head" if model == "fusion" else "baseline",
                       "modalities": ["structured", "ct"] if model == "fusion" else ["structured"],
                       "reference": "fusion paper " + XSS},
           provenance=PROVENANCE,
           compute={"wall_s": 12.5 + seed, "peak_rss_mb": 512.0, "device": "cpu", "n_parameters": n_par,
                    "tokens_per_s": 1500.0 if model.startswith("mehrt") else None})
    if model == "gbdt" and task == "demo/readmission":
        # a refused main metric
        rec["status"] = "refused"
        rec["metrics"]["auroc"] = {"value": None, "ci_low": None, "ci_high": None, "method": "refused",
                                   "refused": "only one class present " + XSS}
    write_result(j, record(**rec))


# =========================================================================== fixtures
@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    leak = write_fake_results(root)
    return root, leak


@pytest.fixture(scope="module")
def site(fake, tmp_path_factory):
    from leaderboard.build import build
    root, _ = fake
    out = tmp_path_factory.mktemp("site") / "lb"
    build(root, out, model_specs=MODELS, tasks=TASKS)
    return out


def _all_text(out: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted(out.rglob("*")) if p.is_file()}


# =========================================================================== content
def test_pages_exist_and_tables(site):
    assert (site / "index.html").exists()
    index = (site / "index.html").read_text()
    for fam in ("cxr", "demo", "surv"):
        assert f'data-family="{fam}"' in index
    assert index.count('<table class="board"') == 3
    for t in TASKS:
        assert (site / "tasks" / f"{t.replace('/', '--')}.html").exists(), t
    for m in ("gbdt", "mehrt-tiny", "mehrt-small", "fusion"):
        assert (site / "models" / f"{m}.html").exists(), m
    # filters and scaling plot
    assert 'id="f-kind"' in index and 'id="f-modality"' in index
    assert 'value="foundation"' in index and 'value="ct"' in index
    assert "mehrt: AUROC vs parameters" in index


def test_best_and_rank_marks(site, fake):
    index = (site / "index.html").read_text()
    # the strongest fake model wins demo/mortality and holds rank 1 there
    rows = re.findall(r'<tr data-kind="foundation"[^>]*>\s*<th scope="row" data-v="mehrt-small">(.*?)</tr>',
                      index, re.S)
    assert len(rows) == 3, "mehrt-small should have a row in each family"
    for row in rows:
        assert 'class="best"' in row and "#1" in row
    assert index.count('aria-label="best in column"') >= 4
    # failed and refused cells are shown as such, and listed as not ranked
    assert ">failed<" in index and ">refused<" in index
    assert "Not ranked" in index


def test_task_page_has_metrics_curves_fairness_shap(site):
    page = (site / "tasks" / "demo--mortality.html").read_text()
    for text in ("AUROC", "AUPRC", "Brier", "ECE", "ROC curve", "Precision-recall", "Calibration",
                 "Fairness", "suppressed (fewer than 10 subjects)", "demographic-parity difference",
                 "TreeExplainer", "last:LOINC/2160-0", "leave-one-modality-out drop",
                 "structured model, standardized coefficients", "no explanation (no explainer for this model)"):
        assert text in page, text
    assert page.count("<svg") >= 4
    # two seeds of gbdt: seed SD is shown; the older task version is counted, not ranked
    assert "&plusmn;" in page
    assert "version 1 (1 file)" in page
    assert "0.990" not in page  # the version-1 result's AUROC
    surv = (site / "tasks" / "surv--mace.html").read_text()
    assert "Kaplan-Meier by predicted-risk tertile" in surv and "Time-dependent AUC" in surv
    assert "td-AUC @ 400 d" in surv
    ml = (site / "tasks" / "cxr--findings.html").read_text()
    assert "Per-label AUROC" in ml and "edema" in ml
    reg = (site / "tasks" / "demo--los.html").read_text()
    assert "Predicted vs observed" in reg and "MAE" in reg


def test_model_pages(site):
    card = (site / "models" / "mehrt-small.html").read_text()
    for text in ("MEHR-Bench team", "30M", "synthetic cohort", "Apache-2.0", "tokens/s", "Compute used",
                 "other sizes", "mehrt-tiny.html", "Scaling"):
        assert text in card, text
    fb = (site / "models" / "fusion.html").read_text()
    assert "not in the model registry" in fb and "encoder+head" in fb


def test_fairness_suppressed_group_numbers_never_rendered(site):
    page = (site / "tasks" / "demo--mortality.html").read_text()
    assert "0.124" not in page and "0.123987" not in page


# =========================================================================== security / privacy
def test_xss_is_escaped_everywhere(site):
    found_escaped = False
    for p, text in _all_text(site).items():
        assert XSS not in text, f"unescaped script in {p}"
        assert "alert(1)</script>" not in text, p
        found_escaped |= XSS_ESCAPED in text
    assert found_escaped
    card = (site / "models" / "gbdt.html").read_text()
    assert "Gradient boosting on bags of events. " + XSS_ESCAPED in card
    task = (site / "tasks" / "demo--mortality.html").read_text()
    assert "Death within a year. " + XSS_ESCAPED in task


def test_content_security_policy_blocks_network(site):
    for p, text in _all_text(site).items():
        if p.suffix != ".html":
            continue
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
        assert "default-src 'none'" in csp and "unsafe-inline" not in csp
        assert not re.search(r'(src|href)="(https?:)?//', text), f"remote resource in {p}"


def test_no_patient_level_values_in_site(site, fake):
    _, leak = fake
    texts = _all_text(site)
    blob = "\n".join(texts.values())
    for s in leak["subject_ids"]:
        assert not re.search(rf"(?<!\d){s}(?!\d)", blob), f"subject id {s} in the site"
    for t in leak["times"]:
        for form in (t.isoformat(), t.strftime("%Y-%m-%d"), str(int(t.timestamp() * 1e6)), str(int(t.timestamp()))):
            assert form not in blob, f"time {form} in the site"
    assert "2018-" not in blob and "2019-" not in blob and "2020-" not in blob and "2021-" not in blob
    # SVG geometry (pixel coordinates with one decimal) can coincide with a value like 77.9; the tags'
    # attributes are dropped for this scan, their text (labels, ticks, titles) is kept
    shown = re.sub(r"<(?:svg|g|line|path|circle|rect|polyline|polygon|text|tspan)\b[^>]*>", "<>", blob)
    for v in leak["values"]:
        for form in (repr(v), f"{v:.6f}", f"{v:.4f}"):
            assert form not in shown, f"single-patient value {form} in the site"
    # no displayed number carries 4+ decimals (aggregates are shown with 3), so none can be a raw score
    assert not re.search(r"(?<![\w.])\d+\.\d{4,}(?![\w.])", re.sub(r"<style>.*?</style>", "", blob, flags=re.S))
    assert "/secret/path" not in blob


# =========================================================================== determinism / rebuild
def test_rebuild_is_byte_identical(fake, tmp_path):
    from leaderboard.build import build
    root, _ = fake
    a = build(root, tmp_path / "a", model_specs=MODELS, tasks=TASKS)
    b = build(root, tmp_path / "b", model_specs=MODELS, tasks=TASKS)
    fa, fb = _all_text(a), _all_text(b)
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb]
    for pa, pb in zip(fa, fb):
        assert pa.read_bytes() == pb.read_bytes(), pa.relative_to(a)
    # and again into the same folder
    build(root, a, model_specs=MODELS, tasks=TASKS)
    for pa, pb in zip(sorted(a.rglob("*")), sorted(b.rglob("*"))):
        if pa.is_file():
            assert pa.read_bytes() == pb.read_bytes()


def test_rebuild_replaces_output_and_refuses_foreign_folder(fake, tmp_path):
    import shutil

    from benchmark.errors import UserError
    from leaderboard.build import build
    from leaderboard.render import MARKER
    root0, _ = fake
    root = tmp_path / "res"
    shutil.copytree(root0, root)
    out = root / "leaderboard"  # the default place: inside the results folder
    build(root, out, model_specs=MODELS, tasks=TASKS)
    (out / "compare-a-vs-b.html").write_text("kept")
    (out / "stale.txt").write_text("from an older build")
    shutil.rmtree(root / "fusion")
    build(root, out, model_specs=MODELS, tasks=TASKS)
    assert not (out / "models" / "fusion.html").exists()
    assert not (out / "stale.txt").exists()
    assert (out / "compare-a-vs-b.html").read_text() == "kept"
    assert (out / MARKER).exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".leaderboard")], "temp folder left behind"
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("do not delete")
    with pytest.raises(UserError, match="not a leaderboard"):
        build(root, foreign, model_specs=MODELS, tasks=TASKS)
    assert (foreign / "precious.txt").exists()


def test_empty_results_and_unregistered_everything(tmp_path):
    from leaderboard.build import build
    (tmp_path / "res").mkdir()
    out = build(tmp_path / "res", tmp_path / "out", model_specs={}, tasks={})
    assert "No result files found" in (out / "index.html").read_text()
    root = tmp_path / "res2"
    write_fake_results(root, n=60)
    (root / "junk").mkdir()
    (root / "junk" / "seed0.json").write_text("{not json")
    out = build(root, tmp_path / "out2", model_specs={}, tasks={})
    index = (out / "index.html").read_text()
    assert "junk/seed0.json: not readable JSON" in index
    assert "not in the task registry" in (out / "tasks" / "demo--mortality.html").read_text()


def test_aggregate_curve_helpers_hide_small_groups():
    from leaderboard import plots
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(9), np.zeros(50)].astype(int)
    sid = np.arange(len(y))
    assert "fewer than 10" in plots.enough_both_classes(y, sid)
    p = rng.uniform(size=200)
    yy = (rng.uniform(size=200) < p).astype(int)
    bins, dropped = plots.calibration_bins(yy, p, np.arange(200))
    assert all(0 <= a <= 1 and 0 <= b <= 1 for a, b in bins) and len(bins) + dropped <= 10
    # a bin holding 3 subjects is dropped
    p2 = np.r_[np.full(3, 0.95), np.full(40, 0.15)]
    bins2, dropped2 = plots.calibration_bins(np.r_[np.ones(3), np.zeros(40)], p2, np.arange(43))
    assert dropped2 == 1 and len(bins2) == 1
    roc = plots.roc_points(yy, p)
    assert roc[0][0] == 0.0 and roc[-1] == (1.0, 1.0)
    assert all(b1 <= b2 for (_, b1), (_, b2) in zip(roc, roc[1:]))
    svg = plots.line_plot([plots.Series("<b>x</b>", roc)], title="t & u", x_label="a", y_label="b")
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "t &amp; u" in svg


def test_shap_summary_shapes():
    from leaderboard.figures import shap_summary
    assert shap_summary(None) is None
    m, items = shap_summary({"method": "KernelSHAP", "global": {"a": 0.1, "b": -0.3}})
    assert m == "KernelSHAP" and items == [("b", 0.3), ("a", 0.1)]
    _, items = shap_summary([{"feature": "x", "mean_abs_shap": 2.0}, ["y", 1.0]])
    assert items == [("x", 2.0), ("y", 1.0)]
    rows = np.arange(30, dtype=float).reshape(15, 2)
    _, items = shap_summary({"feature_names": ["f0", "f1"], "values": rows.tolist()})
    assert items[0][0] == "f1"
    # fewer than 10 rows of per-patient values: not summarised (would be near single-patient values)
    assert shap_summary({"feature_names": ["f0", "f1"], "values": rows[:3].tolist()}) is None


# =========================================================================== CLI + compare
def test_cli_leaderboard_and_compare(fake, tmp_path):
    import shutil
    import subprocess
    root0, _ = fake
    root = tmp_path / "res"
    shutil.copytree(root0, root)
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "benchmark", "leaderboard", "--results", str(root)],
                       capture_output=True, text=True, cwd=repo, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "leaderboard" / "index.html").exists()
    r = subprocess.run([sys.executable, "-m", "benchmark", "compare", "--a", "mehrt-small", "--b", "gbdt",
                        "--results", str(root)], capture_output=True, text=True, cwd=repo, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    page = root / "leaderboard" / "compare-mehrt-small-vs-gbdt.html"
    assert page.exists()
    html = page.read_text()
    assert "DerSimonian" in html and "demo/mortality" in html and "<svg" in html
    assert "mehrt-small" in r.stdout and "pooled" in r.stdout.lower()
    r = subprocess.run([sys.executable, "-m", "benchmark", "compare", "--a", "nope", "--b", "gbdt",
                        "--results", str(root)], capture_output=True, text=True, cwd=repo, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nope" in r.stderr


def test_compare_in_process(fake, tmp_path):
    from leaderboard.compare import compare
    root, leak = fake
    res = compare(root, "mehrt-small", "gbdt", tasks="all", n_boot=300)
    by = {(r["task"], r["metric"]): r for r in res["rows"]}
    assert ("demo/mortality", "auroc") in by and ("demo/mortality", "auprc") in by
    assert ("surv/mace", "c_index") in by and ("cxr/findings", "auroc_macro") in by
    assert ("demo/los", "mae") in by
    m = by[("demo/mortality", "auroc")]
    assert m["ci_low"] <= m["delta"] <= m["ci_high"] and m["delta"] > 0
    assert res["meta"]["discrimination"]["k"] >= 3
    # a model against itself: no difference anywhere
    same = compare(root, "gbdt", "gbdt", tasks="demo", n_boot=200)
    for r in same["rows"]:
        assert r["delta"] == 0 and r["p_value"] == 1.0
    out = tmp_path / "c"
    from leaderboard.compare import compare_cli
    rc = compare_cli(SimpleNamespace(a="mehrt-small", b="gbdt", tasks="demo/mortality,surv", results=str(root),
                                     out=str(out)))
    assert rc == 0
    html = (out / "compare-mehrt-small-vs-gbdt.html").read_text()
    for s in leak["subject_ids"]:
        assert str(s) not in html


def test_compare_cli_n_boot_and_seed(fake, tmp_path, capsys):
    """--n-boot / --seed reach the bootstrap: same seed same file, another seed other CIs; too few
    replicates is refused by argparse (exit 2) before anything is written."""
    import json as _json
    from benchmark.cli import main
    root, _ = fake

    def run(seed: int, name: str) -> dict:
        out = tmp_path / name
        assert main(["compare", "--a", "mehrt-small", "--b", "gbdt", "--tasks", "demo/mortality", "--results",
                     str(root), "--out", str(out), "--n-boot", "300", "--seed", str(seed)]) == 0
        return _json.loads(out.with_suffix(".json").read_text())

    a, b, c = run(1, "a.html"), run(1, "b.html"), run(2, "c.html")
    assert a == b
    ra, rc = a["rows"][0], c["rows"][0]
    assert ra["delta"] == rc["delta"] and (ra["ci_low"], ra["ci_high"]) != (rc["ci_low"], rc["ci_high"])
    with pytest.raises(SystemExit) as e:
        main(["compare", "--a", "mehrt-small", "--b", "gbdt", "--results", str(root), "--n-boot", "5",
              "--out", str(tmp_path / "d.html")])
    assert e.value.code == 2 and "at least 100" in capsys.readouterr().err
    assert not (tmp_path / "d.html").exists()


def test_compare_against_best_of_several(fake, tmp_path):
    """`--b x,y`: per task and metric, B is whichever of x, y has the best value on the shared held-out rows;
    each row's delta equals the plain A-vs-that-model comparison and its CI is corrected for the choice."""
    from leaderboard.compare import compare, compare_cli
    root, _ = fake
    cands = ["gbdt", "mehrt-tiny", "fusion"]
    best = compare(root, "mehrt-small", ",".join(cands), tasks="all", n_boot=200)
    single = {m: compare(root, "mehrt-small", m, tasks="all", n_boot=200) for m in cands}
    assert best["b"] == "best of (gbdt, mehrt-tiny, fusion)" and best["b_models"] == cands
    tasks = sorted({r["task"] for r in best["rows"]})
    assert tasks and len(tasks) == len(set().union(*({r["task"] for r in s["rows"]} for s in single.values())))
    for task in tasks:
        rows = [r for r in best["rows"] if r["task"] == task]
        main = rows[0]
        have = {m: [r for r in s["rows"] if r["task"] == task] for m, s in single.items()}
        have = {m: rs for m, rs in have.items() if rs}
        vals = {m: rs[0]["value_b"] for m, rs in have.items()}
        expect = (min if main["metric"] == "mae" else max)(vals, key=vals.get)
        assert main["model_b"] == expect, (task, vals)
        for r in rows:
            # B chosen per metric; delta as in the plain comparison, CI corrected for the choice (issue 12)
            o = next(x for x in have[r["model_b"]] if x["metric"] == r["metric"])
            assert r["delta"] == o["delta"] and r["ci_low"] <= r["delta"] <= r["ci_high"]
    # a listed model without results is refused by name, like a single B
    with pytest.raises(Exception, match="nope"):
        compare(root, "mehrt-small", "gbdt,nope", n_boot=50)
    out = tmp_path / "c"
    assert compare_cli(SimpleNamespace(a="mehrt-small", b="gbdt, fusion", tasks="all", results=str(root),
                                       out=str(out), n_boot=100)) == 0
    html = (out / "compare-mehrt-small-vs-best-of-gbdt-fusion.html").read_text()
    assert "B model" in html and "best of (gbdt, fusion)" in html


def test_compare_never_pairs_cells_of_two_datasets(fake, tmp_path, capsys):
    """A and B run on different cohorts (fingerprints differ) are skipped with the reason, never
    paired on subject ids that name different patients; the skip line prints rich-markup-like text
    verbatim (issue 12)."""
    import json as _json
    import shutil
    from leaderboard.compare import _print_table, compare
    root, _ = fake
    mixed = tmp_path / "mixed"
    for model in ("mehrt-small", "gbdt"):
        shutil.copytree(root / model / "demo" / "mortality", mixed / model / "demo" / "mortality")
    jp = cell_paths(mixed, "gbdt", "demo/mortality", 0)[0]
    rec = _json.loads(jp.read_text())
    rec["provenance"] = {**rec["provenance"], "data_fingerprint": "[/other]cohort"}
    write_result(jp, rec)
    res = compare(mixed, "mehrt-small", "gbdt", tasks="all", n_boot=100)
    assert res["rows"] == []
    (skip,) = res["skipped"]
    assert "different datasets" in skip["reason"] and "[/other]cohort" in skip["reason"]
    _print_table(res)
    assert "[/other]cohort" in capsys.readouterr().out


def test_compare_never_pools_the_leak_probe(fake, tmp_path):
    """The leak probe is an audit: its paired row is shown, but it is not evidence for either model and
    stays out of the pooled meta-analysis (issue 12)."""
    import json as _json
    import shutil
    from leaderboard.compare import compare
    root, _ = fake
    mixed = tmp_path / "r"
    for model in ("mehrt-small", "gbdt"):
        shutil.copytree(root / model / "demo" / "mortality", mixed / model / "demo" / "mortality")
        shutil.copytree(root / model / "demo" / "mortality", mixed / model / "leak" / "probe")
        jp = cell_paths(mixed, model, "leak/probe", 0)[0]
        write_result(jp, {**_json.loads(jp.read_text()), "task": "leak/probe"})
    res = compare(mixed, "mehrt-small", "gbdt", tasks="all", n_boot=100)
    assert {r["task"] for r in res["rows"]} == {"demo/mortality", "leak/probe"}
    for m in res["meta"].values():
        assert m is not None and all(not t.startswith("leak/") for t in m["tasks"]), m


def test_compare_reports_thresholded_metrics_and_the_emphasised_pooling(fake, tmp_path, capsys):
    """Binary tasks get paired accuracy / precision / recall / F1 / specificity at 0.5 (values equal
    to the metrics on the joined predictions); every pooled result names the estimate the selection
    rule emphasises (k <= 5 tasks here: random effects), in the CLI table and on the HTML page."""
    import polars as _pl
    from leaderboard.compare import compare, compare_cli
    from benchmark.stats.thresholded import thresholded_metrics
    root, _ = fake
    res = compare(root, "mehrt-small", "gbdt", tasks="all", n_boot=300)
    th = {(r["task"], r["metric"]): r for r in res["thresholded"]}
    assert {m for t, m in th if t == "demo/mortality"} == {"accuracy", "precision", "recall", "f1", "specificity"}
    assert all(r["kind"] == "binary" for r in res["thresholded"])  # no thresholded rows for other kinds
    pa = next(p for p in root.rglob("*.parquet") if "mehrt-small" in str(p) and "demo" in str(p)
              and "mortality" in str(p))
    fa = _pl.read_parquet(pa)
    ref = thresholded_metrics(fa["boolean_value"].cast(int).to_numpy(), fa["predicted_boolean_probability"].to_numpy())
    r = th[("demo/mortality", "accuracy")]
    assert r["value_a"] == pytest.approx(ref["accuracy"], abs=1e-6)
    assert r["ci_low"] <= r["delta"] <= r["ci_high"]
    m = res["meta"]["discrimination"]
    assert m["emphasis"] == "random" and f"k = {m['k']} <= 5" in m["emphasis_reason"]
    out = tmp_path / "t.html"
    assert compare_cli(SimpleNamespace(a="mehrt-small", b="gbdt", tasks="all", results=str(root), out=str(out),
                                       n_boot=300)) == 0
    text = capsys.readouterr().out
    assert "thresholded metrics at 0.5" in text and "emphasised: random effects" in text
    html = out.read_text()
    assert "Thresholded metrics at 0.5" in html and "&#9733; emphasised" in html and "specificity" in html
