"""Where the fusion heads' structured EHR vector (array ``ehr``) comes from: `InputConfig.ehr_source`.

"Fusion is not one-size-fits-all: Cross-Modal Representation Alignment for Time-to-Event Modeling"
(section 2.1) feeds its heads either a frozen EHR foundation-model embedding (CLMBR-T-base, 768-d) or
a manually curated, binarized one-hot vector of task-specific features. Ours offers both, next to the
bag of events every head read before:

* ``bag``      the extended bag of events (`benchmark.features.bag_of_events`; counts as log1p, last
               lab values, demographics), optionally only its demographic columns (`ehr_columns`);
* ``fm``       a registered foundation model's frozen patient vector at the prediction time
               (`benchmark.model_api.Representer`; default `ehrt`, whose `represent` is the last
               token's hidden state of a model pretrained on the training split without labels);
* ``curated``  the task's `risk_factors` as 0/1 columns (`benchmark.features.risk_factors`).

Every source returns unscaled [n, De] float32 rows in label order; `InputScaler` standardizes them
as it always did, so every head runs on any source unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from benchmark.errors import UserError
from benchmark.features.bag_of_events import EXTENDED, featurize
from benchmark.model_api import BUDGETS, TaskData
from benchmark.vocabulary import SPLITS
from encoders.cache import split_rows

EHR_SOURCES = ("bag", "fm", "curated")
DEMOGRAPHIC_PREFIXES = ("sex:", "race:", "ethnicity:")


def ehr_block(data: TaskData, cfg) -> tuple[np.ndarray, list[str], dict]:
    """The unscaled EHR matrix of the configured source.

    Args:
        data: the task data.
        cfg: the InputConfig (ehr_source, ehr_columns, ehr_fm_model, ehr_fm_budget).

    Returns:
        (X [n, De] float32 in label order, column names, extra info for `raw_inputs`' info).

    Raises:
        ValueError: an unknown source; UserError: a task without risk factors ("curated") or a model
            that cannot represent ("fm"), naming the fix.
    """
    if cfg.ehr_source == "bag":
        X, names = bag_block(data, cfg.ehr_columns)
        return X, names, {}
    if cfg.ehr_source == "fm":
        return fm_block(data, cfg.ehr_fm_model, cfg.ehr_fm_budget)
    if cfg.ehr_source == "curated":
        from benchmark.features.risk_factors import risk_factor_matrix
        rf = risk_factor_matrix(data)
        return rf.X, [f"risk:{n}" for n in rf.names], {"risk_factors_unmapped": rf.unmapped}
    raise ValueError(f"InputConfig.ehr_source must be one of {EHR_SOURCES}, not {cfg.ehr_source!r}")


def bag_block(data: TaskData, ehr_columns: str = "all") -> tuple[np.ndarray, list[str]]:
    """The extended bag of events, dense, counts as log1p, the `ehr_columns` subset.

    The extended set (+ last lab values, age at prediction, race), not the MEHRT paper's B.1 set:
    the fusion papers' EHR inputs are not B.1, and the fusion tables and the ICU demographics block
    (age at prediction) were built on this set.
    """
    n = data.labels.height
    boe = featurize(data, feature_set=EXTENDED)
    X = sp.lil_matrix((n, len(boe.names)), dtype=np.float32).tocsr()
    blocks, rows = [], []
    for s in SPLITS:
        r = split_rows(data, s)
        if len(r):
            blocks.append(boe.X[s])
            rows.append(r)
    if blocks:
        stacked = sp.vstack(blocks).tocsr()
        perm = np.empty(n, dtype=np.int64)
        perm[np.concatenate(rows)] = np.arange(n)
        X = stacked[perm]
    dense = X.toarray().astype(np.float32)
    is_count = np.array([nm.startswith("count:") for nm in boe.names], dtype=bool)
    dense[:, is_count] = np.log1p(np.maximum(dense[:, is_count], 0))
    keep = ehr_column_mask(boe.names, ehr_columns)
    return dense[:, keep], [nm for nm, k in zip(boe.names, keep) if k]


def fm_block(data: TaskData, model_name: str, budget_level: str | None) -> tuple[np.ndarray, list[str], dict]:
    """A registered model's frozen patient vectors (its `represent`, benchmark.model_api.Representer).

    Args:
        data: the task data.
        model_name: a registered model name whose object implements `represent(data, split)`.
        budget_level: the budget level the model is built with (its pretraining size); None = smoke.

    Returns:
        (X [n, d] in label order, names "<model>:<j>", info with the model and budget).
    """
    from benchmark.registry import get_model
    level = budget_level or "smoke"
    if level not in BUDGETS:
        raise UserError(f"unknown budget level {level!r} for the EHR foundation model", field="ehr_fm_budget",
                        fix=f"use one of {list(BUDGETS)} (or leave it out: the run's budget)")
    model = get_model(model_name).factory(budget=BUDGETS[level], seed=0)
    if not callable(getattr(model, "represent", None)):
        raise UserError(f"model {model_name!r} cannot give a patient representation: it has no "
                        "represent(data, split) method (benchmark.model_api.Representer)", field="ehr_fm_model",
                        fix="choose a foundation model that implements it (ehrt, mehrt, mehrt-joint, ...), "
                            "add represent() to your model, or use ehr_source='bag' or 'curated'")
    n = data.labels.height
    X: np.ndarray | None = None
    for s in SPLITS:
        r = split_rows(data, s)
        if not len(r):
            continue
        v = np.asarray(model.represent(data, s), dtype=np.float32)
        if v.ndim != 2 or v.shape[0] != len(r):
            raise UserError(f"model {model_name!r}: represent(data, {s!r}) returned shape {v.shape}, expected "
                            f"({len(r)}, d): one vector per sample of the split", field="ehr_fm_model",
                            fix="return float32 [n, d] rows aligned with data.samples(split)")
        if X is None:
            X = np.zeros((n, v.shape[1]), dtype=np.float32)
        X[r] = v
    X = X if X is not None else np.zeros((n, 0), dtype=np.float32)
    return X, [f"{model_name}:{j}" for j in range(X.shape[1])], {"ehr_fm": {"model": model_name, "budget": level,
                                                                              "dim": int(X.shape[1])}}


def ehr_column_mask(names: list[str], which: str) -> np.ndarray:
    """Which bag-of-events columns an `InputConfig.ehr_columns` setting keeps.

    Args:
        names: the featurizer's column names.
        which: "all" or "demographics".

    Returns:
        Bool mask over the columns.

    Raises:
        ValueError: an unknown setting.
    """
    if which == "all":
        return np.ones(len(names), dtype=bool)
    if which == "demographics":
        return np.array([nm.startswith(DEMOGRAPHIC_PREFIXES) or nm == "age_at_prediction" for nm in names], dtype=bool)
    raise ValueError(f"InputConfig.ehr_columns must be 'all' or 'demographics', not {which!r}")
