"""The baselines as the MEHRT paper (OpenReview ywFxZhMnuB) describes them: the search spaces of its
Tables B1-B4 (typed in here from the paper's text), the B.1 bag-of-events feature set, and B.2 late
fusion for all four baseline families (a planted oracle: the fused score is the mean of the member
models' own predictions, a member dropped where its modality is missing)."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from baselines import spaces
from baselines.learners import make_learner
from baselines.tuning import fit_tuned
from benchmark.learn.folds import make_folds
from benchmark.model_api import Budget

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ Tables B1-B4, as printed in the paper
# (family, low, high); parameter names are the libraries' own for the paper's row labels:
# "Number of Estimators" -> iterations / n_estimators, "Max Depth" -> depth / max_depth,
# "L2 Regularization" -> l2_leaf_reg, alpha / lambda -> reg_alpha / reg_lambda.
PAPER_TABLES = {
    "catboost": {"iterations": ("UniformInt", 5, 125), "depth": ("UniformInt", 2, 12),
                 "learning_rate": ("LogUniform", 1e-5, 1.0), "l2_leaf_reg": ("LogUniform", 1.0, 10.0)},
    "xgboost": {"n_estimators": ("UniformInt", 5, 125), "max_depth": ("UniformInt", 1, 10),
                "reg_alpha": ("LogUniform", 1e-16, 1e2), "reg_lambda": ("LogUniform", 1e-16, 1e2),
                "learning_rate": ("LogUniform", 1e-7, 1.0)},
    "random_forest": {"n_estimators": ("UniformInt", 5, 100), "max_depth": ("UniformInt", 2, 12)},
    "logistic_regression": {"C": ("LogUniform", 1e-10, 1e10)},
}


@pytest.mark.parametrize("name", sorted(PAPER_TABLES))
def test_paper_baselines_search_exactly_the_papers_tables(name):
    setup = spaces.SETUPS[name]
    typed = {k: (type(d).__name__, d.low, d.high) for k, d in setup.space.items()}
    assert typed == PAPER_TABLES[name]                       # same knobs (none added), families and bounds
    assert not setup.early_stopping                          # the paper has none
    assert setup.feature_set == "paper_b1"
    assert set(setup.defaults) == set(setup.space)           # trial 0 lies inside the paper's space
    for k, (_, lo, hi) in PAPER_TABLES[name].items():
        assert lo <= setup.defaults[k] <= hi, (k, setup.defaults[k])
    for trial in spaces.draw_trials(name, 40, np.random.default_rng(3))[1:]:
        for k, (_, lo, hi) in PAPER_TABLES[name].items():
            assert lo <= trial[k] <= hi


def test_tuned_variants_keep_the_previous_setup_under_their_own_names():
    """catboost_tuned etc. draw what catboost etc. drew before (values from the old code)."""
    t = spaces.draw_trials("catboost_tuned", 3, np.random.default_rng(0))
    assert t[0] == {"depth": 6, "learning_rate": 0.05, "l2_leaf_reg": 3.0, "iterations": 1000}
    assert t[1]["depth"] == 8 and t[1]["iterations"] == 673
    assert spaces.SETUPS["catboost_tuned"].early_stopping and spaces.SETUPS["catboost_tuned"].feature_set == "extended"
    assert spaces.SETUPS["lightgbm"].source.startswith("ours")
    for n in ("catboost", "xgboost", "random_forest", "logistic_regression"):
        assert spaces.SETUPS[f"{n}_tuned"].library == n and spaces.SETUPS[f"{n}_tuned"].source == "ours"


def test_paper_setup_trains_its_own_rounds_without_early_stopping():
    """Planted: a label the trees cannot learn makes early stopping quit after a few rounds; the
    paper's setup ignores the validation fold, and the search refits with the drawn round count."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3)).astype(np.float32)
    y = (rng.random(240) < 0.5).astype(np.int8)               # pure noise
    cfg = {"n_estimators": 90, "max_depth": 3, "reg_alpha": 1e-16, "reg_lambda": 1.0, "learning_rate": 0.3}
    es = make_learner("xgboost", "binary", cfg, seed=0, threads=1, max_iterations=300).fit(
        X[:160], y[:160], eval_set=(X[160:], y[160:]))
    assert es.n_iter_ < 90                                    # early stopping would cut it
    m = make_learner("xgboost", "binary", cfg, seed=0, threads=1, max_iterations=300, early_stopping=False).fit(
        X[:160], y[:160], eval_set=(X[160:], y[160:]))
    assert m.n_iter_ == 90 and m.model_.get_booster().num_boosted_rounds() == 90
    assert m.model_.get_params()["reg_alpha"] == 1e-16       # the paper's knobs reach the library
    folds = make_folds("binary", y, np.arange(240), 3, 0)
    tuned = fit_tuned("xgboost", "binary", X, y, folds, Budget("t", n_trials=3, n_folds=3, max_iterations=60,
                                                              n_boot=10), seed=1)
    for trial in tuned.search.trials:                         # every trial trains min(drawn, cap) rounds
        assert trial["n_iter"] == min(trial["params"]["n_estimators"], 60)
    assert tuned.model.model_.get_booster().num_boosted_rounds() == min(tuned.params["n_estimators"], 60)


