"""Dependencies point one way (DESIGN.md, Folders): layers, independence, no import cycles, light core.

Before issue 13 the core imported data_prep (benchmark/paths.py, benchmark/default_cohort.py),
encoders imported baselines' bag of events, and three cycles hid behind function-local imports
(benchmark.ablation <-> runner, baselines.tabular <-> explain, encoders.mehrt.pretrain <-> pipeline).
Each test here failed on that code.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

from benchmark.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "baselines", "encoders", "leaderboard", "data_prep")
UPPER = ("baselines", "encoders", "leaderboard", "data_prep")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (each one is an import cycle).

    Args:
        graph: a grimp graph (function-local imports included, as grimp reads every import).

    Returns:
        Sorted lists of module names, one per cycle.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graphs are small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return sorted(cycles)


def test_lint_imports_contracts_are_kept():
    """The import-linter contracts of pyproject.toml (what `make test` and CI run) all hold."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    import tomllib
    n = len(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"])
    assert n >= 4 and f"{n} kept, 0 broken" in out.stdout, out.stdout[-3000:]


def test_no_import_cycles_not_even_behind_function_local_imports():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)
    assert import_cycles(graph) == []


def test_cycle_finder_sees_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    """The oracle of the test above can fail: a cycle through a function-local import is found."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text(textwrap.dedent("""
        def late():
            from cyclepkg import a  # the kind of import that used to hide a cycle
            return a
    """))
    (pkg / "c.py").write_text("import cyclepkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclepkg", cache_dir=None)
    assert import_cycles(graph) == [["cyclepkg.a", "cyclepkg.b"]]


def test_core_never_imports_the_packages_above_it():
    """Static check: no benchmark module imports an upper package, except the CLI's lazy commands
    (benchmark.cli, and benchmark.cli_meds for `export hf`)."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)
    up = {(m, w) for m in graph.modules if m.split(".")[0] == "benchmark"
          for w in graph.find_modules_directly_imported_by(m) if w.split(".")[0] in UPPER}
    assert {m for m, _ in up} <= {"benchmark.cli", "benchmark.cli_meds"}, sorted(up)
    assert {w for m, w in up if m == "benchmark.cli_meds"} <= {"encoders.mehrt.hf_export"}, sorted(up)
    # ... and the upper packages import only benchmark, never each other
    across = {(m, w) for m in graph.modules if m.split(".")[0] in UPPER
              for w in graph.find_modules_directly_imported_by(m)
              if w.split(".")[0] in UPPER and w.split(".")[0] != m.split(".")[0]}
    assert across == set()


