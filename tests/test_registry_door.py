"""One registry door (issue 13 item 4): built-in models and plug-ins register through the same
entry-point group, a module may hold several specs, tasks ship as package data.

The two install tests build real packages with pip (no network: --no-deps --no-build-isolation)
into temp folders and run the CLI in a subprocess from outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from benchmark import registry
from benchmark.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "baselines", "encoders", "leaderboard", "data_prep", "tasks")


def _pip_install_target(src: Path, target: Path) -> None:
    """`pip install --no-deps --no-build-isolation --target target src` (a plain, non-editable install)."""
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-compile", "--target", str(target), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _cli(*args: str, pythonpath: Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m benchmark ...` with PYTHONPATH=pythonpath, run from cwd (outside the repository)."""
    e = {**os.environ, "PYTHONPATH": str(pythonpath), **(env or {})}
    e.pop("MEHR_BENCH_TASKS", None)
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, cwd=cwd, env=e)


# ------------------------------------------------------------------------------ built-ins are entry points

def test_builtin_models_are_declared_as_entry_points_not_a_core_list():
    """Before: benchmark/registry.py:BUILTIN_MODELS listed 32 modules outside the core. Now every
    built-in is an entry point of pyproject.toml, and the installed metadata agrees with it."""
    assert not hasattr(registry, "BUILTIN_MODELS")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][registry.ENTRY_POINT_GROUP]
    assert len(declared) == 67  # issue 18: + ehrt-zeroshot-path/freq, mehrt-zeroshot-path/freq; issue 15: + ehrt-tiny/small/9m, mehrt-prs-cross, mehrt-prs-prefix, mehrt-joint, 4 *_tuned, rf/lr late fusion, concat_lr_icu(_ts); issue 16: + 15 paper-head names (image_only_mlp, ehr_only_mlp*, concat_mlp*, *_fm, *_curated), cxr_supervised, cxr_simclr
    assert {n: v for n, v in registry.model_targets().items() if n in declared} == declared


def test_one_module_declares_a_family_of_specs():
    """The six probe_* and three mehrt-<size> stub files are gone; one module per family holds SPECS,
    and each entry point picks its spec by name."""
    gone = [f"encoders/models/probe_{s}.py" for s in ("structured", "ct", "wsi", "cxr", "note", "prs")]
    gone += [f"encoders/mehrt/register_mehrt_{s}.py" for s in ("tiny", "small", "9m")]
    assert not [f for f in gone if (REPO / f).exists()]
    targets = registry.model_targets()
    assert {targets[f"probe_{s}"] for s in ("structured", "ct", "wsi", "cxr", "note", "prs")} == {"encoders.models.probes"}
    assert {targets[n] for n in ("mehrt", "mehrt-tiny", "mehrt-small", "mehrt-9m")} == {"encoders.mehrt.register_mehrt"}
    assert registry.get_model("probe_wsi").requires == ("wsi",)
    assert registry.get_model("mehrt-9m").factory.keywords == {"size": "9M"}


def test_family_module_without_the_named_spec_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(registry, "_entry_point_modules", lambda: {"probe_xyz": "encoders.models.probes"})
    with pytest.raises(UserError) as e:
        registry.get_model("probe_xyz")
    msg = e.value.render()
    assert "entry point 'probe_xyz' = 'encoders.models.probes'" in msg and "probe_ct" in msg


def test_entry_point_may_name_an_attribute_or_a_function(monkeypatch):
    """`module:attr` targets: a spec, or a function returning specs."""
    monkeypatch.setattr(registry, "_entry_point_modules", lambda: {
        "probe_ct": "encoders.models.probes:SPECS", "mehrt-small": "encoders.mehrt.register_mehrt:sized_spec",
        "mehrt": "encoders.mehrt.register_mehrt:SPEC", "nope": "encoders.models.probes:MISSING"})
    assert registry.get_model("probe_ct").name == "probe_ct"
    assert registry.get_model("mehrt").name == "mehrt"
    with pytest.raises(TypeError):  # sized_spec needs an argument: a function target is called without any
        registry.get_model("mehrt-small")
    with pytest.raises(UserError, match="has no attribute 'MISSING'"):
        registry.get_model("nope")


def test_api_is_the_public_spec_helper():
    """A plug-in builds its spec from benchmark.api (the helper the built-in encoders use), never
    from the private encoders.models._common."""
    from benchmark import api
    from encoders.models import _common

    assert _common.spec is api.spec
    s = api.spec("my_model", "d", lambda budget=None, seed=0: None, modalities=("structured",), reference="r",
                 kind="baseline", authors="me")
    assert (s.kind, s.authors, s.task_kinds) == ("baseline", "me", api.ALL_KINDS)


# ------------------------------------------------------------------------------ installs

