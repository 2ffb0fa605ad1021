"""Labels out, labels in: `labels --export` writes MEDS LabelSchema per split (the layout MEDS-DEV's
models read), `run --labels DIR` uses labels made elsewhere instead of a task's extraction (checked,
hashed into provenance and cache keys, behind the same leakage guard)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.cli import main
from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.label_files import read_label_dir, task_labels, write_label_dir
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from tests.cohort_factory import make_cohort

TASK = "oncology/mortality_1y"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Cohort:
    """A 300-subject synthetic cohort without images (seconds to build and to run a baseline on)."""
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("tiny") / "cohort"
    generate(root, n_subjects=300, seed=1, images=False)
    return Cohort(root)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _export(cohort: Cohort, out: Path, task: str = TASK) -> Path:
    assert main(["labels", "--task", task, "--data", str(cohort.root), "--export", str(out)]) == 0
    return out / task


# ---------------------------------------------------------------------------- labels out
def test_export_writes_label_schema_per_split(tiny, env):
    import meds

    folder = _export(tiny, env / "exp")
    files = sorted(folder.glob("*/0.parquet"))
    assert [f.parent.name for f in files] == ["held_out", "train", "tuning"]
    splits = tiny.splits
    for f in files:
        table = pq.read_table(f)
        meds.LabelSchema.validate(table)  # the library's own check: columns, types, nullability
        subjects = pl.from_arrow(table).select("subject_id").join(splits, on="subject_id")
        assert set(subjects["split"]) <= {f.parent.name}  # each file holds only its split's subjects
    ours = extract_labels(load_tasks()[TASK], tiny, announce=False).labels
    assert read_label_dir(folder).select(ours.columns).sort("subject_id", "prediction_time").equals(ours)
    _export(tiny, env / "exp")  # a second export replaces the folder
    assert not [p for p in (env / "exp").rglob("*") if p.name.startswith(".")]  # no temp folders left


def test_subjects_without_a_split_are_reported_not_dropped_silently(tmp_path):
    labels = _labels([1, 2, 3], ["2020-01-01"] * 3, [True, False, True])
    splits = pl.DataFrame({"subject_id": [1, 2], "split": ["train", "held_out"]})
    with pytest.warns(UserWarning, match=r"1 label row\(s\) of 1 subject\(s\) without a split.*\[3\]"):
        out = write_label_dir(labels, splits, tmp_path / "l")
    assert read_label_dir(out)["subject_id"].sort().to_list() == [1, 2]


# ---------------------------------------------------------------------------- reading
def test_read_label_dir_any_depth_one_file_and_aces_columns(tmp_path):
    """ACES writes every LabelSchema column (nulls where unused) and may leave other files (.logs)."""
    rows = {"subject_id": pa.array([1, 2], pa.int64()),
            "prediction_time": pa.array([0, 10**12], pa.timestamp("us")), "boolean_value": [True, False],
            "integer_value": pa.array([None, None], pa.int64()), "float_value": pa.array([None, None], pa.float32()),
            "categorical_value": pa.array([None, None], pa.string())}
    (tmp_path / "d" / "train" / "sub").mkdir(parents=True)
    (tmp_path / "d" / ".logs").mkdir()
    pq.write_table(pa.table(rows), tmp_path / "d" / "train" / "sub" / "3.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "d" / ".logs" / "junk.parquet")
    df = read_label_dir(tmp_path / "d")
    assert df.height == 2 and df["boolean_value"].to_list() == [True, False]
    assert read_label_dir(tmp_path / "d" / "train" / "sub" / "3.parquet").equals(df)


@pytest.mark.parametrize("table, field", [
    (pa.table({"subject_id": [1], "boolean_value": [True]}), "prediction_time"),
    (pa.table({"subject_id": [1], "prediction_time": pa.array([0], pa.timestamp("us")), "boolean_value": ["yes"]}),
     "boolean_value"),
])
def test_bad_label_files_name_file_and_field(tmp_path, table, field):
    pq.write_table(table, tmp_path / "0.parquet")
    with pytest.raises(UserError) as e:
        read_label_dir(tmp_path)
    assert e.value.field == field and e.value.file == str(tmp_path / "0.parquet") and e.value.fix
    (tmp_path / "0.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="cannot be read as parquet"):
        read_label_dir(tmp_path)
    with pytest.raises(UserError, match="no such label folder"):
        read_label_dir(tmp_path / "missing")


def _hand_cohort(tmp_path: Path) -> Cohort:
    ev = []
    for s in range(1, 7):
        ev += [(s, "2020-01-01", "ICD10CM/C34.90"), (s, "2020-06-01", "ICD10CM/I10")]
    return Cohort(make_cohort(tmp_path / "c", ev, splits={1: "train", 2: "train", 3: "train", 4: "tuning",
                                                          5: "held_out", 6: "held_out"}))


def _labels(ids, times, values) -> pl.DataFrame:
    return pl.DataFrame({"subject_id": ids, "prediction_time": [pl.Series([t]).str.to_datetime()[0] for t in times],
                         "boolean_value": values}, schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                                           "boolean_value": pl.Boolean})


@pytest.mark.parametrize("labels, field, message", [
    (_labels([1, 2], ["2020-02-01", "2020-02-01"], [True, None]), "boolean_value", "binary task needs"),
    (_labels([1, 99], ["2020-02-01", "2020-02-01"], [True, False]), "subject_id", "not in the cohort"),
    (_labels([1, 1], ["2020-02-01", "2020-02-01"], [True, False]), "prediction_time", "share a"),
    (_labels([1, 2], ["2020-02-01", "2021-02-01"], [True, False]), "prediction_time", "outside their subject's record"),
    (_labels([1, 2], ["2019-02-01", "2020-02-01"], [True, False]), "prediction_time", "outside their subject's record"),
])
def test_labels_that_do_not_fit_the_task_or_cohort_are_refused(tmp_path, labels, field, message):
    cohort = _hand_cohort(tmp_path)
    pq.write_table(labels.to_arrow(), tmp_path / "labels.parquet")
    with pytest.raises(UserError, match=message) as e:
        task_labels(tmp_path / "labels.parquet", load_tasks()[TASK], cohort)
    assert e.value.field == field and e.value.fix


def test_a_split_folder_must_agree_with_the_cohort(tmp_path):
    cohort = _hand_cohort(tmp_path)
    (tmp_path / "l" / "train").mkdir(parents=True)
    pq.write_table(_labels([1, 5], ["2020-02-01"] * 2, [True, False]).to_arrow(), tmp_path / "l" / "train" / "0.parquet")
    with pytest.raises(UserError, match="subject_id 5 is under train/ but in the cohort's held_out split") as e:
        task_labels(tmp_path / "l", load_tasks()[TASK], cohort)
    assert e.value.field == "split"


# ---------------------------------------------------------------------------- labels in: run --labels
def _run(cohort, results, *extra) -> int:
    return main(["run", "--model", "logistic_regression", "--task", TASK, "--data", str(cohort.root),
                 "--results", str(results), "--budget", "smoke", *extra])


def _record(results: Path) -> dict:
    return json.loads((results / "logistic_regression" / TASK / "seed0.json").read_text())


def _preds(results: Path) -> pl.DataFrame:
    return pl.read_parquet(results / "logistic_regression" / TASK / "seed0.predictions.parquet")


def test_run_with_exported_labels_equals_run_with_extraction(tiny, env):
    assert _run(tiny, env / "a") == 0
    folder = _export(tiny, env / "exp")
    assert _run(tiny, env / "b", "--labels", str(env / "exp")) == 0  # an export's DIR: the task's subfolder
    assert _run(tiny, env / "c", "--labels", str(folder)) == 0       # one task's folder
    a, b, c = _record(env / "a"), _record(env / "b"), _record(env / "c")
    assert "labels_hash" not in a["provenance"]  # extracted labels: the record is as before
    assert b["provenance"]["labels_hash"] == c["provenance"]["labels_hash"]
    assert a["metrics"] == b["metrics"] == c["metrics"]  # fairness, counts and metrics: every downstream feature
    assert a["fairness"] == b["fairness"] and a["n_test"] == b["n_test"]
    assert _preds(env / "a").equals(_preds(env / "b"))


def test_other_labels_never_reuse_a_finished_cell_or_cached_features(tiny, env, capsys):
    folder = _export(tiny, env / "exp")
    flipped = env / "flipped"
    for f in folder.glob("*/0.parquet"):  # other labels for the same samples: every train label flipped
        df = pl.read_parquet(f)
        if f.parent.name == "train":
            df = df.with_columns(~pl.col("boolean_value"))
        (flipped / f.parent.name).mkdir(parents=True)
        pq.write_table(df.to_arrow(), flipped / f.parent.name / "0.parquet")
    assert _run(tiny, env / "r", "--labels", str(folder)) == 0
    first = _record(env / "r")
    assert _run(tiny, env / "r", "--labels", str(folder)) == 0
    assert "1 finished cell(s) kept" in capsys.readouterr().out  # same labels: kept
    assert _run(tiny, env / "r", "--labels", str(flipped)) == 0
    assert "other labels and will be recomputed" in capsys.readouterr().out
    second = _record(env / "r")
    assert second["provenance"]["labels_hash"] != first["provenance"]["labels_hash"]
    assert second["metrics"]["auroc"]["value"] != first["metrics"]["auroc"]["value"]
    assert _run(tiny, env / "r") == 0  # extracted labels again: the --labels cell is not reused either
    assert "will be recomputed" in capsys.readouterr().out and "labels_hash" not in _record(env / "r")["provenance"]
    # each label set has its own work folder: a feature matrix built for other labels is never read
    work = sorted(p.name for p in (env / "cache" / "work").glob("*/*"))
    tags = [w for w in work if w.startswith("oncology__mortality_1y")]
    assert len(tags) == 3 and len({t for t in tags}) == 3, work
    for t in tags:
        assert list((env / "cache" / "work").glob(f"*/{t}/bag_of_events-*.npz")), t


def test_leakage_guard_applies_to_labels_made_elsewhere(tmp_path, monkeypatch, with_models):
    """Events after each label's prediction time (planted) are invisible to the model."""
    from benchmark.api import Prediction, spec
    from benchmark.runner import run_evaluation

    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    ev = []
    for s in range(1, 41):
        ev += [(s, "2020-01-01", "ICD10CM/C34.90"), (s, "2020-03-01", "LOINC/2160-0", 1.0),
               (s, "2020-03-01 00:00:01", "SYNTH/PLANTED"),  # one second after the prediction time
               (s, "2020-09-01", "ICD10CM/I10")]
    splits = {s: "train" if s <= 30 else "tuning" if s <= 35 else "held_out" for s in range(1, 41)}
    cohort = Cohort(make_cohort(tmp_path / "c", ev, splits=splits))
    labels = _labels(list(range(1, 41)), ["2020-03-01"] * 40, [s % 2 == 0 for s in range(1, 41)])
    pq.write_table(labels.to_arrow(), tmp_path / "labels.parquet")
    seen: set[str] = set()

    class Spy:
        def fit(self, data):
            seen.update(data.visible_events(("train", "tuning")).collect()["code"].to_list())
            return self

        def predict(self, data, split):
            seen.update(data.visible_events(split).collect()["code"].to_list())
            return Prediction(score=data.y(split).astype(float) * 0 + 0.5)

    with_models["spy"] = spec("spy", "records what it sees", lambda budget, seed: Spy(), modalities=("structured",),
                              reference="test", kind="baseline")
    ev_ = run_evaluation("spy", TASK, cohort, tmp_path / "r", budget="smoke", labels=tmp_path / "labels.parquet")
    assert ev_.records and ev_.records[0].provenance.labels_hash
    assert "LOINC/2160-0" in seen and "ICD10CM/C34.90" in seen  # at or before the prediction time: visible
    assert "SYNTH/PLANTED" not in seen and "ICD10CM/I10" not in seen


def test_run_labels_cli_errors(tiny, env, capsys):
    folder = _export(tiny, env / "exp")
    assert _run(tiny, env / "r", "--labels", str(env / "nope")) == 2
    err = capsys.readouterr().err
    assert "no such label folder" in err and "fix:" in err and "Traceback" not in err
    two = main(["run", "--model", "logistic_regression", "--task", f"{TASK},oncology/transfusion_1y",
                "--data", str(tiny.root), "--results", str(env / "r"), "--budget", "smoke", "--labels", str(folder)])
    assert two == 2 and "holds one task's labels" in capsys.readouterr().err
    assert not (env / "r" / "logistic_regression").exists()  # refused before any cell
