"""Plausibility of mapped lab values: do a predicate's values look like the unit its rule states?

A unit error in a predicate map is silent: ANC recorded in K/uL but mapped as cells/uL puts every
value below the neutropenia threshold of 500, and temperature recorded in degF but mapped as degC
puts every value above the fever threshold of 38.3. `check_plausibility` compares, for each
numeric lab predicate the map states (keyed by the predicate name the tasks use: temperature, anc,
creatinine, ...), the median of its values in the rule's final unit with a table of plausible
medians per (quantity, unit). When the median fits another unit of the same quantity better, the
warning names that unit and the exact rule to write. Single implausible values (a BMI of 4649) are
counted separately. The ranges are deliberately wide (hospital and ICU cohorts, adult and sick) and
the ranges of two units of one quantity never overlap, so at most one unit "looks right".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from benchmark.data.findings import Collector
from benchmark.predicates import CodeRule, DatasetRule, RuleUnion
from benchmark.units import canonical_unit, conversion

MIN_VALUES = 5          # fewer values than this: no verdict on the median
WARN_SHARE = 0.01       # a share of implausible single values at or above this is a warning, below: info


@dataclass(frozen=True)
class UnitRange:
    """Plausible values of one quantity in one unit, and the linear map to the quantity's base unit
    (base = value * scale + offset; the base unit is the first one listed)."""

    unit: str
    median: tuple[float, float]   # a cohort's median lies here
    values: tuple[float, float]   # a single value outside this is not physiological
    scale: float = 1.0
    offset: float = 0.0


# quantity -> its units (base unit first). Medians: typical hospital / ICU cohorts with room for
# sick ones; values: the physiological extremes ever recorded, rounded outward.
QUANTITIES: dict[str, tuple[UnitRange, ...]] = {
    "temperature": (UnitRange("degC", (35, 40), (25, 45)),
                    UnitRange("degF", (95, 104), (77, 113), 5 / 9, -160 / 9)),
    "anc": (UnitRange("/uL", (500, 15000), (0, 200000)),
            UnitRange("K/uL", (0.5, 15), (0, 200), 1000)),
    "creatinine": (UnitRange("mg/dL", (0.4, 4), (0.05, 30)),
                   UnitRange("umol/L", (35, 350), (4, 2650), 1 / 88.42)),
    "hemoglobin": (UnitRange("g/dL", (6, 18), (1.5, 26)),
                   UnitRange("g/L", (60, 180), (15, 260), 0.1)),
    "platelets": (UnitRange("K/uL", (20, 800), (0, 3000)),
                  UnitRange("/uL", (20000, 800000), (0, 3e6), 0.001)),
    "wbc": (UnitRange("K/uL", (1, 40), (0, 1000)),
            UnitRange("/uL", (1000, 40000), (0, 1e6), 0.001)),
    "glucose": (UnitRange("mg/dL", (60, 350), (5, 2500)),
                UnitRange("mmol/L", (3.3, 19.4), (0.3, 139), 18.016)),
    "lactate": (UnitRange("mmol/L", (0.4, 4.4), (0.1, 35)),
                UnitRange("mg/dL", (4.5, 40), (0.9, 315), 1 / 9.008)),
    "hba1c": (UnitRange("%", (4, 13), (2.5, 20)),
              UnitRange("mmol/mol", (20, 119), (4, 195), 0.09148, 2.152)),
    "bmi": (UnitRange("kg/m2", (15, 50), (8, 100)),),
}
# predicate names the tasks and shipped maps use -> quantity (fever / neutropenia are bounded
# versions of temperature / anc: their matched codes carry the same values)
NAMES: dict[str, str] = {q: q for q in QUANTITIES} | {
    "fever": "temperature", "neutropenia": "anc", "hgb": "hemoglobin", "plt": "platelets",
    "white_blood_cells": "wbc", "hemoglobin_a1c": "hba1c",
}
SAME_SCALE = {"10^9/L": "K/uL"}   # numerically identical units


def _unit_range(quantity: str, unit: str | None) -> UnitRange | None:
    if unit is None:
        return None
    try:
        unit = canonical_unit(unit)
    except ValueError:
        pass
    unit = SAME_SCALE.get(unit, unit)
    return next((r for r in QUANTITIES[quantity] if r.unit == unit), None)


def conversion_between(quantity: str, src: str, dst: str) -> tuple[float, float]:
    """(scale, offset) that converts `quantity` values in `src` to `dst` (value * scale + offset)."""
    a, b = _unit_range(quantity, src), _unit_range(quantity, dst)
    assert a is not None and b is not None
    return a.scale / b.scale, (a.offset - b.offset) / b.scale


def looks_like(quantity: str, median: float) -> str | None:
    """The unit of `quantity` whose plausible median range holds `median`, or None."""
    return next((r.unit for r in QUANTITIES[quantity] if r.median[0] <= median <= r.median[1]), None)


def task_lab_units() -> dict[str, tuple[str, str, str]]:
    """Predicates that a task's derived lab rule compares in a fixed unit:
    name -> (unit, quantity, first task name)."""
    from benchmark.task_registry import load_tasks

    out: dict[str, tuple[str, str, str]] = {}
    for tname, task in load_tasks().items():
        for rule in task.predicates.values():
            if rule.kdigo_aki is not None:
                k = rule.kdigo_aki
                out.setdefault(k.creatinine, (k.creatinine_unit, "creatinine", tname))
            if rule.neutropenic_fever is not None:
                nf = rule.neutropenic_fever
                out.setdefault(nf.anc, (nf.anc_unit, "anc", tname))
                out.setdefault(nf.temperature, (nf.temperature_unit, "temperature", tname))
    return out


# ---------------------------------------------------------------------------- the check
def check_plausibility(c: Collector, pf: Path, rules: dict[str, DatasetRule], lf: pl.LazyFrame,
                       lab_units: dict[str, tuple[str, str, str]] | None = None) -> None:
    """Warn when a numeric lab predicate's values look like another unit than its rule states.

    Args:
        c: where findings go.
        pf: the predicates file (named in messages and fixes).
        rules: predicate name -> rule (descendants_of already resolved).
        lf: the shards' code, numeric_value, text_value columns.
        lab_units: predicates that task lab rules compare in a fixed unit (default: from the tasks).
    """
    lab_units = task_lab_units() if lab_units is None else lab_units
    members: list[tuple[str, str, int, int, CodeRule]] = []  # (name, quantity, k, of, rule)
    for name, rule in rules.items():
        quantity = NAMES.get(name) or (lab_units[name][1] if name in lab_units else None)
        if quantity is None:
            continue
        parts = rule.rules if isinstance(rule, RuleUnion) else (rule,)
        members += [(name, quantity, k + 1, len(parts), r) for k, r in enumerate(parts)]
    stats = pl.collect_all([_stats(lf, r, _unit_range(q, r.final_unit)) for _, q, _, _, r in members])
    no_unit_warned = set()
    for (name, quantity, k, of, rule), s in zip(members, stats):
        if name not in no_unit_warned and _judge(c, pf, name, quantity, rule, s.row(0, named=True), k, of,
                                                 lab_units.get(name)):
            no_unit_warned.add(name)
    for name, lab in lab_units.items():   # no unit and too few values to say which unit they look like
        if name in rules and rules[name].final_unit is None and name not in no_unit_warned:
            _warn_no_unit(c, pf, name, lab)


def _stats(lf: pl.LazyFrame, rule: CodeRule, have: UnitRange | None) -> pl.LazyFrame:
    """n, median, 1st / 99th percentile of a rule's values in its final unit, and the values outside
    the unit's physiological range (count, the most extreme)."""
    v = pl.col("v")
    lo, hi = have.values if have is not None else (float("-inf"), float("inf"))
    out = (v < lo) | (v > hi)
    excess = pl.max_horizontal(pl.lit(lo) - v, v - pl.lit(hi))
    return (lf.filter(rule.code_expr()).select(rule.value_expr().cast(pl.Float64).alias("v"))
            .filter(v.is_not_null() & v.is_not_nan())
            .select(v.len().alias("n"), v.median().alias("median"), v.quantile(0.01, "nearest").alias("p1"),
                    v.quantile(0.99, "nearest").alias("p99"), out.sum().alias("n_bad"),
                    v.filter(out).sort_by(excess.filter(out), descending=True).first().alias("extreme")))


