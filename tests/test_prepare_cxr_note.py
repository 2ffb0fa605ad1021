"""MIMIC-CXR-JPG and MIMIC-IV-Note converters (issue 14 item 7) on fixtures in the published layouts.

The oracle is the hand-written fixture (tests/mimic_fixtures.py): study times, labels under each
uncertainty policy, note times and texts are stated there and re-derived here literally.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.data.integrity import Finding, integrity_findings
from benchmark.errors import UserError
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from data_prep import meds_merge
from data_prep.mimic_cxr import FINDING_CODES, STUDY_CODE, prepare_mimic_cxr
from data_prep.mimic_note import NOTE_CODES, prepare_mimic_note
from tests.mimic_fixtures import (DISCHARGE, FINDINGS, OUTSIDER, RADIOLOGY, SHARDS, STUDIES, STUDY_SPLITS, make_mimic_cohort, write_csv_gz,
                                  write_mimic_cxr, write_mimic_note)

STUDY_TIMES = {50414267: datetime(2180, 5, 6, 21, 30, 14, 531000), 53189527: datetime(2180, 6, 26, 4, 50, 7),
               57375967: datetime(2132, 8, 22, 0, 0, 7, 500000), 58888888: datetime(2132, 10, 1, 10, 15),
               55555555: datetime(2160, 1, 1, 12, 0)}


def expected_labels(study_id: int, *, labeler: str = "chexpert", uncertain: str = "zeros") -> list[int] | None:
    """The fixture's 14 labels of a study: 1.0 positive, -1.0 by policy, 0.0 and blank negative."""
    raw = STUDIES[study_id][4 if labeler == "chexpert" else 5]
    if raw is None:
        return None
    u = 1 if uncertain == "ones" else 0
    return [1 if raw.get(f) == 1.0 else u if raw.get(f) == -1.0 else 0 for f in FINDINGS]