def test_paper_logistic_regression_uses_only_C_and_library_defaults():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int8)
    m = make_learner("logistic_regression", "binary", {"C": 0.5}, seed=0, threads=1, max_iterations=100,
                     early_stopping=False).fit(X, y)
    p = m.model_.get_params()
    assert p["C"] == 0.5 and p["solver"] == "lbfgs"
    rf = make_learner("random_forest", "binary", {"n_estimators": 7, "max_depth": 3}, seed=0, threads=1,
                      max_iterations=100, early_stopping=False).fit(X, y)
    assert len(rf.model_.estimators_) == 7 and rf.model_.get_params()["max_features"] == "sqrt"
    assert max(e.get_depth() for e in rf.model_.estimators_) <= 3


# ------------------------------------------------------------------ B.1 features
def _t(day: int) -> str:
    return (datetime(2020, 1, 1) + timedelta(days=day)).isoformat(sep=" ")


def _b1_cohort(tmp_path, *, ethnicity: bool):
    """200 subjects, born 1960-01-01; subject 0 alone has a rare code (0.5% < 1%)."""
    from tests.cohort_factory import make_cohort
    ev = []
    for s in range(200):
        ev += [(s, "1960-01-01 00:00", "MEDS_BIRTH"), (s, None, "GENDER/F" if s % 2 else "GENDER/M"),
               (s, None, "RACE/WHITE" if s % 3 else "RACE/BLACK"),
               (s, _t(10 + s % 5), "ICD10CM/C34.90"), (s, _t(20), "ICD10CM/C34.10"),
               (s, _t(30), "LOINC/2160-0", 1.0 + s), (s, _t(400), "ICD10CM/E11.9")]   # day 400: after prediction
        if ethnicity:
            ev.append((s, None, "ETHNICITY/HISPANIC" if s % 4 == 0 else "ETHNICITY/NOT_HISPANIC"))
    ev.append((0, _t(40), "RXNORM/RARE"))
    splits = {s: ("train" if s < 150 else "tuning" if s < 175 else "held_out") for s in range(200)}
    return make_cohort(tmp_path / "c", [e if len(e) == 4 else (*e, None) for e in ev], splits=splits), splits


def _data(root, splits, tmp_path, task="leak/probe", y=None):
    from benchmark.data.cohort import Cohort
    from benchmark.model_api import TaskData
    from benchmark.task_registry import select_tasks
    subjects = sorted(splits)
    labels = pl.DataFrame({"subject_id": subjects, "prediction_time": [datetime(2020, 7, 1)] * len(subjects),
                           "boolean_value": [bool(v) for v in (y if y is not None else [s % 2 for s in subjects])],
                           "split": [splits[s] for s in subjects]},
                          schema_overrides={"prediction_time": pl.Datetime("us")})
    return TaskData(select_tasks(task)[0], Cohort(root), labels, 0, tmp_path / "work")


def test_b1_features_are_counts_gender_age_at_first_event_and_ethnicity(tmp_path, cache):
    from benchmark.features.bag_of_events import featurize
    root, splits = _b1_cohort(tmp_path, ethnicity=True)
    data = _data(root, splits, tmp_path)
    bag = featurize(data)                                    # the default is the paper's set
    assert bag.names == ["count:ICD10CM/C34", "count:LOINC/2160-0", "sex:F", "age_at_first_event",
                         "ethnicity:HISPANIC", "ethnicity:NOT_HISPANIC"]
    X = bag.block("train").toarray()
    assert X[:, 0].tolist() == [2.0] * 150                   # C34.90 + C34.10 -> C34; E11 is after prediction
    assert X[:, 2].tolist() == [float(s % 2) for s in range(150)]
    first = [(datetime(2020, 1, 11 + s % 5) - datetime(1960, 1, 1)).days / 365.25 for s in range(150)]
    np.testing.assert_allclose(X[:, 3], first, rtol=1e-6)
    assert X[:, 4].tolist() == [float(s % 4 == 0) for s in range(150)]
    ext = featurize(data, feature_set="extended")             # ours: last values, age at prediction, race
    assert {"last:LOINC/2160-0", "age_at_prediction", "race:WHITE", "count:RACE/WHITE"} <= set(ext.names)
    assert not [n for n in bag.names if n.startswith(("last:", "race:", "count:RACE", "count:GENDER"))]
    with pytest.raises(ValueError, match="paper_b1"):
        featurize(data, feature_set="b2")