def _where(name: str, k: int, of: int) -> str:
    return f"'{name}'" + (f" (rule {k} of {of})" if of > 1 else "")


def _warn_no_unit(c: Collector, pf: Path, name: str, lab: tuple[str, str, str]) -> None:
    unit, _, task = lab
    c.warn(pf, name, f"'{name}' states no unit, but {task} compares its values in {unit}: a value in "
           "another unit would silently change the labels",
           f"set `unit: <the unit its values are recorded in>` (and `to_unit: {unit}` if it differs) on the "
           f"rule in {pf}")


def _judge(c: Collector, pf: Path, name: str, quantity: str, rule: CodeRule, s: dict, k: int, of: int,
           lab: tuple[str, str, str] | None) -> bool:
    """The verdict on one rule's values: unit mismatch (warning) or implausible single values.
    Returns True if it warned that the rule states no unit."""
    if not s["n"] or s["n"] < MIN_VALUES:
        return False
    where, final = _where(name, k, of), rule.final_unit
    spread = f"median {s['median']:.4g}, 1st-99th percentile {s['p1']:.4g}-{s['p99']:.4g}"
    scale, offset = rule.linear()
    raw_median = (s["median"] - offset) / scale             # the value as the data records it
    if final is None:
        seen = looks_like(quantity, raw_median)
        if seen is None:
            return False
        if lab is None:   # no task compares it in a fixed unit: worth stating, not wrong
            c.info(pf, name, f"{where} states no unit; its values ({spread}) look like {seen}",
                   f"set `unit: {seen}` on the rule in {pf} so unit errors are caught")
        else:
            fix = f"unit: {seen}" + ("" if _unit_range(quantity, lab[0]) == _unit_range(quantity, seen)
                                     else f", to_unit: {lab[0]}")
            c.warn(pf, name, f"{where} has no unit and its values ({spread}) look like {seen}; {lab[2]} "
                   f"compares them in {lab[0]}", f"set `{fix}` on the rule in {pf}")
        return True
    have = _unit_range(quantity, final)
    if have is None:
        return False                                         # a unit this table does not know
    if not have.median[0] <= s["median"] <= have.median[1]:
        _warn_unit(c, pf, name, where, quantity, rule, raw_median, spread)
    else:
        _count_implausible(c, pf, name, where, s, have)
    return False


