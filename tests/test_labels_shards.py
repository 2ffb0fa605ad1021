"""Label extraction over MEDS shards (issue 19): one shard per worker read, workers in parallel, and
labels, attrition, warnings and predicate counts identical to one pass over the whole cohort.

Oracles: the one-pass path (`_compute_labels(..., shards=False)`, every shard in one scan, as the
labeler worked before), and for the predicate scan the rules evaluated row by row on the whole cohort
(`rule.expr()` on every row, what the scan did before it tested the rules on the distinct codes).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import polars as pl
import pytest

from benchmark import label_events as E
from benchmark import labels as L
from benchmark.cli import main
from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.predicates import DatasetRule
from benchmark.task_registry import load_tasks

TASKS = load_tasks()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Cohort:
    """400 synthetic subjects in shards of at most 40 (about 12 shards over the three splits)."""
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("shards") / "cohort"
    generate(root, n_subjects=400, seed=3, images=False, shard_size=40)
    return Cohort(root)


def _applicable(cohort: Cohort) -> list[tuple[str, dict]]:
    out = []
    for name, task in sorted(TASKS.items()):
        try:
            out.append((name, L._resolve_rules(task, cohort.predicate_map())))
        except L.TaskNotApplicable:
            continue
    return out


def _assert_same(a: L.LabelSet, b: L.LabelSet, what: str) -> None:
    assert a.labels.equals(b.labels), what
    assert a.attrition == b.attrition, what
    assert a.warnings == b.warnings, what
    assert a.predicate_counts == b.predicate_counts, what


# one task per labeler feature: each kind, derived rules (kdigo_aki, neutropenic_fever, any_of, of),
# the built-ins _any_event / _record_start, the hospital-stay suitability check, end_at windows
FEATURE_TASKS = ("cxr/chexpert_multilabel", "icu/los_days_24h", "icu/mortality_24h", "meds_dev/readmission_30d",
                 "oncology/aki_1y", "oncology/metastasis_1y", "oncology/neutropenic_fever_1y", "onset/t2d_10y",
                 "onset/t2d_10y_hist1y", "survival/mace")


def _check_every_task(cohort: Cohort, min_tasks: int, monkeypatch, small_batch: int,
                      only: tuple[str, ...] | None = None) -> None:
    """Per shard with workers 1 and 2 (default batches), and with batches of `small_batch` rows
    (subjects then span batches of their shard), each equal to one pass over all shards."""
    tasks = [(n, r) for n, r in _applicable(cohort) if only is None or n in only]
    assert len(tasks) >= min_tasks
    for name, rules in tasks:
        task = TASKS[name]
        one = L._compute_labels(task, cohort, rules, None, shards=False)
        for w in (1, 2):
            _assert_same(L._compute_labels(task, cohort, rules, None, workers=w), one, f"{name} workers={w}")
        with monkeypatch.context() as m:
            m.setattr(E, "BATCH_ROWS", small_batch)
            _assert_same(L._compute_labels(task, cohort, rules, None, workers=2), one, f"{name} small batches")


def test_feature_tasks_same_labels_per_shard_as_in_one_pass(many_shards, monkeypatch):
    assert len(many_shards.data_files()) >= 10
    _check_every_task(many_shards, len(FEATURE_TASKS), monkeypatch, small_batch=777, only=FEATURE_TASKS)


@pytest.mark.slow
def test_every_task_same_labels_per_shard_as_in_one_pass(many_shards, monkeypatch):
    _check_every_task(many_shards, 20, monkeypatch, small_batch=777)


def test_scan_matches_rules_evaluated_on_every_row(many_shards):
    """The distinct-codes prefilter drops no matching row: every dataset predicate's events equal the
    rule applied row by row over the whole cohort (with its value in the rule's final unit)."""
    lf = many_shards.scan(("subject_id", "time", "code", "numeric_value")).filter(pl.col("time").is_not_null())
    checked = set()
    for name, rules in _applicable(many_shards):
        for f in many_shards.data_files()[:3]:
            events, _ = E.predicate_events(TASKS[name], many_shards, rules, [f])
            rows = lf.filter(pl.col("subject_id").is_in(pl.scan_parquet(f).select("subject_id").collect()["subject_id"]
                                                        .implode()))
            for p, rule in rules.items():
                if not isinstance(rule, DatasetRule) or p in checked:
                    continue
                want = (rows.filter(rule.expr())
                        .select("subject_id", "time", rule.value_expr().alias("numeric_value")).collect()
                        .sort("subject_id", "time", "numeric_value", nulls_last=True))
                got = events[p].sort("subject_id", "time", "numeric_value", nulls_last=True)
                assert got.equals(want), (name, p, str(f))
        checked |= {p for p, r in rules.items() if isinstance(r, DatasetRule)}
    assert len(checked) >= 10


def test_each_worker_reads_one_batch_of_one_shard_at_a_time(many_shards, monkeypatch):
    """Spies on the readers: every per-row read is at most BATCH_ROWS rows of one shard and together
    they are the whole cohort once; the filtered read of a shard returns only rows of the task's codes
    and MEDS_DEATH; no more shards are being scanned at once than workers."""
    task = TASKS["oncology/mortality_1y"]
    sizes = [pl.scan_parquet(f).filter(pl.col("time").is_not_null()).select(pl.len()).collect().item()
             for f in many_shards.data_files()]
    monkeypatch.setattr(E, "BATCH_ROWS", 1000)  # several batches per shard
    batches = sum(len(E._row_batches(f)) for f in many_shards.data_files())
    assert batches > 2 * len(sizes)
    reads: list[int] = []
    picked: list[int] = []
    live, peak, lock = [0], [0], threading.Lock()
    read, scan_picked, events = E._read_batch, E._picked_rows, L.predicate_events

    def spy_read(lf):
        df = read(lf)
        reads.append(df.height)
        return df

    def spy_picked(*args, **kw):
        df = scan_picked(*args, **kw)
        picked.append(df.height)
        return df

    def spy_events(*args, **kw):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        try:
            return events(*args, **kw)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(E, "_read_batch", spy_read)
    monkeypatch.setattr(E, "_picked_rows", spy_picked)
    monkeypatch.setattr(L, "predicate_events", spy_events)
    for workers in (1, 2):
        reads.clear()
        picked.clear()
        peak[0] = 0
        L.extract_labels(task, many_shards, use_cache=False, workers=workers)
        assert len(reads) == batches and max(reads) <= 1000 and sum(reads) == sum(sizes)
        assert len(picked) == len(sizes) and 0 < sum(picked) < sum(sizes) / 10  # the task's events only
        assert 1 <= peak[0] <= workers


def test_shards_are_labelled_in_groups_up_to_the_row_budget(many_shards, monkeypatch):
    """Shards' events are labelled together up to LABEL_GROUP_ROWS event rows (one group when they
    fit, one group per shard with a budget of one row), and the labels do not depend on it."""
    task = TASKS["oncology/mortality_1y"]
    rules = L._resolve_rules(task, many_shards.predicate_map())
    groups: list[int] = []
    label_group = L._label_group

    def spy(task, splits, group):
        groups.append(len(group))
        return label_group(task, splits, group)

    monkeypatch.setattr(L, "_label_group", spy)
    one = L._compute_labels(task, many_shards, rules, None, shards=False)
    n = len(many_shards.data_files())
    for budget, want in ((10**9, [n]), (1, [1] * n)):
        groups.clear()
        monkeypatch.setattr(L, "LABEL_GROUP_ROWS", budget)
        _assert_same(L._compute_labels(task, many_shards, rules, None, workers=2), one, f"budget {budget}")
        assert groups == want


def _split_subject_across_shards(src: Cohort, dst: Path) -> Cohort:
    """A copy of `src` where one subject's later events sit in an extra shard (what validate refuses)."""
    shutil.copytree(src.root, dst)
    f = sorted((dst / "data" / "train").glob("*.parquet"))[0]
    df = pl.read_parquet(f)
    sid = df.filter(pl.col("code") == "MEDS_DEATH")["subject_id"][0]  # a subject with a death: labels change
    mine = df.filter(pl.col("subject_id") == sid)
    cut = mine.height // 2
    moved = mine.slice(cut)
    keep = pl.concat([df.filter(pl.col("subject_id") != sid), mine.slice(0, cut)]).sort("subject_id", maintain_order=True)
    keep.write_parquet(f)
    moved.write_parquet(f.parent / "zz_extra.parquet")
    return Cohort(dst)


def test_subject_spanning_shards_is_labelled_in_one_pass(many_shards, tmp_path):
    cohort = _split_subject_across_shards(many_shards, tmp_path / "spans")
    task = TASKS["oncology/mortality_1y"]
    rules = L._resolve_rules(task, cohort.predicate_map())
    got = L._compute_labels(task, cohort, rules, None, workers=2)
    one = L._compute_labels(task, cohort, rules, None, shards=False)
    assert got.labels.equals(one.labels) and got.attrition == one.attrition
    assert any("more than one data shard" in w for w in got.warnings)


def test_cache_key_and_labels_do_not_depend_on_workers(many_shards):
    task = TASKS["oncology/mortality_1y"]
    first = L.extract_labels(task, many_shards, workers=1, announce=False)
    computed = []
    orig = L._compute_labels
    again = None
    try:
        L._compute_labels = lambda *a, **k: computed.append(1) or orig(*a, **k)
        again = L.extract_labels(task, many_shards, workers=2, announce=False)
    finally:
        L._compute_labels = orig
    assert computed == [] and again.cache_file == first.cache_file and again.labels.equals(first.labels)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_workers_must_be_a_whole_number_from_one(many_shards, bad):
    with pytest.raises(UserError, match="workers must be a whole number >= 1"):
        L.extract_labels(TASKS["oncology/mortality_1y"], many_shards, use_cache=False, workers=bad)


def test_labels_cli_workers_flag(many_shards, capsys):
    args = ["labels", "--task", "oncology/mortality_1y", "--data", str(many_shards.root)]
    assert main([*args, "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "fix:" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main([*args, "--workers", "two"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main([*args, "--workers", "2"]) == 0
    two = capsys.readouterr().out.splitlines()[0]
    assert main([*args, "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == two and "samples" in two


# ---------------------------------------------------------------------------- real data, slow
def _reshard(src: Path, dst: Path, per_shard: int) -> Cohort:
    """A copy of a MEDS cohort with each split's subjects re-cut into shards of `per_shard` subjects."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("data"))
    for split_dir in sorted({f.parent for f in (src / "data").rglob("*.parquet")}):
        df = pl.concat([pl.read_parquet(f) for f in sorted(split_dir.glob("*.parquet"))], how="diagonal_relaxed")
        ids = df["subject_id"].unique().sort()
        out = dst / split_dir.relative_to(src)
        out.mkdir(parents=True)
        for i in range(0, ids.len(), per_shard):
            part = df.filter(pl.col("subject_id").is_in(ids.slice(i, per_shard).implode()))
            part.write_parquet(out / f"{i // per_shard}.parquet")
    return Cohort(dst)


@pytest.mark.slow
def test_every_task_same_labels_on_the_default_cohort(default_cohort, monkeypatch):
    _check_every_task(default_cohort, 20, monkeypatch, small_batch=100_003)


@pytest.mark.slow
def test_every_task_same_labels_on_the_mimic_demo_in_many_shards(mimic_meds_020, tmp_path, monkeypatch):
    """The real MIMIC-IV demo (MEDS from the community ETL), re-cut into shards of 8 subjects."""
    cohort = _reshard(mimic_meds_020, tmp_path / "mimic", per_shard=8)
    assert len(cohort.data_files()) >= 10
    _check_every_task(cohort, 20, monkeypatch, small_batch=5003)


@pytest.mark.parametrize("dictionary", [True, False])
def test_distinct_codes_from_the_parquet_dictionaries(many_shards, tmp_path, dictionary):
    """The distinct codes read from the row groups' dictionaries equal polars' unique over every row,
    whether the writer stored `code` with a dictionary or plain, in one row group or many; and a
    shard rewritten either way gives the same predicate events."""
    import pyarrow.parquet as pq
    task = TASKS["oncology/aki_1y"]
    rules = L._resolve_rules(task, many_shards.predicate_map())
    src = many_shards.data_files()[0]
    table = pq.read_table(src)
    shutil.copytree(many_shards.root, tmp_path / "copy")
    copy = Cohort(tmp_path / "copy")
    dst = copy.root / src.relative_to(many_shards.root)
    pq.write_table(table, dst, use_dictionary=dictionary, row_group_size=97)
    assert pq.read_metadata(dst).num_row_groups > 3
    codes = E._distinct_codes(dst)
    assert sorted(codes.to_list()) == sorted(pl.read_parquet(dst)["code"].drop_nulls().unique().to_list())
    a, b = E.predicate_events(task, many_shards, rules, [src]), E.predicate_events(task, copy, rules, [dst])
    assert sorted(a[0]) == sorted(b[0]) and a[1].sort("subject_id").equals(b[1].sort("subject_id"))
    for n in a[0]:
        assert a[0][n].equals(b[0][n]), n


def test_scans_run_at_most_workers_ahead_of_the_labelling():
    """_bounded_map keeps at most `ahead` items submitted and not yet consumed, in order, whatever
    the consumer's pace (pool.map would submit every shard at once, and their events would pile up
    waiting for a slow labelling)."""
    import time
    from concurrent.futures import ThreadPoolExecutor
    submitted, consumed, most = [0], [0], [0]
    lock = threading.Lock()

    def work(i):
        with lock:
            submitted[0] += 1
            most[0] = max(most[0], submitted[0] - consumed[0])
        return i

    with ThreadPoolExecutor(max_workers=2) as pool:
        out = []
        for r in L._bounded_map(pool, work, list(range(30)), ahead=2):
            time.sleep(0.002)  # a slow consumer
            with lock:
                consumed[0] += 1
            out.append(r)
    assert out == list(range(30))
    assert most[0] <= 2