def test_b1_ethnicity_falls_back_to_a_combined_race_field(tmp_path, cache):
    """MIMIC-IV-like: no separate ethnicity, one race/ethnicity field fills B.1's ethnicity."""
    from benchmark.features.bag_of_events import featurize
    root, splits = _b1_cohort(tmp_path, ethnicity=False)
    names = featurize(_data(root, splits, tmp_path)).names
    assert names[-2:] == ["ethnicity:BLACK", "ethnicity:WHITE"] and "count:RACE/WHITE" not in names


# ------------------------------------------------------------------ B.2 late fusion
FUSED = ("catboost", "xgboost", "random_forest", "logistic_regression")


def test_late_fusion_is_registered_for_the_four_paper_baselines():
    import importlib
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["mehr_bench.models"]
    for n in FUSED:
        assert declared[f"{n}_late_fusion"] == f"baselines.models.{n}_late_fusion"
        spec = importlib.import_module(f"baselines.models.{n}_late_fusion").SPEC
        assert spec.name == f"{n}_late_fusion" and {"structured", "ct", "wsi"} <= set(spec.modalities)
        assert declared[f"{n}_tuned"] == f"baselines.models.{n}_tuned"


@pytest.mark.parametrize("library", FUSED)
def test_late_fusion_averages_member_predictions_and_drops_a_missing_ct(library, tmp_path, cache):
    """Planted oracle: the fused held-out score is the mean of the structured member's and the CT
    member's own predictions (recomputed here from the B.1 features and a hand-computed mean CT
    embedding), and the structured prediction alone where a subject has no CT."""
    from baselines.late_fusion import LateFusion
    from benchmark.features.bag_of_events import featurize
    from benchmark.model_api import BUDGETS
    root, splits = _b1_cohort(tmp_path, ethnicity=True)
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.4).astype(int)
    has_ct = np.arange(200) % 3 != 0                          # a third of the subjects have no CT
    rows = []
    for s in np.nonzero(has_ct)[0]:
        for k in range(2):                                    # two studies, averaged
            rows.append({"subject_id": int(s), "time": datetime(2020, 2, 1 + k),
                         "embedding": [float(y[s] + rng.normal()), float(rng.normal())]})
    rows.append({"subject_id": 1, "time": datetime(2021, 1, 1), "embedding": [99.0, 99.0]})  # future: unseen
    (root / "modalities").mkdir()
    pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"),
                               "embedding": pl.List(pl.Float32)}).write_parquet(root / "modalities" / "ct.parquet")
    data = _data(root, splits, tmp_path, task="oncology/mortality_1y", y=y)
    model = LateFusion(library, budget=BUDGETS["smoke"], seed=0, explain=False).fit(data)
    assert set(model.models_) == {"structured", "ct"}
    pred = model.predict(data, "held_out")

    held = [s for s in sorted(splits) if splits[s] == "held_out"]
    X_struct = featurize(data, feature_set="paper_b1").block("held_out").toarray().astype(np.float32)
    s_struct = model.models_["structured"].model.score(X_struct)
    ct = pl.read_parquet(root / "modalities" / "ct.parquet").filter(pl.col("time") <= datetime(2020, 7, 1))
    mean_ct = {s: np.mean(np.stack(g["embedding"].to_list()), axis=0)
               for (s,), g in ct.group_by("subject_id")}
    expected = []
    for i, s in enumerate(held):
        if s in mean_ct:
            s_ct = model.models_["ct"].model.score(mean_ct[s][None, :].astype(np.float32))[0]
            expected.append((s_struct[i] + s_ct) / 2)
        else:
            expected.append(s_struct[i])
    assert any(s not in mean_ct for s in held) and any(s in mean_ct for s in held)
    np.testing.assert_allclose(pred.score, expected, rtol=1e-5, atol=1e-6)
    assert pred.info["hyperparameters"]["structured"]["feature_set"] == "paper_b1"
    assert "Table B" in pred.info["search_space"]
