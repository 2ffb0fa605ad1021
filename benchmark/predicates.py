"""Named predicates: dataset code rules (predicates.yaml) and derived lab rules (in task files).

A dataset's ``predicates.yaml`` maps each name to one code rule (ACES style)::

    death: {code: MEDS_DEATH}
    metastasis: {prefix: [ICD10CM/C77, ICD10CM/C78, ICD10CM/C79]}
    anc: {code: LOINC/751-8}
    fever: {code: LOINC/8310-5, value_min: 38.3}

Task files add predicates that build on those names: value bounds on a named predicate
(``{of: anc, value_max: 500}``), unions (``{any_of_predicates: [mace_event, death]}``) and derived
lab rules that ACES cannot express (``kdigo_aki``, ``neutropenic_fever``). Built-in names that every
dataset has: ``_any_event`` (any timed event) and ``_record_start`` (first timed event).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from benchmark.durations import parse_duration
from benchmark.strict_yaml import check_regex
from benchmark.units import canonical_unit, conversion, spellings

BUILTIN_PREDICATES = ("_any_event", "_record_start")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRule(_Strict):
    """What a dataset predicate offers the label code: which rows match, and their value (in the
    rule's final unit). Implemented by `CodeRule` (one matcher) and `RuleUnion` (several).

    Contract: `expr()` implies `code_expr()` (a row that matches has a matching code), so the label
    scan may drop the rows whose code matches no rule before it evaluates `expr()`."""

    def code_expr(self) -> pl.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    def value_expr(self) -> pl.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    def expr(self) -> pl.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def final_unit(self) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def needs_hierarchy(self) -> bool:
        """True if the rule names codes by ancestor (``descendants_of``) and must be resolved."""
        return False

    def reads_text(self) -> bool:
        """True if the rule's value comes from the ``text_value`` column."""
        return False


def _bound(v: pl.Expr, bound: float | None, inclusive: bool, upper: bool) -> pl.Expr | None:
    if bound is None:
        return None
    if upper:
        e = (v <= bound) if inclusive else (v < bound)
    else:
        e = (v >= bound) if inclusive else (v > bound)
    return e & v.is_not_nan()           # polars orders NaN above every number: never inside a bound


class CodeRule(DatasetRule):
    """One dataset predicate: exactly one code matcher, optional units and numeric bounds.

    Matchers: ``code`` (one code), ``any_of`` (a list), ``prefix`` (one or several), ``regex``
    (linear-time engine), ``descendants_of`` (codes whose ``parent_codes`` in metadata/codes.parquet
    lead to one of the given codes, the codes themselves included; resolved per cohort by
    `resolve_descendants`).

    Units: ``unit`` is the unit the matched values are recorded in; ``unit_in_code: true`` also
    requires the code to end in ``//<unit>`` (any spelling of it, as MIMIC lab codes such as
    ``LAB//50912//mg/dL`` carry it). ``to_unit`` converts the values (benchmark.units knows the
    analyte-independent conversions); ``scale`` / ``offset`` give any other linear conversion
    (value * scale + offset). Bounds apply to the converted value; each bound is inclusive unless
    ``value_min_inclusive`` / ``value_max_inclusive`` say false (ACES's default is exclusive: write
    the flag when porting a rule).
    """

    code: str | None = None
    any_of: tuple[str, ...] | None = None
    prefix: str | tuple[str, ...] | None = None
    regex: str | None = None
    descendants_of: str | tuple[str, ...] | None = None
    value_min: float | None = None
    value_max: float | None = None
    value_min_inclusive: bool = True
    value_max_inclusive: bool = True
    unit: str | None = None
    unit_in_code: bool = False
    to_unit: str | None = None
    scale: float | None = None
    offset: float | None = None
    value_from_text: bool = False

    @model_validator(mode="after")
    def _one_matcher(self) -> "CodeRule":
        given = [k for k in ("code", "any_of", "prefix", "regex", "descendants_of") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of code, any_of, prefix, regex, descendants_of "
                             f"(got {', '.join(given) or 'none'})")
        if self.regex is not None:
            check_regex(self.regex)
        for name in ("unit", "to_unit"):
            if getattr(self, name) is not None and self.scale is None:
                canonical_unit(getattr(self, name))        # raises ValueError naming the known units
        if self.unit_in_code and self.unit is None:
            raise ValueError("unit_in_code needs unit (the unit the code must end with)")
        if self.to_unit is not None and self.unit is None:
            raise ValueError("to_unit needs unit (the unit the values are recorded in)")
        if self.to_unit is not None and self.scale is None:
            conversion(self.unit, self.to_unit)            # raises ValueError with the fix
        if self.offset is not None and self.scale is None:
            raise ValueError("offset needs scale (value * scale + offset)")
        return self

    @property
    def final_unit(self) -> str | None:
        """The unit of `value_expr` (canonical name where known), None if the map does not say."""
        u = self.to_unit or self.unit
        if u is None:
            return None
        try:
            return canonical_unit(u)
        except ValueError:
            return u

    def needs_hierarchy(self) -> bool:
        return self.descendants_of is not None

    def linear(self) -> tuple[float, float]:
        """(scale, offset) of the rule's unit conversion ((1, 0) when none)."""
        if self.scale is not None:
            return float(self.scale), float(self.offset or 0.0)
        if self.to_unit is not None:
            return conversion(self.unit, self.to_unit)
        return 1.0, 0.0

    def code_expr(self) -> pl.Expr:
        """Polars boolean expression over the ``code`` column."""
        c = pl.col("code")
        if self.descendants_of is not None:
            raise RuntimeError("descendants_of is resolved per cohort first (predicates.resolve_descendants)")
        if self.code is not None:
            e = c == self.code
        elif self.any_of is not None:
            e = c.is_in(list(self.any_of))
        elif self.prefix is not None:
            prefixes = (self.prefix,) if isinstance(self.prefix, str) else self.prefix
            e = c.str.starts_with(prefixes[0])
            for p in prefixes[1:]:
                e = e | c.str.starts_with(p)
        else:
            e = c.str.contains(self.regex)
        if self.unit_in_code:
            e = e & pl.any_horizontal([c.str.ends_with("//" + s) for s in spellings(self.unit)])
        return e

    def reads_text(self) -> bool:
        """True if the value comes from ``text_value`` (the label scan must read that column)."""
        return self.value_from_text

    def value_expr(self) -> pl.Expr:
        """``numeric_value`` (or the number in ``text_value`` with value_from_text: a text that is
        not a number reads as null) in the rule's final unit (Float32)."""
        scale, offset = self.linear()
        v = (pl.col("text_value").str.strip_chars().cast(pl.Float64, strict=False) if self.value_from_text
             else pl.col("numeric_value"))
        if (scale, offset) != (1.0, 0.0):
            v = v.cast(pl.Float64) * scale + offset
        return v.cast(pl.Float32)

    def expr(self) -> pl.Expr:
        """Polars boolean expression over ``code`` and ``numeric_value`` (null-safe)."""
        e = self.code_expr()
        v = self.value_expr()
        for b in (_bound(v, self.value_min, self.value_min_inclusive, False),
                  _bound(v, self.value_max, self.value_max_inclusive, True)):
            if b is not None:
                e = e & b.fill_null(False)
        return e

    def resolved(self, children: dict[str, list[str]]) -> "CodeRule":
        """This rule with ``descendants_of`` replaced by the ``any_of`` list it stands for.

        Args:
            children: code -> codes that list it in parent_codes (from metadata/codes.parquet).
        """
        if self.descendants_of is None:
            return self
        roots = (self.descendants_of,) if isinstance(self.descendants_of, str) else self.descendants_of
        seen, stack = set(roots), list(roots)
        while stack:
            for ch in children.get(stack.pop(), ()):
                if ch not in seen:
                    seen.add(ch)
                    stack.append(ch)
        return self.model_copy(update={"descendants_of": None, "any_of": tuple(sorted(seen))})


class RuleUnion(DatasetRule):
    """Several code rules as one predicate (a YAML list in predicates.yaml), e.g. temperature from a
    degC and a degF chart item, each converted to degC. All members must end in the same unit."""

    rules: tuple[CodeRule, ...]

    @model_validator(mode="after")
    def _same_unit(self) -> "RuleUnion":
        if not self.rules:
            raise ValueError("an empty list matches nothing; give at least one rule")
        units = {r.final_unit for r in self.rules}
        if len(units) > 1:
            raise ValueError(f"the rules of one predicate end in different units ({sorted(map(str, units))}); "
                             "convert them to one with to_unit (or scale)")
        return self

    @property
    def final_unit(self) -> str | None:
        return self.rules[0].final_unit

    def needs_hierarchy(self) -> bool:
        return any(r.needs_hierarchy() for r in self.rules)

    def reads_text(self) -> bool:
        return any(r.reads_text() for r in self.rules)

    def code_expr(self) -> pl.Expr:
        return pl.any_horizontal([r.code_expr() for r in self.rules])

    def value_expr(self) -> pl.Expr:
        e = pl.when(self.rules[0].code_expr()).then(self.rules[0].value_expr())
        for r in self.rules[1:]:
            e = e.when(r.code_expr()).then(r.value_expr())
        return e.otherwise(pl.col("numeric_value").cast(pl.Float32))

    def expr(self) -> pl.Expr:
        return pl.any_horizontal([r.expr() for r in self.rules])

    def resolved(self, children: dict[str, list[str]]) -> "RuleUnion":
        return RuleUnion(rules=tuple(r.resolved(children) for r in self.rules))


def resolve_descendants(rules: dict[str, DatasetRule], codes_file: Path) -> dict[str, DatasetRule]:
    """Resolve ``descendants_of`` matchers through a cohort's metadata/codes.parquet.

    Args:
        rules: predicate name -> rule.
        codes_file: the cohort's codes.parquet (code, parent_codes); may be absent.

    Returns:
        The rules with every ``descendants_of`` replaced by an ``any_of`` list (the named codes
        themselves only, when the file is absent or has no parent_codes).
    """
    if not any(r.needs_hierarchy() for r in rules.values()):
        return rules
    children: dict[str, list[str]] = {}
    codes_file = Path(codes_file)
    if codes_file.exists():
        cols = pl.read_parquet_schema(codes_file)
        if "parent_codes" in cols:
            df = (pl.read_parquet(codes_file, columns=["code", "parent_codes"]).drop_nulls("parent_codes")
                  .filter(pl.col("parent_codes").list.len() > 0).explode("parent_codes").drop_nulls())
            for code, parent in df.iter_rows():
                children.setdefault(parent, []).append(code)
    return {n: (r.resolved(children) if r.needs_hierarchy() else r) for n, r in rules.items()}


class BoundedPredicate(_Strict):
    """A named predicate restricted to a numeric range, e.g. ``{of: anc, value_max: 500}``."""

    of: str
    value_min: float | None = None
    value_max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> "BoundedPredicate":
        if self.value_min is None and self.value_max is None:
            raise ValueError("give value_min and/or value_max")
        return self


class UnionPredicate(_Strict):
    """Any of several named predicates, e.g. ``{any_of_predicates: [mace_event, death]}``."""

    any_of_predicates: tuple[str, ...]


class KdigoAki(_Strict):
    """KDIGO acute kidney injury from serum creatinine (mg/dL).

    An AKI event is a creatinine measurement at time t with either
    value - min(creatinine in [t - abs_window, t)) >= abs_rise  (0.3 mg/dL in 48 h), or
    value / min(creatinine in [t - rel_window, t)) >= rel_rise  (1.5x the 7-day baseline).
    """

    creatinine: str = "creatinine"
    creatinine_unit: str = "mg/dL"
    abs_rise: float = 0.3
    abs_window: str = "48h"
    rel_rise: float = 1.5
    rel_window: str = "7d"

    @field_validator("abs_window", "rel_window")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v


class NeutropenicFever(_Strict):
    """Neutropenic fever: ANC < anc_max with temperature >= temp_min within ``within`` of each other.

    The event time is the later of the two measurements (when both facts are known).
    """

    anc: str = "anc"
    temperature: str = "temperature"
    anc_unit: str = "/uL"
    temperature_unit: str = "degC"
    anc_max: float = 500.0
    temp_min: float = 38.3
    within: str = "24h"

    @field_validator("within")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v


class DerivedRule(_Strict):
    """Task-local predicate: exactly one of the forms below.

    * ``of`` + value_min / value_max: the events of a named predicate whose value is in range
      (inclusive unless value_min_inclusive / value_max_inclusive say false);
    * ``any_of_predicates``: the union of named predicates;
    * ``rule``: a code rule of the task itself (a dataset-independent MEDS code such as
      ``{regex: "MEDS_BIRTH.*"}``, as ACES task configs define ``birth`` and ``death``); the dataset
      map is not asked for this name;
    * ``kdigo_aki`` / ``neutropenic_fever``: derived lab rules.
    """

    of: str | None = None
    value_min: float | None = None
    value_max: float | None = None
    value_min_inclusive: bool = True
    value_max_inclusive: bool = True
    any_of_predicates: tuple[str, ...] | None = None
    rule: CodeRule | None = None
    kdigo_aki: KdigoAki | None = None
    neutropenic_fever: NeutropenicFever | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "DerivedRule":
        forms = [k for k in ("of", "any_of_predicates", "rule", "kdigo_aki", "neutropenic_fever")
                 if getattr(self, k) is not None]
        if len(forms) != 1:
            raise ValueError("a task predicate needs exactly one of: of (+ value_min/value_max), "
                             f"any_of_predicates, rule, kdigo_aki, neutropenic_fever (got {forms or 'none'})")
        if self.of is None and (self.value_min is not None or self.value_max is not None
                                or not self.value_min_inclusive or not self.value_max_inclusive):
            raise ValueError("value_min/value_max (and their _inclusive flags) only go with 'of'")
        if self.of is not None and self.value_min is None and self.value_max is None:
            raise ValueError("'of' needs value_min and/or value_max")
        return self

    def inputs(self) -> tuple[str, ...]:
        """Names of the predicates this rule reads."""
        if self.of is not None:
            return (self.of,)
        if self.any_of_predicates is not None:
            return tuple(self.any_of_predicates)
        if self.rule is not None:
            return ()
        if self.kdigo_aki is not None:
            return (self.kdigo_aki.creatinine,)
        assert self.neutropenic_fever is not None
        return (self.neutropenic_fever.anc, self.neutropenic_fever.temperature)

    def expected_units(self) -> dict[str, str]:
        """Input predicate -> the unit this rule's thresholds are written in (lab rules only)."""
        if self.kdigo_aki is not None:
            return {self.kdigo_aki.creatinine: self.kdigo_aki.creatinine_unit}
        if self.neutropenic_fever is not None:
            nf = self.neutropenic_fever
            return {nf.anc: nf.anc_unit, nf.temperature: nf.temperature_unit}
        return {}


Kind = Literal["code", "bounded", "union", "kdigo_aki", "neutropenic_fever", "builtin"]


def predicate_rules_digest(rules: dict[str, Any]) -> dict[str, Any]:
    """JSON-able view of resolved rules, for hashing label caches."""
    return {k: (v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v)
            for k, v in sorted(rules.items())}
