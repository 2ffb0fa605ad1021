"""Durations in task files: "365d", "24h", "-7d", "1y", "30min", "0", "-inf", "inf"."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 7 * 86400, "week": 7 * 86400, "weeks": 7 * 86400,
    # A year is 365 days (not 365.25) so "1y" == "365d", as in ACES and MEDS-DEV task configs.
    "y": 365 * 86400, "year": 365 * 86400, "years": 365 * 86400,
}
_PATTERN = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")

EXAMPLES = '"365d", "24h", "-7d", "1y", "30min", "0", "-inf"'
# Longest finite duration: 1000 years. Added to a prediction time it must stay a valid timestamp
# (Python datetimes end in year 9999); an unbounded window edge is written "inf" / "-inf".
MAX_YEARS = 1000
MAX_SECONDS = MAX_YEARS * _UNITS["y"]


def parse_duration(text: str | int | float) -> float:
    """Parse a duration into seconds.

    Args:
        text: "365d", "24h", "-7d", "1y", "90min", "0", "-inf" or "inf" (a bare 0 is allowed).

    Returns:
        Seconds as a float (+-math.inf for unbounded window edges).

    Raises:
        ValueError: with a message that lists the accepted forms.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; use a number with a unit such as {EXAMPLES}")
    if isinstance(text, (int, float)):
        if text == 0:
            return 0.0
        raise ValueError(f"{text!r} has no unit; write it as e.g. '{text}d' or '{text}h'")
    s = str(text).strip().lower()
    if s in {"0", "+0", "-0"}:
        return 0.0
    if s in {"inf", "+inf"}:
        return math.inf
    if s == "-inf":
        return -math.inf
    m = _PATTERN.match(s)
    if not m or m.group(3) not in _UNITS:
        raise ValueError(f"{text!r} is not a duration; use a number with a unit such as {EXAMPLES}")
    sign = -1.0 if m.group(1) == "-" else 1.0
    seconds = float(m.group(2)) * _UNITS[m.group(3)]
    if not seconds <= MAX_SECONDS:  # also catches inf from a 400-digit number
        raise ValueError(f"{text!r} is too long a duration (at most {MAX_YEARS} years); "
                         f"use 'inf' or '-inf' for an unbounded window edge")
    return sign * seconds


def to_timedelta(seconds: float) -> timedelta:
    """Seconds (finite) to a timedelta with microsecond precision."""
    return timedelta(microseconds=round(seconds * 1e6))


def format_duration(seconds: float) -> str:
    """A compact human form: 31536000 -> '365d'."""
    if math.isinf(seconds):
        return "-inf" if seconds < 0 else "inf"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
