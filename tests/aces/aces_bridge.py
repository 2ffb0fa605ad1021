"""Run ACES (es-aces 0.7.3) in-process on one of our cohorts, with our predicate maps.

The ACES task configs in tests/aces/configs/ are hand-written mirrors of our task YAMLs: they hold the
trigger, windows and task-level derived predicates, but no dataset codes. The dataset codes come from the
cohort's predicates.yaml, converted here into an ACES predicates file (``TaskExtractorConfig.load``
merges the two, as ACES's ``predicates_path`` override does for MEDS-DEV).

Conversion of our code rules (benchmark.predicates.CodeRule) to ACES plain predicates:
  code: X                    -> code: X
  any_of: [X, Y]             -> code: {any: [X, Y]}
  prefix: X | [X, Y]         -> code: {regex: "^(?:X|Y)"}  (escaped)
  regex: R                   -> code: {regex: R}          (both use polars str.contains)
  value_min / value_max      -> the same, with value_min_inclusive / value_max_inclusive stated (ours default
                                to inclusive, ACES's default (None) is exclusive).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Iterable, Mapping

import polars as pl
import yaml

from benchmark.predicates import CodeRule

CONFIG_DIR = Path(__file__).parent / "configs"


def aces_predicate(rule: CodeRule) -> dict:
    """One of our dataset code rules as an ACES plain predicate dict.

    Args:
        rule: the code rule from a predicates.yaml.

    Returns:
        The ACES ``predicates:`` entry (code matcher plus inclusive value bounds).
    """
    if rule.code is not None:
        out: dict = {"code": rule.code}
    elif rule.any_of is not None:
        out = {"code": {"any": list(rule.any_of)}}
    elif rule.prefix is not None:
        prefixes = (rule.prefix,) if isinstance(rule.prefix, str) else rule.prefix
        out = {"code": {"regex": "^(?:" + "|".join(re.escape(p) for p in prefixes) + ")"}}
    else:
        out = {"code": {"regex": rule.regex}}
    if rule.value_min is not None:
        out.update(value_min=rule.value_min, value_min_inclusive=rule.value_min_inclusive)
    if rule.value_max is not None:
        out.update(value_max=rule.value_max, value_max_inclusive=rule.value_max_inclusive)
    return out


def write_predicates_file(rules: Mapping[str, CodeRule], path: Path) -> Path:
    """Write an ACES predicates file (``predicates: {name: ...}``) for a dataset's code rules.

    Args:
        rules: predicate name -> CodeRule (e.g. ``Cohort.predicate_map()``).
        path: the .yaml file to write.

    Returns:
        path
    """
    body = {"predicates": {n: aces_predicate(r) for n, r in sorted(rules.items())}}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def config_path(name: str) -> Path:
    """The hand-written ACES config of task `name` (e.g. 'oncology/mortality_1y')."""
    return CONFIG_DIR / f"{name}.yaml"


def config_metadata(path: Path) -> dict:
    """The ``metadata:`` block of an ACES config (ACES ignores it; we record what it mirrors there)."""
    return (yaml.safe_load(path.read_text()) or {}).get("metadata") or {}


def with_task_bounds(rules: Mapping[str, CodeRule], task) -> dict[str, CodeRule]:
    """rules plus the task's value-bounded predicates (``{of: hba1c, value_min: 6.5}``) as code rules.

    An ACES derived predicate combines predicates per timestamp, not per row, so "an HbA1c row with a
    value >= 6.5" is only expressible as a plain predicate: the dataset rule with the task's bounds.
    """
    out = dict(rules)
    for name, r in (task.predicates.items() if task is not None else ()):
        if r.of is not None and isinstance(rules.get(r.of), CodeRule):
            out[name] = rules[r.of].model_copy(update={"value_min": r.value_min, "value_max": r.value_max})
    return out


def load_config(path: Path, rules: Mapping[str, CodeRule], workdir: Path, task=None):
    """Load an ACES task config with a dataset's predicates.

    Args:
        path: the ACES task config YAML.
        rules: the dataset's predicate map.
        workdir: a folder for the generated ACES predicates file.
        task: the mirrored TaskSpec, whose value-bounded task predicates are added (with_task_bounds).

    Returns:
        aces.config.TaskExtractorConfig
    """
    from aces.config import TaskExtractorConfig

    rules = with_task_bounds(rules, task)
    preds = write_predicates_file(rules, Path(workdir) / f"aces_predicates_{path.stem}.yaml")
    return TaskExtractorConfig.load(path, preds)


def run_aces(cfg, data_files: Iterable[Path]) -> pl.DataFrame:
    """Run ACES on each MEDS shard and return LabelSchema-like rows.

    ACES's ``meds`` standard reads one parquet file at a time (as with its ``expand_shards`` mode);
    a subject never spans shards in MEDS, so per-shard results concatenate.

    Each shard gets a fresh deep copy of `cfg`: ACES 0.7.3's ``extract_subtree`` adds the parent offset
    to a child window's endpoint in place (``endpoint_expr.offset += subtree_root_offset``), so a second
    ``query`` with the same config shifts every window below a temporal offset (e.g. after
    ``trigger + 24h``) by that offset again.

    Args:
        cfg: the loaded TaskExtractorConfig (needs a label window and an index_timestamp window).
        data_files: the cohort's data shards.

    Returns:
        DataFrame subject_id (Int64), prediction_time (Datetime us), boolean_value (label count > 0),
        sorted by subject_id, prediction_time.
    """
    from aces.predicates import get_predicates_df
    from aces.query import query
    from omegaconf import DictConfig

    logging.getLogger("aces").setLevel(logging.WARNING)
    parts = []
    for f in data_files:
        c = copy.deepcopy(cfg)
        df = get_predicates_df(c, DictConfig({"path": str(f), "standard": "meds"}))
        res = query(c, df)
        if res.height:
            parts.append(res.select(pl.col("subject_id").cast(pl.Int64),
                                    pl.col("index_timestamp").cast(pl.Datetime("us")).alias("prediction_time"),
                                    (pl.col("label") > 0).alias("boolean_value")))
    if not parts:
        return pl.DataFrame(schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                    "boolean_value": pl.Boolean})
    return pl.concat(parts).sort("subject_id", "prediction_time")


def row_diff(ours: pl.DataFrame, aces: pl.DataFrame, limit: int = 10) -> str:
    """A short human-readable diff of two (subject_id, prediction_time, boolean_value) tables."""
    keys = ["subject_id", "prediction_time"]
    cols = [*keys, "boolean_value"]
    a, b = ours.select(cols), aces.select(cols)
    only_ours = a.join(b, on=keys, how="anti")
    only_aces = b.join(a, on=keys, how="anti")
    both = a.join(b, on=keys, suffix="_aces").filter(pl.col("boolean_value") != pl.col("boolean_value_aces"))
    lines = [f"ours {a.height} rows, ACES {b.height} rows; only ours {only_ours.height}, "
             f"only ACES {only_aces.height}, label differs {both.height}"]
    for name, df in (("only ours", only_ours), ("only ACES", only_aces), ("label differs", both)):
        if df.height:
            lines.append(f"{name} (first {limit}):\n{df.head(limit)}")
    return "\n".join(lines)