def _warn_unit(c: Collector, pf: Path, name: str, where: str, quantity: str, rule: CodeRule,
               raw_median: float, spread: str) -> None:
    """Median outside the stated unit's range: name the unit the values look like and the rule to write."""
    final = rule.final_unit
    recorded = rule.unit or final
    seen = looks_like(quantity, raw_median)
    mapped = recorded + (f" -> {final}" if rule.linear() != (1.0, 0.0) else "")
    if seen is None or _unit_range(quantity, seen) == _unit_range(quantity, recorded):
        have = _unit_range(quantity, final)
        c.warn(pf, name, f"{where} is mapped as {mapped}, but its values ({spread}) are "
               f"outside the plausible median {have.median[0]:g}-{have.median[1]:g} {final}",
               f"check which codes the rule matches and its unit / scale in {pf}")
        return
    if _unit_range(quantity, seen) == _unit_range(quantity, final):
        fix = f"set `unit: {final}` and remove to_unit / scale"
    else:
        fix = f"unit: {seen}, to_unit: {final}"
        try:
            conversion(seen, final)
        except ValueError:   # analyte-specific: spell out the linear map
            sc, off = conversion_between(quantity, seen, final)
            fix += f", scale: {sc:.4g}" + (f", offset: {off:.4g}" if off else "")
        fix = f"set `{fix}`"
    c.warn(pf, name,
           f"{where} is mapped as {mapped} but its median is {raw_median:.4g} {recorded} ({spread} {final}): "
           f"the values look like {seen}", f"{fix} on the rule in {pf}")


def _count_implausible(c: Collector, pf: Path, name: str, where: str, s: dict, have: UnitRange) -> None:
    """Single values outside the physiological range (a typo such as BMI 4649): info or warning."""
    lo, hi = have.values
    if not s["n_bad"]:
        return
    share = s["n_bad"] / s["n"]
    msg = (f"{where}: {s['n_bad']} of {s['n']} values ({share:.2%}) are outside the plausible {lo:g}-{hi:g} "
           f"{have.unit} (e.g. {s['extreme']:.6g})")
    fix = ("correct them at the source, or keep them out of labels with value_min / value_max on the rule in "
           f"{pf}")
    (c.warn if share >= WARN_SHARE else c.info)(pf, name, msg, fix)