def test_plain_install_ships_the_tasks(tmp_path):
    """Before: a non-editable `pip install .` had no tasks (`tasks --json` exit 2, "tasks folder not
    found"). Now tasks ship as package data and are found from outside the repository."""
    src = tmp_path / "src"
    for d in PACKAGES:
        shutil.copytree(REPO / d, src / d, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    _pip_install_target(src, tmp_path / "site")
    r = _cli("tasks", "--json", pythonpath=tmp_path / "site", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = {t["name"] for t in json.loads(r.stdout)}
    expected = {p.relative_to(REPO / "tasks").with_suffix("").as_posix() for p in (REPO / "tasks").rglob("*.yaml")}
    assert names == expected and len(names) == 30  # 23 + the 7 imported MEDS-DEV abnormal-lab tasks
    # the dataset profiles (data_prep/datasets/*/ YAML) ship too, found through their entry point
    d = _cli("datasets", pythonpath=tmp_path / "site", cwd=tmp_path)
    assert d.returncode == 0, d.stderr
    assert all(name in d.stdout for name in ("synthetic", "mimic_iv", "omop", "eicu")), d.stdout
    where = subprocess.run([sys.executable, "-c", "import benchmark.paths as p; print(p.tasks_dir().resolve())"],
                           capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}).stdout.strip()
    assert Path(where).is_relative_to((tmp_path / "site").resolve())  # the installed copy, not the repo


PLUGIN = '''
"""A throwaway plug-in model: random scores (a smoke test of the registry door, not a model)."""
import numpy as np

from benchmark.api import Prediction, spec


class Coin:
    def __init__(self, seed):
        self.seed = seed

    def fit(self, data):
        return self

    def predict(self, data, split):
        return Prediction(score=np.random.default_rng(self.seed).random(data.samples(split).height))


def make(budget=None, seed=0):
    return Coin(seed)


SPEC = spec("coin_plugin", "Random scores.", make, modalities=("structured",), reference="none",
            task_kinds=("binary",), kind="baseline", authors="tests", license="MIT")


def family():
    return [spec(f"coin_plugin_{k}", "Random scores.", make, modalities=("structured",), reference="none",
                 task_kinds=("binary",), kind="baseline", authors="tests") for k in ("a", "b")]
'''


def test_third_party_plugin_registers_and_runs(tmp_path):
    """A package installed with an entry point in `mehr_bench.models` is listed by `models --json`
    next to the built-ins and runs with status ok, importing only benchmark.api."""
    from data_prep.synthetic import generate

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "coin_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "coin-plugin"
        version = "0.0.1"
        [tool.setuptools]
        py-modules = ["coin_plugin"]
        [project.entry-points."mehr_bench.models"]
        coin_plugin = "coin_plugin"
        coin_plugin_a = "coin_plugin:family"
        coin_plugin_b = "coin_plugin:family"
        '''))
    _pip_install_target(pkg, tmp_path / "site")
    cohort = generate(tmp_path / "cohort", n_subjects=300, seed=3, images=False)

    r = _cli("models", "--json", pythonpath=tmp_path / "site", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = {m["name"]: m for m in json.loads(r.stdout)}
    assert {"coin_plugin", "coin_plugin_a", "coin_plugin_b", "catboost", "mehrt-9m"} <= set(listed)
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][registry.ENTRY_POINT_GROUP]
    assert len(listed) == len(declared) + 3 and listed["coin_plugin"]["license"] == "MIT"  # built-ins + the plug-in's 3

    res = tmp_path / "results"
    r = _cli("run", "--model", "coin_plugin", "--task", "oncology/mortality_1y", "--budget", "smoke",
             "--data", str(cohort), "--results", str(res), pythonpath=tmp_path / "site", cwd=tmp_path,
             env={"MEHR_BENCH_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads((res / "coin_plugin" / "oncology" / "mortality_1y" / "seed0.json").read_text())
    assert rec["status"] == "ok" and rec["model"] == "coin_plugin"


def test_every_registered_model_cites_a_paper_by_title():
    """Issue 15: a model's reference names its paper by title: one of the source papers by the short
    citation REFERENCES.md lists, or an outside paper as "Author(s) year, Title"."""
    import re
    refs = (REPO / "REFERENCES.md").read_text()
    rows = [line.split("|")[1:3] for line in refs.splitlines() if line.startswith("| ") and "short citation" not in line]
    rows = [(short.strip(), full.strip()) for short, full in rows if short.strip() and not set(short.strip()) <= {"-"}]
    assert len(rows) == 5
    # the short citation without its id ("MEHRT", "Fusion is not one-size-fits-all") or the full title
    seed_titles = [t for short, full in rows for t in (re.sub(r"\s*\(.*\)$", "", short), full.split(". ")[0].split(": ")[0])]
    outside = re.compile(r"[A-Z][A-Za-z-]+( et al\.| & [A-Z][A-Za-z-]+)? \d{4}, [A-Z]")
    missing = {name: spec.reference for name, spec in ((s.name, s) for s in registry.list_models())
               if not (any(t in spec.reference for t in seed_titles) or outside.search(spec.reference))}
    assert not missing, missing
