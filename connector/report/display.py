"""Numbers and units as people write them: `years` not `a`, `10⁹/L` not `10*9/L`, `µmol/L`.

UCUM codes are what mappings and FHIR carry; coordinators read `g/dL` and `10⁹/L`. Only
the shown form changes: stored results and evidence keep the unit exactly as recorded.
"""

from __future__ import annotations

import re

SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

# Whole UCUM codes people write differently (time units alone, temperature, pressure).
WHOLE_UNITS = {
    "a": "years", "mo": "months", "wk": "weeks", "d": "days", "h": "hours",
    "Cel": "°C", "[degF]": "°F", "mm[Hg]": "mmHg", "[lb_av]": "lb", "[in_i]": "in", "1": "",
}
_POWER_OF_TEN = re.compile(r"10\*(-?\d+)")
_MICRO = re.compile(r"(?<![A-Za-z])u(?=(?:mol|g|L|l|U|IU|kat|m)\b)")
_SCALED = re.compile("10[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]")
_ANNOTATION = re.compile(r"\{([^}]*)\}")


def human_unit(ucum: str | None) -> str:
    """`10*9/L` -> `10⁹/L`, `a` -> `years`, `umol/L` -> `µmol/L`, `{cells}/uL` -> `cells/µL`."""
    if not ucum:
        return ""
    if ucum in WHOLE_UNITS:
        return WHOLE_UNITS[ucum]
    shown = _POWER_OF_TEN.sub(lambda m: "10" + m.group(1).translate(SUPERSCRIPTS), ucum)
    shown = _MICRO.sub("µ", shown)
    shown = _ANNOTATION.sub(lambda m: m.group(1), shown)
    return shown.replace("[iU]", "IU").replace("[IU]", "IU")


def number(value: float | int) -> str:
    """80.0 -> `80`, 1.5 -> `1.5`, 0.1 + 0.2 -> `0.3`: as a person would write the threshold."""
    if isinstance(value, bool):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


def quantity(value: float | int | str | None, unit: str | None) -> str:
    """A value with its unit, shown: `12.4 g/dL`, `58 years`, `3.1 × 10⁹/L`, `Not pregnant`."""
    shown_value = number(value) if isinstance(value, (int, float)) else ("" if value is None else str(value))
    shown_unit = human_unit(unit)
    if shown_value and _SCALED.match(shown_unit):  # 3.1 × 10⁹/L, as lab reports print it
        return f"{shown_value} × {shown_unit}"
    return " ".join(part for part in (shown_value, shown_unit) if part)
