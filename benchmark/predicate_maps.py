"""Reading a dataset's predicate map: our predicates.yaml (name -> rule, a list of rules = a union,
``{any_of_predicates: [...]}`` = a union of other names) or an ACES / MEDS-DEV predicates file (a
top-level ``predicates:`` mapping; ``expr: or(...)`` derived predicates become unions, ``and(P, range)``
P's rule with a code-less range's bounds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmark.errors import UserError
from benchmark.predicates import CodeRule, DatasetRule, RuleUnion
from benchmark.strict_yaml import read_yaml_file


def _validation_message(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"])
    return loc, first["msg"]


_RULE_KEYS = ("code, any_of, prefix, regex, descendants_of, value_min, value_max, value_min_inclusive, "
              "value_max_inclusive, unit, unit_in_code, to_unit, scale, offset")


def _rule_error(path: Path, name: str, err: ValidationError, prefix: str = "") -> UserError:
    loc, msg = _validation_message(err)
    if "linear-time regex engine" in msg:
        fix = "rewrite the regex without look-around or backreferences (or list the codes with any_of)"
    elif "unit" in msg or "scale" in msg:
        fix = "use a known unit name, or give scale (and offset) for an analyte-specific conversion"
    else:
        fix = f"allowed keys: {_RULE_KEYS}; a list of such rules is a union"
    return UserError(msg.removeprefix("Value error, "), file=path, field=f"{prefix}{name}.{loc}".rstrip("."), fix=fix)


def _parse_rule(path: Path, name: str, rule: Any, prefix: str = "") -> DatasetRule | tuple[str, ...]:
    """One entry of our predicates.yaml: a rule mapping, a list of them (union), or
    ``{any_of_predicates: [...]}`` (a union of other names, returned as the tuple of names)."""
    if isinstance(rule, list):
        try:
            return RuleUnion(rules=tuple(CodeRule.model_validate(r) for r in rule))
        except ValidationError as e:
            raise _rule_error(path, name, e, prefix) from None
        except TypeError:
            raise UserError("a union is a list of rule mappings", file=path, field=f"{prefix}{name}",
                            fix="write each member as {code|any_of|prefix|regex|descendants_of: ...}") from None
    if not isinstance(rule, dict):
        raise UserError("a rule must be a mapping such as {code: MEDS_DEATH}", file=path, field=f"{prefix}{name}",
                        fix="write the rule as {code|any_of|prefix|regex|descendants_of: ...}, or a list of them")
    if set(rule) == {"any_of_predicates"}:
        names = rule["any_of_predicates"]
        if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
            raise UserError("any_of_predicates needs a non-empty list of predicate names", file=path,
                            field=f"{prefix}{name}.any_of_predicates", fix="e.g. any_of_predicates: [mi, stroke]")
        return tuple(names)
    try:
        return CodeRule.model_validate(rule)
    except ValidationError as e:
        raise _rule_error(path, name, e, prefix) from None


def _aces_plain(path: Path, name: str, rule: Any) -> DatasetRule | tuple[str, ...]:
    """One predicate of an ACES / MEDS-DEV predicates file, in our terms.

    ACES plain predicates: ``code`` (a string, ``{regex: R}`` or ``{any: [...]}``), value bounds whose
    inclusivity defaults to exclusive; derived predicates ``expr: or(a, b, ...)`` become unions,
    ``expr: and(P, R)`` with R a code-less range (``code: null`` + bounds) P's rule with R's bounds.
    """
    field = f"predicates.{name}"
    if not isinstance(rule, dict):
        raise UserError("an ACES predicate must be a mapping", file=path, field=field,
                        fix="write {code: ...} or {expr: or(a, b)}")
    if "expr" in rule:
        expr = str(rule["expr"]).strip()
        if expr.startswith("or(") and expr.endswith(")"):
            return tuple(x.strip() for x in expr[3:-1].split(",") if x.strip())
        if expr.startswith("and(") and expr.endswith(")"):
            return _AcesAnd(tuple(x.strip() for x in expr[4:-1].split(",") if x.strip()))
        raise UserError(f"ACES derived predicate {expr!r} is not supported in a dataset map (only or(...) and "
                        "and(predicate, code-less range))", file=path, field=f"{field}.expr",
                        fix="list the codes in one rule, or move the predicate into the task file")
    if rule.get("code", "") is None:  # a code-less value range: only meaningful inside and(...)
        bounds = {b: rule[b] for b in ("value_min", "value_max") if rule.get(b) is not None}
        if not bounds:
            raise UserError("code: null without a value range matches nothing", file=path, field=f"{field}.code",
                            fix="give value_min and/or value_max, or a code")
        for b in list(bounds):
            bounds[f"{b}_inclusive"] = bool(rule.get(f"{b}_inclusive") or False)  # ACES: None = exclusive
        return _AcesRange(bounds)
    extra = set(rule) - {"code", "value_min", "value_max", "value_min_inclusive", "value_max_inclusive"}
    if extra:
        raise UserError(f"ACES predicate keys {sorted(extra)} are not supported here", file=path, field=field,
                        fix="keep code / value_min / value_max (+ _inclusive) in the dataset map")
    code = rule.get("code")
    out: dict[str, Any] = {}
    if isinstance(code, str):
        out["code"] = code
    elif isinstance(code, dict) and set(code) == {"regex"}:
        out["regex"] = code["regex"]
    elif isinstance(code, dict) and set(code) == {"any"}:
        out["any_of"] = code["any"]
    else:
        raise UserError(f"ACES code {code!r} is not one of: a code, {{regex: ...}}, {{any: [...]}}", file=path,
                        field=f"{field}.code", fix="write code as a string, {regex: R} or {any: [A, B]}")
    for bound in ("value_min", "value_max"):
        if rule.get(bound) is not None:
            out[bound] = rule[bound]
            out[f"{bound}_inclusive"] = bool(rule.get(f"{bound}_inclusive") or False)  # ACES: None = exclusive
    try:
        return CodeRule.model_validate(out)
    except ValidationError as e:
        raise _rule_error(path, name, e, "predicates.") from None


class _AcesRange(dict):
    """A code-less ACES value range (``code: null`` + bounds): the bounds, for and(predicate, range)."""


class _AcesAnd(tuple):
    """ACES ``and(a, b)``: supported in a map only as and(predicate, code-less range)."""


def _resolve_ands(path: Path, parsed: dict, prefix: str) -> dict:
    """and(P, R) with R a code-less range -> P's rule(s) with R's bounds, read per row (a P row whose
    value is in R, as MEDS-DEV's abnormal-lab predicates intend; ACES 0.7.3 itself matches no row
    with a code-less range, ACES issue 193). Code-less ranges are then dropped from the map."""
    out = dict(parsed)
    for n, r in parsed.items():
        if not isinstance(r, _AcesAnd):
            continue
        ranges = [x for x in r if isinstance(parsed.get(x), _AcesRange)]
        coded = [x for x in r if x not in ranges]
        if len(ranges) != 1 or len(coded) != 1 or not isinstance(parsed.get(coded[0]), (CodeRule, RuleUnion)):
            raise UserError(f"and({', '.join(r)}) is supported only as and(code predicate, code-less range)",
                            file=path, field=f"{prefix}{n}.expr",
                            fix="combine a predicate with codes and one {code: null, value_min/value_max} range")
        base, bounds = parsed[coded[0]], dict(parsed[ranges[0]])
        try:
            out[n] = (base.model_copy(update=bounds) if isinstance(base, CodeRule) else
                      RuleUnion(rules=tuple(m.model_copy(update=bounds) for m in base.rules)))
        except ValidationError as e:
            raise _rule_error(path, n, e, prefix) from None
    return {n: r for n, r in out.items() if not isinstance(r, _AcesRange)}


def _resolve_unions(path: Path, parsed: dict[str, DatasetRule | tuple[str, ...]], prefix: str) -> dict[str, DatasetRule]:
    """Replace name unions by RuleUnions of their members' rules (nested unions flattened)."""
    out: dict[str, DatasetRule] = {n: r for n, r in parsed.items() if isinstance(r, DatasetRule)}

    def members(name: str, trail: tuple[str, ...]) -> list[CodeRule]:
        if name in trail:
            raise UserError(f"predicate union cycle: {' -> '.join(trail + (name,))}", file=path,
                            field=f"{prefix}{trail[0]}", fix="remove the cycle")
        if name not in parsed:
            raise UserError(f"union member {name!r} is not defined in this file", file=path,
                            field=f"{prefix}{trail[-1]}", fix=f"define {name} here, or remove it from the union")
        r = parsed[name]
        if isinstance(r, CodeRule):
            return [r]
        if isinstance(r, RuleUnion):
            return list(r.rules)
        return [m for x in r for m in members(x, trail + (name,))]

    for n, r in parsed.items():
        if isinstance(r, tuple) and not isinstance(r, _AcesAnd):
            try:
                out[n] = RuleUnion(rules=tuple(members(n, ())))
            except ValidationError as e:
                raise _rule_error(path, n, e, prefix) from None
    return out


