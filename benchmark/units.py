"""Units of measurement for predicate rules: canonical names, aliases and linear conversions.

Real datasets record the same quantity in different units (temperature in degC and degF chart
items; neutrophil counts in K/uL, 10^9/L or cells/uL). A dataset's predicates.yaml states the unit a
code's values are in (``unit``) and, where the task expects another, the unit to convert to
(``to_unit``); this module knows the analyte-independent conversions. Analyte-dependent ones (mmol/L
to mg/dL) are written as an explicit ``scale`` in the rule.

Every conversion here is linear: value_to = value_from * scale + offset.
"""

from __future__ import annotations

# canonical name -> accepted spellings (compared case-sensitively after stripping spaces; mg/dL and
# mg/dl both appear in real data, so lower-case forms are listed where they are common)
_ALIASES: dict[str, tuple[str, ...]] = {
    "degC": ("degC", "Cel", "C", "°C", "deg C", "celsius", "Celsius"),
    "degF": ("degF", "[degF]", "F", "°F", "deg F", "fahrenheit", "Fahrenheit"),
    "/uL": ("/uL", "cells/uL", "/mm3", "cells/mm3", "#/uL", "/µL", "cells/µL"),
    "K/uL": ("K/uL", "10^3/uL", "10*3/uL", "x10E3/uL", "10^3/µL", "K/µL", "thou/uL", "k/uL"),
    "10^9/L": ("10^9/L", "10*9/L", "x10E9/L", "G/L"),
    "mg/dL": ("mg/dL", "mg/dl"),
    "umol/L": ("umol/L", "µmol/L", "umol/l"),
    "mmol/L": ("mmol/L", "mmol/l", "mEq/L"),
    "g/dL": ("g/dL", "g/dl"),
    "g/L": ("g/L", "g/l"),
    "%": ("%", "percent"),
    "kg/m2": ("kg/m2", "kg/m^2", "kg/m**2"),
    "kg": ("kg",),
    "lb": ("lb", "lbs", "[lb_av]"),
}
_CANONICAL = {alias.replace(" ", ""): name for name, aliases in _ALIASES.items() for alias in aliases}

# (from, to) -> (scale, offset)
_LINEAR: dict[tuple[str, str], tuple[float, float]] = {
    ("degF", "degC"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    ("degC", "degF"): (9.0 / 5.0, 32.0),
    ("K/uL", "/uL"): (1000.0, 0.0),
    ("/uL", "K/uL"): (0.001, 0.0),
    ("10^9/L", "/uL"): (1000.0, 0.0),
    ("/uL", "10^9/L"): (0.001, 0.0),
    ("K/uL", "10^9/L"): (1.0, 0.0),
    ("10^9/L", "K/uL"): (1.0, 0.0),
    ("g/L", "g/dL"): (0.1, 0.0),
    ("g/dL", "g/L"): (10.0, 0.0),
    ("lb", "kg"): (0.45359237, 0.0),
    ("kg", "lb"): (1.0 / 0.45359237, 0.0),
}


def canonical_unit(unit: str) -> str:
    """The canonical name of a unit spelling.

    Args:
        unit: a spelling such as "°F", "K/uL" or "mg/dl".

    Returns:
        The canonical name ("degF", "K/uL", "mg/dL").

    Raises:
        ValueError: the spelling is not known (the message lists the known units).
    """
    key = str(unit).replace(" ", "")
    if key in _CANONICAL:
        return _CANONICAL[key]
    raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(sorted(_ALIASES))} "
                     "(or convert with an explicit scale / offset)")


def spellings(unit: str) -> tuple[str, ...]:
    """Every accepted spelling of a unit (to match a unit written inside a code, e.g. LAB//50912//mg/dL)."""
    return _ALIASES[canonical_unit(unit)]


def conversion(from_unit: str, to_unit: str) -> tuple[float, float]:
    """(scale, offset) with value_to = value_from * scale + offset.

    Raises:
        ValueError: no analyte-independent conversion exists between the two units.
    """
    a, b = canonical_unit(from_unit), canonical_unit(to_unit)
    if a == b:
        return 1.0, 0.0
    if (a, b) not in _LINEAR:
        raise ValueError(f"no built-in conversion from {a} to {b}; give scale (and offset) in the rule, "
                         "e.g. creatinine umol/L -> mg/dL: scale: 0.01131")
    return _LINEAR[(a, b)]
