"""benchmark.fairness: group labels (demographics, age at prediction time, modality availability
through the leakage guard), per-group metrics, fairlearn parity differences, suppression of small
groups, and that the block holds aggregates only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.fairness import age_band, fairness_report, group_labels
from benchmark.metrics.binary import auroc
from benchmark.metrics.survival import c_index_harrell
from benchmark.model_api import Prediction, TaskData
from benchmark.taskspec import TaskSpec
from tests.cohort_factory import make_cohort

BASE = 8_300_000
PRED_TIME = datetime(2020, 6, 1, 12, 0)


def _task(kind: str = "binary", fairness=("sex", "race", "ethnicity", "age_band", "modality_availability"),
          modalities=("ct",)) -> TaskSpec:
    label = ({"outcome": "death", "window": {"start": "0", "end": "365d"}} if kind == "binary"
             else {"event": "death", "horizon": "365d"} if kind == "survival"
             else {"duration_to": ["death"]})
    metrics = {"binary": ["auroc"], "survival": ["c_index_harrell"], "regression": ["mae"]}[kind]
    return TaskSpec.model_validate({"name": f"test/{kind}", "version": 1, "kind": kind, "description": "t",
                                    "index": {"predicate": "death"}, "label": label,
                                    "modalities": list(modalities), "fairness": list(fairness),
                                    "metrics": metrics, "main_metric": metrics[0]})


def _population(n: int = 150, seed: int = 0) -> dict:
    """Subjects with sex, race, ethnicity, birth; a CT before (most) or only after (some) the prediction."""
    rng = np.random.default_rng(seed)
    sid = BASE + np.arange(n)
    sex = np.array(["F"] * 80 + ["M"] * 62 + ["X"] * 8)       # X: 8 subjects -> suppressed
    race = np.array(["WHITE"] * 110 + ["BLACK"] * 25 + [None] * 15, dtype=object)
    rng.shuffle(race)
    y = (rng.uniform(size=n) < 0.35).astype(int)
    # BLACK group: only 4 subjects with the event -> suppressed for too few events
    black = np.flatnonzero(race == "BLACK")
    y[black] = 0
    y[black[:4]] = 1
    ages = rng.uniform(30, 95, n)
    ages[:3] = [49.99, 50.01, 80.5]
    ct = np.where(np.arange(n) % 5 == 0, "after", "before")   # every 5th subject: CT only after
    ct[np.arange(n) % 7 == 0] = "none"
    return {"sid": sid, "sex": sex, "race": race, "y": y, "ages": ages, "ct": ct}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    pop = _population()
    events = []
    for i, s in enumerate(pop["sid"]):
        s = int(s)
        birth = PRED_TIME - timedelta(days=float(pop["ages"][i]) * 365.25)
        events.append((s, None, f"GENDER/{pop['sex'][i]}"))
        if pop["race"][i] is not None:
            events.append((s, None, f"RACE/{pop['race'][i]}"))
        events.append((s, None, "ETHNICITY/" + ("HISPANIC" if i % 4 == 0 else "NOT_HISPANIC")))
        events.append((s, birth.strftime("%Y-%m-%d %H:%M"), "MEDS_BIRTH"))
        events.append((s, "2020-05-01 10:00", "LOINC/2160-0", 1.0))
    root = make_cohort(tmp_path_factory.mktemp("fair") / "c", events,
                       splits={int(s): "held_out" for s in pop["sid"]})
    rows = [(int(s), PRED_TIME - timedelta(days=30) if c == "before" else PRED_TIME + timedelta(days=2))
            for s, c in zip(pop["sid"], pop["ct"]) if c != "none"]
    (root / "modalities").mkdir()
    pl.DataFrame({"subject_id": [r[0] for r in rows], "time": [r[1] for r in rows],
                  "path": ["x.npy"] * len(rows)},
                 schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "path": pl.String}
                 ).write_parquet(root / "modalities" / "ct.parquet")
    return Cohort(root), pop


def _data(cohort_and_pop, task: TaskSpec, tmp_path, y=None) -> TaskData:
    cohort, pop = cohort_and_pop
    n = len(pop["sid"])
    cols = {"subject_id": pop["sid"].astype(np.int64), "prediction_time": [PRED_TIME] * n, "split": ["held_out"] * n}
    if task.kind == "binary":
        cols["boolean_value"] = pop["y"].astype(bool) if y is None else y
    elif task.kind == "survival":
        cols["float_value"], cols["boolean_value"] = y
    else:
        cols["float_value"] = y
    labels = pl.DataFrame(cols).with_columns(pl.col("prediction_time").cast(pl.Datetime("us")))
    return TaskData(task=task, cohort=cohort, labels=labels, seed=0, work_dir=tmp_path)


def _score(pop, seed=1):
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(1.5 * pop["y"] + rng.normal(0, 1, len(pop["y"])) - 0.7)))


def test_age_band_edges():
    got = age_band(np.array([0, 49.999, 50, 64.999, 65, 79.999, 80, 104, np.nan]))
    assert got.tolist() == ["<50", "<50", "50-64", "50-64", "65-79", "65-79", "80+", "80+", "unknown"]


def test_group_labels(cohort, tmp_path):
    _, pop = cohort
    data = _data(cohort, _task(), tmp_path)
    labels, notes = group_labels(data)
    assert notes == []
    assert set(labels) == {"sex", "race", "ethnicity", "age_band", "modality_availability/ct"}
    assert labels["sex"].tolist() == pop["sex"].tolist()
    assert labels["race"].tolist() == [r if r is not None else "unknown" for r in pop["race"]]
    assert labels["age_band"][:3].tolist() == ["<50", "50-64", "80+"]
    # a CT study after the prediction time is not "available" (leakage guard)
    want = np.where(pop["ct"] == "before", "available", "not available")
    assert labels["modality_availability/ct"].tolist() == want.tolist()


def test_binary_report(cohort, tmp_path):
    _, pop = cohort
    data = _data(cohort, _task(), tmp_path)
    s = _score(pop)
    thr = 0.45
    rep = fairness_report(data, Prediction(score=s), threshold=thr, n_boot=200)
    assert rep["metric"] == "auroc" and rep["split"] == "held_out" and rep["min_count"] == 10
    sex = rep["attributes"]["sex"]
    groups = {g["group"]: g for g in sex["groups"]}
    assert set(groups) == {"F", "M", "X"}
    # suppressed: name and reason only, no numbers
    assert groups["X"] == {"group": "X", "suppressed": True, "reason": "fewer than 10 subjects"}
    for g in ("F", "M"):
        m = pop["sex"] == g
        assert groups[g]["value"] == pytest.approx(auroc(pop["y"][m], s[m]), abs=1e-6)
        assert groups[g]["ci_low"] <= groups[g]["value"] <= groups[g]["ci_high"]
        assert "n_subjects" not in groups[g], "counts must be withheld when a group is suppressed"
    # at this threshold group M has 5 false negatives: rates x counts would reveal a cell of 5, so
    # every group's rates and the parity differences are withheld (small-cell rule, issue 12)
    assert "demographic_parity_difference" not in sex and "equalized_odds_difference" not in sex
    assert "below 10" in sex["rates_withheld"] and sex["small_cells_checked"] == 10
    assert all("tpr" not in g and "selection_rate" not in g for g in sex["groups"])
    # a score that flags every event (FN = 0) and 40% of the non-events: every cell is 0 or >= 10
    s = np.where(pop["y"] == 1, 0.6 + 0.4 * np.random.default_rng(5).uniform(size=len(s)),
                 np.random.default_rng(6).uniform(size=len(s)))
    thr = 0.6
    rep = fairness_report(data, Prediction(score=s), threshold=thr, n_boot=200)
    sex = rep["attributes"]["sex"]
    groups = {g["group"]: g for g in sex["groups"]}
    assert "rates_withheld" not in sex
    # parity differences over the groups that are shown (F, M), by hand
    keep = pop["sex"] != "X"
    pred = s >= thr
    rate = {g: pred[pop["sex"] == g].mean() for g in ("F", "M")}
    tpr = {g: pred[(pop["sex"] == g) & (pop["y"] == 1)].mean() for g in ("F", "M")}
    fpr = {g: pred[(pop["sex"] == g) & (pop["y"] == 0)].mean() for g in ("F", "M")}
    assert sex["demographic_parity_difference"] == pytest.approx(abs(rate["F"] - rate["M"]), abs=1e-6)
    assert sex["equalized_odds_difference"] == pytest.approx(
        max(abs(tpr["F"] - tpr["M"]), abs(fpr["F"] - fpr["M"])), abs=1e-6)
    assert groups["F"]["selection_rate"] == pytest.approx(rate["F"], abs=1e-6)
    assert keep.sum() == 142
    worst = min(("F", "M"), key=lambda g: groups[g]["value"])
    assert sex["worst_group"]["group"] == worst
    assert sex["gap"] == pytest.approx(abs(groups["F"]["value"] - groups["M"]["value"]), abs=1e-5)
    # race: BLACK has 4 subjects with the event, unknown has 15 subjects but is checked like any group
    race = {g["group"]: g for g in rep["attributes"]["race"]["groups"]}
    assert race["BLACK"] == {"group": "BLACK", "suppressed": True,
                             "reason": "fewer than 10 subjects with an event"}
    assert [g["group"] for g in rep["attributes"]["race"]["groups"]][-1] == "unknown"
    # ethnicity: nothing suppressed, so counts are shown
    eth = {g["group"]: g for g in rep["attributes"]["ethnicity"]["groups"]}
    assert eth["HISPANIC"]["n_subjects"] == 38 and eth["NOT_HISPANIC"]["n_subjects"] == 112
    assert eth["HISPANIC"]["n_events"] == int(pop["y"][::4].sum())
    assert rep["attributes"]["modality_availability/ct"]["n_groups"] == 2


def test_block_is_aggregate_json(cohort, tmp_path):
    _, pop = cohort
    data = _data(cohort, _task(), tmp_path)
    s = _score(pop)
    rep = fairness_report(data, Prediction(score=s), threshold=0.5, n_boot=50)
    text = json.dumps(rep)  # plain JSON types only
    for sid in pop["sid"]:
        assert str(sid) not in text
    assert "2020-06-01" not in text
    for v in s:
        assert f"{v:.6f}" not in text
    for attr in rep["attributes"].values():
        for g in attr["groups"]:
            if g["suppressed"]:
                assert not any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in g.values())


def test_only_listed_attributes_and_no_threshold(cohort, tmp_path):
    _, pop = cohort
    data = _data(cohort, _task(fairness=("sex",)), tmp_path)
    rep = fairness_report(data, Prediction(score=_score(pop)), threshold=None, n_boot=50)
    assert list(rep["attributes"]) == ["sex"]
    assert "demographic_parity_difference" not in rep["attributes"]["sex"]
    assert "threshold" in rep["attributes"]["sex"]["parity_note"]
    none = fairness_report(_data(cohort, _task(fairness=()), tmp_path), Prediction(score=_score(pop)))
    assert none["attributes"] == {} and none["notes"]


def test_modality_listed_but_missing_from_cohort(cohort, tmp_path):
    _, pop = cohort
    data = _data(cohort, _task(fairness=("modality_availability",), modalities=("ct", "wsi")), tmp_path)
    rep = fairness_report(data, Prediction(score=_score(pop)), threshold=0.5, n_boot=50)
    assert "modality_availability/ct" in rep["attributes"]
    assert "modality_availability/wsi" not in rep["attributes"]
    assert any("wsi" in n for n in rep["notes"])


def test_everything_suppressed_with_a_high_threshold(cohort, tmp_path):
    _, pop = cohort
    data = _data(cohort, _task(fairness=("sex",)), tmp_path)
    rep = fairness_report(data, Prediction(score=_score(pop)), threshold=0.5, n_boot=50, min_count=100)
    sex = rep["attributes"]["sex"]
    assert all(g["suppressed"] for g in sex["groups"]) and sex["worst_group"] is None
    assert sex["parity_note"] == "fewer than two groups large enough to compare"


def test_survival_and_regression(cohort, tmp_path):
    _, pop = cohort
    n = len(pop["sid"])
    rng = np.random.default_rng(5)
    risk = rng.normal(size=n)
    t = rng.exponential(200, n) * np.exp(-risk)
    ev = rng.uniform(size=n) < 0.6
    data = _data(cohort, _task("survival", fairness=("sex",)), tmp_path, y=(t, ev))
    rep = fairness_report(data, Prediction(score=risk), threshold=0.3, n_boot=100)
    assert rep["metric"] == "c_index_harrell" and rep["threshold"] is None
    g = {x["group"]: x for x in rep["attributes"]["sex"]["groups"]}
    m = pop["sex"] == "F"
    assert g["F"]["value"] == pytest.approx(c_index_harrell(t[m], ev[m], risk[m]), abs=1e-6)
    assert g["X"]["suppressed"]
    assert "demographic_parity_difference" not in rep["attributes"]["sex"]

    yv = rng.uniform(1, 10, n)
    pred = yv + rng.normal(0, 1 + (pop["sex"] == "M"), n)
    data = _data(cohort, _task("regression", fairness=("sex",)), tmp_path, y=yv)
    rep = fairness_report(data, Prediction(score=pred), n_boot=100)
    assert rep["metric"] == "mae" and rep["higher_is_better"] is False
    sex = rep["attributes"]["sex"]
    g = {x["group"]: x for x in sex["groups"]}
    assert g["F"]["value"] == pytest.approx(np.abs(pred - yv)[pop["sex"] == "F"].mean(), abs=1e-6)
    assert sex["worst_group"]["group"] == "M"  # larger error is worse for MAE


def test_parity_differences_equal_fairlearns_functions():
    """_parity reads both differences off its one MetricFrame (issue 19: each fairlearn function built
    its own); the oracle is fairlearn's demographic_parity_difference / equalized_odds_difference."""
    import numpy as np
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    from benchmark.fairness import _parity, _r
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = 3000
        groups = rng.choice(np.array(["a", "b", "c", "unknown"])[: 2 + seed % 3], n)
        y = (rng.random(n) < 0.3).astype(int)
        pred = ((rng.random(n) + 0.3 * y + 0.1 * (groups == "a")) > 0.7).astype(int)
        diffs, _ = _parity(y, pred, groups)
        assert diffs == {"demographic_parity_difference": _r(demographic_parity_difference(y, pred, sensitive_features=groups)),
                         "equalized_odds_difference": _r(equalized_odds_difference(y, pred, sensitive_features=groups))}