def load_predicate_map(path: str | Path) -> dict[str, DatasetRule]:
    """Read a dataset's predicate map: our predicates.yaml (name -> rule), or an ACES / MEDS-DEV
    predicates file (a top-level ``predicates:`` mapping, optionally ``patient_demographics:``).

    Args:
        path: the YAML file.

    Returns:
        Mapping of predicate name to rule (CodeRule, or RuleUnion for lists and unions).

    Raises:
        UserError: naming the file, the predicate that is malformed, and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise UserError("predicates file not found", file=path,
                        fix="put a predicates.yaml in the cohort folder, pass --predicates FILE, or pick a "
                            "dataset profile with --dataset NAME")
    raw = read_yaml_file(path) or {}
    if not isinstance(raw, dict):
        raise UserError("expected a mapping of predicate name -> rule", file=path,
                        fix="write one 'name: {code: ...}' entry per line")
    if isinstance(raw.get("predicates"), dict):           # ACES / MEDS-DEV layout
        unknown = set(raw) - {"predicates", "patient_demographics", "metadata", "description"}
        if unknown:
            raise UserError(f"unexpected top-level keys {sorted(unknown)} in an ACES predicates file", file=path,
                            fix="keep predicates (and patient_demographics) only")
        parsed = {str(n): _aces_plain(path, str(n), r) for n, r in raw["predicates"].items()}
        return _resolve_unions(path, _resolve_ands(path, parsed, "predicates."), "predicates.")
    parsed = {str(n): _parse_rule(path, str(n), r) for n, r in raw.items()}
    return _resolve_unions(path, parsed, "")


def aces_predicate_rule(path: str | Path, name: str, rule: dict[str, Any]) -> CodeRule:
    """One ACES plain predicate (``code`` as a string, ``{regex: R}`` or ``{any: [...]}``, value bounds
    exclusive unless ``*_inclusive`` is true) as our code rule.

    Args:
        path: the file it comes from (for errors).
        name: the predicate's name.
        rule: the ACES predicate mapping.

    Returns:
        The CodeRule.

    Raises:
        UserError: naming the predicate when its form has no code rule equivalent.
    """
    out = _aces_plain(Path(path), name, rule)
    if not isinstance(out, CodeRule):
        raise UserError("expected a plain ACES predicate, not a derived one", file=path, field=f"predicates.{name}",
                        fix="write it as {code: ...}")
    return out