def test_importing_the_core_loads_no_torch_and_no_upper_package():
    """`import benchmark` (and every core module, the CLI included) stays light: fresh interpreter."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import benchmark
        for m in pkgutil.walk_packages(benchmark.__path__, "benchmark."):
            if m.name != "benchmark.__main__":
                importlib.import_module(m.name)
        bad = sorted(n for n in sys.modules
                     if n.split(".")[0] in ("torch", "baselines", "encoders", "leaderboard", "data_prep"))
        print(" ".join(bad) or "clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "clean"


def test_default_cohort_generator_comes_through_the_entry_point(monkeypatch, tmp_path):
    """The core finds the synthetic generator through `mehr_bench.cohorts`, not an import; a fake
    generator registered there is used, and a missing one is a clear UserError."""
    import types

    from benchmark import default_cohort

    gen = default_cohort.cohort_generator()
    assert gen.__name__ == "data_prep.synthetic" and gen.GENERATOR_VERSION

    calls = []

    def fake_generate(out, n_subjects, seed):
        calls.append((n_subjects, seed))
        (Path(out) / "metadata").mkdir(parents=True)
        (Path(out) / "metadata" / "subject_splits.parquet").write_bytes(b"")

    fake = types.SimpleNamespace(GENERATOR_VERSION="9.9", generate=fake_generate)
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(default_cohort, "cohort_generator", lambda name="synthetic": fake)
    out = default_cohort.ensure_default_cohort(n_subjects=7, seed=3)
    assert out == tmp_path / "cohorts" / "synthetic-n7-s3-g9.9" and calls == [(7, 3)]
    assert default_cohort.ensure_default_cohort(n_subjects=7, seed=3) == out and calls == [(7, 3)]


def test_missing_cohort_entry_point_is_a_clear_error(monkeypatch):
    from benchmark import default_cohort

    monkeypatch.setattr(default_cohort, "entry_points", lambda **kw: ())
    with pytest.raises(UserError, match=r"mehr_bench\.cohorts.*reinstall"):
        default_cohort.cohort_generator()


# --- shared vocabularies (issue 13 item 8): split and modality names are defined once --------------
SPLIT_NAMES = {"train", "tuning", "held_out"}
SIDE_NAMES = {"ct", "wsi", "cxr", "note", "prs"}
# Files of other parts of issue 13 still being split or migrated by their owners; each is removed
# from this list when its owner replaces the tuple with an import from benchmark/vocabulary.py.
PENDING_VOCABULARY: set[str] = set()


def vocabulary_redefinitions(root: Path, packages=PACKAGES) -> list[str]:
    """Tuple, list or set literals that spell out the three split names or the five side modalities
    (a Literal[...] subscript included), outside benchmark/vocabulary.py.

    Args:
        root: the repository (or a copy of it).
        packages: top-level source folders to scan.

    Returns:
        "path:line" of each re-definition, sorted.
    """
    import ast

    hits = []
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = f.relative_to(root).as_posix()
            if rel == "benchmark/vocabulary.py":
                continue
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=rel)):
                if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                    names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                    if names >= SPLIT_NAMES or names >= SIDE_NAMES:
                        hits.append(f"{rel}:{node.lineno}")
    return sorted(hits)


def test_split_and_modality_names_are_defined_once():
    """No module re-defines the split or modality tuples; they come from benchmark/vocabulary.py.

    Before the migration this listed 11 re-definitions (SPLITS x5, modality tuples and Literals x6)."""
    found = [h for h in vocabulary_redefinitions(REPO) if h.split(":")[0] not in PENDING_VOCABULARY]
    assert found == [], "import these from benchmark/vocabulary.py instead: " + ", ".join(found)


def test_vocabulary_scan_sees_a_redefinition(tmp_path):
    """The oracle can fail: a planted tuple, a Literal and a list are each found; imports are not."""
    pkg = tmp_path / "benchmark"
    pkg.mkdir()
    (pkg / "vocabulary.py").write_text('SPLITS = ("train", "tuning", "held_out")\n')
    (pkg / "planted.py").write_text(textwrap.dedent('''
        from typing import Literal
        from benchmark.vocabulary import SPLITS
        A = ("held_out", "train", "tuning")
        B = Literal["structured", "ct", "wsi", "cxr", "note", "prs"]
        C = ["train", "held_out"]  # two of three splits: not a re-definition
        D = ["ct", "wsi", "cxr", "note", "prs", "extra"]
    '''))
    assert vocabulary_redefinitions(tmp_path, ("benchmark",)) == [
        "benchmark/planted.py:4", "benchmark/planted.py:5", "benchmark/planted.py:7"]


# --- no god-files (issue 13 item 7): every source file reads in one sitting ----------------------
MAX_LINES = 600
# Files of other parts of issue 13 that grew past the limit after the split was planned; each is
# removed from this list when its owner splits it (the test fails if a listed file is short again).
PENDING_SPLIT: set[str] = set()


def long_source_files(root: Path, packages=PACKAGES, limit: int = MAX_LINES) -> list[str]:
    """Python files under the source packages with more than `limit` lines.

    Args:
        root: the repository (or a copy of it).
        packages: top-level source folders to scan.
        limit: the most lines a file may have.

    Returns:
        "path (N lines)" of each file over the limit, sorted by path.
    """
    hits = []
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            n = len(f.read_text(encoding="utf-8").splitlines())
            if n > limit:
                hits.append(f"{f.relative_to(root).as_posix()} ({n} lines)")
    return hits


def test_no_source_file_is_over_600_lines():
    """Before the split: encoders/mehrt/pretrain.py 815, benchmark/stats.py 698, baselines/tabular.py
    657, benchmark/metrics/survival.py 640, encoders/mehrt/model.py 635, benchmark/data/integrity.py 625."""
    found = long_source_files(REPO)
    over = [h for h in found if h.split(" (")[0] not in PENDING_SPLIT]
    assert over == [], "split these along their seams: " + ", ".join(over)
    stale = PENDING_SPLIT - {h.split(" (")[0] for h in found}
    assert not stale, f"{sorted(stale)} is short enough now: remove it from PENDING_SPLIT"


def test_long_file_scan_sees_a_long_file(tmp_path):
    """The oracle can fail: a 601-line file is found, a 600-line one is not."""
    pkg = tmp_path / "baselines"
    pkg.mkdir()
    (pkg / "long.py").write_text("x = 1\n" * 601)
    (pkg / "ok.py").write_text("x = 1\n" * 600)
    assert long_source_files(tmp_path, ("baselines",)) == ["baselines/long.py (601 lines)"]