def snapshot(root: Path) -> dict[str, object]:
    """Every file, folder and link of a folder with its bytes or target (to prove it is unchanged)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = (os.readlink(p) if p.is_symlink() else "dir" if p.is_dir() else p.read_bytes())
    return out


@pytest.fixture
def setup(tmp_path):
    cohort = make_mimic_cohort(tmp_path / "cohort")
    return cohort, write_mimic_cxr(tmp_path / "cxr"), write_mimic_note(tmp_path / "note")


def shard_of(cohort: Path, subject: int) -> pl.DataFrame:
    return pl.read_parquet(cohort / "data" / f"{SHARDS[subject]}.parquet").filter(pl.col("subject_id") == subject)


# ---------------------------------------------------------------------------- CXR
def test_cxr_sidecar_one_row_per_study_with_exact_times_views_and_linked_images(setup):
    cohort, raw, _ = setup
    s = prepare_mimic_cxr(raw, cohort)
    side = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    assert s.studies_linked == 5 and s.dropped_unknown_subject == 1 and s.studies_labeled == 4
    assert OUTSIDER not in side["subject_id"].to_list()
    assert dict(zip(side["study_id"], side["time"])) == STUDY_TIMES
    # the representative image is the frontal view (PA over lateral, AP over LL)
    assert dict(zip(side["study_id"], side["dicom_id"])) == {50414267: "d1-pa", 53189527: "d2-ap", 57375967: "d3-pa",
                                                            58888888: "d6-pa", 55555555: "d4-ap"}
    assert dict(zip(side["study_id"], side["n_images"])) == {50414267: 2, 53189527: 1, 57375967: 1, 58888888: 1,
                                                            55555555: 2}
    for r in side.iter_rows(named=True):
        subj, sid = r["subject_id"], r["study_id"]
        assert r["path"] == f"images/cxr/p{str(subj)[:2]}/p{subj}/s{sid}/{r['dicom_id']}.jpg"
        p = cohort / r["path"]
        assert p.is_symlink() and p.resolve() == (raw / "files" / r["path"].removeprefix("images/cxr/")).resolve()
        assert r["labels"] == expected_labels(sid)
    assert dict(zip(side["study_id"], side["cxr_split"])) == {sid: STUDY_SPLITS[sid] for sid in STUDY_TIMES}
    assert [f.message for f in integrity_findings(cohort) if f.level == "error"] == []


@pytest.mark.parametrize("labeler,uncertain", [("chexpert", "zeros"), ("chexpert", "ones"), ("negbio", "zeros")])
def test_cxr_labels_follow_the_labeler_and_the_uncertainty_policy(setup, labeler, uncertain):
    cohort, raw, _ = setup
    s = prepare_mimic_cxr(raw, cohort, labeler=labeler, uncertain=uncertain, images="copy")
    side = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    for sid, labels in zip(side["study_id"], side["labels"].to_list()):
        assert labels == expected_labels(sid, labeler=labeler, uncertain=uncertain), sid
    linked = [sid for sid in STUDIES if STUDIES[sid][0] != OUTSIDER]
    raw_pos = 4 if labeler == "chexpert" else 5
    assert s.uncertain == {f: sum((STUDIES[sid][raw_pos] or {}).get(f) == -1.0 for sid in linked) for f in FINDINGS}
    assert not any(p.is_symlink() for p in (cohort / "images").rglob("*.jpg"))  # copies


def test_cxr_events_land_in_each_subjects_shard_sorted_and_after_the_study(setup):
    cohort, raw, _ = setup
    before = {f: pl.read_parquet(f) for f in (cohort / "data").rglob("*.parquet")}
    prepare_mimic_cxr(raw, cohort)
    for subj in SHARDS:
        ev = shard_of(cohort, subj)
        studies = sorted(t for sid, t in STUDY_TIMES.items() if STUDIES[sid][0] == subj and STUDIES[sid][4])
        assert ev.filter(pl.col("code") == STUDY_CODE)["time"].to_list() == studies
        found = ev.filter(pl.col("code").str.starts_with("CXR//FINDING//"))
        expected = sorted((STUDY_TIMES[sid] + timedelta(hours=2), FINDING_CODES[f])
                          for sid in STUDY_TIMES if STUDIES[sid][0] == subj and STUDIES[sid][4]
                          for f, v in zip(FINDINGS, expected_labels(sid)) if v)
        assert sorted(zip(found["time"], found["code"])) == expected
    for f, old in before.items():  # old rows kept, order (subject_id, time) holds, nulls (static) first
        new = pl.read_parquet(f)
        assert new.filter(~pl.col("code").str.starts_with("CXR//")).equals(old)
        assert new.equals(new.sort("subject_id", "time", nulls_last=False, maintain_order=True))
    # re-running replaces instead of duplicating
    first = {f: pl.read_parquet(f) for f in before}
    prepare_mimic_cxr(raw, cohort)
    assert all(pl.read_parquet(f).equals(df) for f, df in first.items())


@pytest.mark.filterwarnings("ignore:.*matches no event")  # the fixture has no fracture, no pneumonia, ...
@pytest.mark.parametrize("uncertain", ["zeros", "ones"])
def test_chexpert_task_labels_equal_the_fixture_findings(setup, uncertain):
    cohort, raw, _ = setup
    prepare_mimic_cxr(raw, cohort, uncertain=uncertain)
    task = load_tasks()["cxr/chexpert_multilabel"]
    ls = extract_labels(task, Cohort(cohort), use_cache=False)
    got = {(r["subject_id"], r["prediction_time"]): tuple(m)
           for r, m in zip(ls.labels.iter_rows(named=True), ls.multilabel_matrix())}
    want = {(STUDIES[sid][0], STUDY_TIMES[sid]): tuple(expected_labels(sid, uncertain=uncertain))
            for sid in STUDY_TIMES if STUDIES[sid][4] is not None}
    assert [n.replace("_", " ") for n in task.label_names()] == [f.lower() for f in FINDINGS]  # same order
    assert got == want


def test_cxr_metadata_only_with_embeddings_keyed_by_dicom_id(setup, tmp_path):
    cohort, raw, _ = setup
    emb = {"d1-pa": [1.0, 0.0], "d1-lat": [9.0, 9.0], "d2-ap": [0.0, 1.0], "d3-pa": [0.5, 0.5], "d4-ap": [2.0, 2.0]}
    pl.DataFrame({"dicom_id": list(emb), "embedding": list(emb.values())}).write_parquet(tmp_path / "emb.parquet")
    s = prepare_mimic_cxr(raw, cohort, images="none", embeddings=tmp_path / "emb.parquet")
    side = pl.read_parquet(cohort / "modalities" / "cxr.parquet")
    assert "path" not in side.columns and not (cohort / "images").exists()
    assert side.schema["embedding"] == pl.Array(pl.Float32, 2)
    assert {sid: list(e) for sid, e in zip(side["study_id"], side["embedding"])} == {
        50414267: [1.0, 0.0], 53189527: [0.0, 1.0], 57375967: [0.5, 0.5], 55555555: [2.0, 2.0]}
    assert s.dropped_no_embedding == 1  # d6-pa has none
    assert [f.message for f in integrity_findings(cohort) if f.level == "error"] == []


def test_cxr_missing_images_drop_their_studies(setup):
    cohort, raw, _ = setup
    (raw / "files" / "p10" / "p10000764" / "s57375967" / "d3-pa.jpg").unlink()
    s = prepare_mimic_cxr(raw, cohort)
    assert s.dropped_no_image == 1
    assert 57375967 not in pl.read_parquet(cohort / "modalities" / "cxr.parquet")["study_id"].to_list()


# ---------------------------------------------------------------------------- bad input leaves the cohort unchanged
def _drop_column(path: Path, column: str) -> None:
    write_csv_gz(path, pl.read_csv(path).drop(column))


@pytest.mark.parametrize("breakage,file,field", [
    (lambda raw: (raw / "mimic-cxr-2.0.0-metadata.csv.gz").unlink(), "mimic-cxr-2.0.0-metadata.csv.gz", None),
    (lambda raw: _drop_column(raw / "mimic-cxr-2.0.0-metadata.csv.gz", "StudyTime"),
     "mimic-cxr-2.0.0-metadata.csv.gz", "StudyTime"),
    (lambda raw: _drop_column(raw / "mimic-cxr-2.0.0-chexpert.csv.gz", "Pleural Effusion"),
     "mimic-cxr-2.0.0-chexpert.csv.gz", "Pleural Effusion"),
])
def test_cxr_bad_raw_input_names_file_field_and_fix_and_changes_nothing(setup, breakage, file, field):
    cohort, raw, _ = setup
    breakage(raw)
    before = snapshot(cohort)
    with pytest.raises(UserError) as e:
        prepare_mimic_cxr(raw, cohort)
    assert e.value.file.endswith(file) and e.value.field == field and e.value.fix
    assert "PhysioNet" in e.value.fix or "--raw" in e.value.fix
    assert snapshot(cohort) == before


def test_cxr_bad_option_is_a_user_error(setup):
    cohort, raw, _ = setup
    with pytest.raises(UserError, match="unknown value") as e:
        prepare_mimic_cxr(raw, cohort, uncertain="ignore")
    assert e.value.field == "--uncertain"
    with pytest.raises(UserError) as e:
        prepare_mimic_cxr(raw, cohort, images="none")
    assert e.value.field == "--images"


def test_failed_integrity_after_the_change_rolls_everything_back(setup, monkeypatch):
    cohort, raw, _ = setup
    before = snapshot(cohort)

    def broken(root):
        return [Finding("error", "data", "time", "planted", "fix it")]

    monkeypatch.setattr(meds_merge, "integrity_findings", broken)
    with pytest.raises(UserError, match="planted"):
        prepare_mimic_cxr(raw, cohort)
    assert snapshot(cohort) == before  # shards, codes, sidecar, image links and folders all restored


# ---------------------------------------------------------------------------- notes
NOTE_TIMES = {  # when each note existed: storetime, else charttime (date-level -> 23:59:59)
    "10000032-DS-21": datetime(2180, 5, 9, 15, 26), "10000032-DS-22": datetime(2180, 6, 27, 23, 59, 59),
    "11000011-DS-1": datetime(2160, 1, 6, 9, 0), "10000032-RR-14": datetime(2180, 5, 6, 23, 5),
    "10000032-RR-15": datetime(2180, 6, 26, 4, 50), "10000764-RR-2": datetime(2132, 8, 22, 23, 59, 59),
}


def test_notes_become_text_events_at_the_time_they_existed(setup):
    cohort, _, raw = setup
    s = prepare_mimic_note(raw, cohort)
    assert s.notes_linked == {"discharge": 3, "radiology": 3}
    assert s.dropped_unknown_subject == {"discharge": 1, "radiology": 0}
    assert s.time_end_of_day == {"discharge": 1, "radiology": 1} and not s.sidecar_written
    rows = {r[0]: r for r in DISCHARGE + RADIOLOGY}
    for subj in SHARDS:
        ev = shard_of(cohort, subj).filter(pl.col("code").str.starts_with("NOTE//"))
        want = sorted((NOTE_TIMES[n], NOTE_CODES["discharge" if "-DS-" in n else "radiology"], rows[n][7])
                      for n in NOTE_TIMES if rows[n][1] == subj)
        assert sorted(zip(ev["time"], ev["code"], ev["text_value"])) == want  # text exact: newlines, quotes, commas
    for f in (cohort / "data").rglob("*.parquet"):
        df = pl.read_parquet(f)
        assert "text_value" in df.columns
        assert df.equals(df.sort("subject_id", "time", nulls_last=False, maintain_order=True))
    assert [f.message for f in integrity_findings(cohort) if f.level == "error"] == []
    for n, t in NOTE_TIMES.items():  # never visible before it was charted or stored
        chart = datetime.fromisoformat(rows[n][5])
        assert t >= chart and (rows[n][6] is None or t == datetime.fromisoformat(rows[n][6]))


def test_notes_and_cxr_together_and_a_note_sidecar_with_embeddings(setup, tmp_path):
    cohort, cxr_raw, raw = setup
    prepare_mimic_cxr(cxr_raw, cohort)
    ids = list(NOTE_TIMES)
    pl.DataFrame({"note_id": ids, "embedding": [[float(i), 1.0] for i in range(len(ids))]}).write_parquet(
        tmp_path / "n.parquet")
    s = prepare_mimic_note(raw, cohort, note_types=("radiology",), embeddings=tmp_path / "n.parquet")
    side = pl.read_parquet(cohort / "modalities" / "note.parquet")
    assert s.sidecar_written and sorted(side["note_id"]) == sorted(n for n in ids if "-DS-" not in n)
    assert dict(zip(side["note_id"], side["time"])) == {n: t for n, t in NOTE_TIMES.items() if "-DS-" not in n}
    codes = pl.concat([pl.read_parquet(f) for f in (cohort / "data").rglob("*.parquet")])["code"]
    assert (codes == STUDY_CODE).sum() == 4 and (codes == NOTE_CODES["radiology"]).sum() == 3
    assert (codes == NOTE_CODES["discharge"]).sum() == 0
    assert [f.message for f in integrity_findings(cohort) if f.level == "error"] == []


def test_note_bad_input_names_file_field_and_fix_and_changes_nothing(setup):
    cohort, _, raw = setup
    before = snapshot(cohort)
    _drop_column(raw / "note" / "radiology.csv.gz", "storetime")
    with pytest.raises(UserError) as e:
        prepare_mimic_note(raw, cohort)
    assert e.value.file.endswith("radiology.csv.gz") and e.value.field == "storetime" and "MIMIC-IV-Note" in e.value.fix
    (raw / "note" / "discharge.csv.gz").unlink()
    with pytest.raises(UserError) as e:
        prepare_mimic_note(raw, cohort, note_types=("discharge",))
    assert e.value.file.endswith("discharge.csv.gz") and "--raw" in e.value.fix
    write_csv_gz(raw / "note" / "discharge.csv.gz", pl.DataFrame(
        {c: ["x"] for c in ("note_id", "note_type", "charttime", "storetime", "text")}
        | {"subject_id": [10000032], "hadm_id": [1], "note_seq": [1]}))
    with pytest.raises(UserError) as e:
        prepare_mimic_note(raw, cohort, note_types=("discharge",))
    assert e.value.field == "charttime" and "'x'" in e.value.message
    assert snapshot(cohort) == before
    assert np.all([p.suffix != ".tmp" for p in (cohort / "data").rglob("*")])
