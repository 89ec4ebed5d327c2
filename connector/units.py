"""UCUM unit conversion for lab values, on ucumvert (UCUM grammar) + pint (dimensional algebra).

Why a library: UCUM has prefixes, powers, `10*N` factors and annotations; a hand-written
table would miss cases and silently convert wrongly. What this module adds on top:

- mass <-> molar conversion by an analyte's molar mass (bilirubin, creatinine), which UCUM
  alone cannot do;
- a few spellings labs send that are not UCUM (`K/uL`, `x10^9/L`, `cells/uL`, `µmol/L`);
- rounding to 12 significant digits so float noise never flips a boundary
  (1000 /uL is exactly 1.0 10*9/L);
- a policy for UCUM annotations (`{...}`): ucumvert treats every annotation as "1", so
  `mL/min/{1.73_m2}` (a body-surface-normalised rate) would convert to plain `mL/min`.
  Count annotations (`{cells}`, `{#}`, `{score}`...) are harmless and ignored; any other
  annotation must be the same on both sides, else the conversion is refused (UnitError).

The registry takes ~0.6 s to build, so it is built once, lazily, on first use, and the
answers screens ask for (factors, known units) are persisted by connector.unit_cache: a
screen loads pint only for a unit pair it has never seen.
"""

from __future__ import annotations

import math
import re
import threading
from functools import lru_cache
from typing import Any

from connector.unit_cache import answers

SIGNIFICANT_DIGITS = 12

# Annotations that only say *what* is counted; they never change a value's meaning.
COUNT_ANNOTATIONS = frozenset({"{cells}", "{cell}", "{#}", "{count}", "{score}", "{events}", "{total}"})

# Common non-UCUM spellings from lab systems -> UCUM. Checked before parsing because some are
# valid UCUM with another meaning (`K/uL` would be kelvin per microlitre).
_ALIASES = {
    "k/ul": "10*3/uL",
    "cells/ul": "/uL",
    "cells/mm3": "/mm3",
    "/mm^3": "/mm3",
    "cells/mm^3": "/mm3",
    "/cumm": "/mm3",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
}
_POWER_OF_TEN = re.compile(r"^(?:x\s*)?10\s*(?:\^|e|E|\*)\s*(\d+)\s*/\s*(\S+)$")
_ANNOTATION = re.compile(r"\{[^{}]*\}")


class UnitError(ValueError):
    """A unit is unknown, or cannot be converted to the unit a criterion asks for."""


_registry_lock = threading.Lock()
_registry: Any = None


def registry() -> Any:
    """The shared ucumvert/pint registry, built on first use (~0.6 s)."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                from ucumvert import PintUcumRegistry

                _registry = PintUcumRegistry()
    return _registry


def normalize_unit(unit: str) -> str:
    """Lab spellings -> UCUM code (`x10^9/L` -> `10*9/L`, `K/uL` -> `10*3/uL`, `µ` -> `u`)."""
    text = unit.strip().replace("µ", "u").replace("μ", "u")
    alias = _ALIASES.get(text.lower().replace(" ", ""))
    if alias:
        return alias
    match = _POWER_OF_TEN.match(text)
    if match:
        return f"10*{match.group(1)}/{match.group(2)}"
    return text


def _annotations(code: str) -> frozenset[str]:
    return frozenset(a for a in _ANNOTATION.findall(code) if a.lower() not in COUNT_ANNOTATIONS)


@lru_cache(maxsize=512)
def parse_unit(unit: str | None) -> Any:
    """A unit string -> a pint Unit; None / "" / "1" / a bare annotation mean dimensionless."""
    reg = registry()
    if unit is None or not unit.strip():
        return reg.from_ucum("1").units
    code = normalize_unit(unit)
    try:
        parsed = reg.from_ucum(code)
    except Exception as exc:  # ucumvert raises InvalidUcumError, lark and pint errors alike
        raise UnitError(f"{unit!r} is not a known UCUM unit") from exc
    if not hasattr(parsed, "units"):  # a bare annotation such as "{score}" comes back as a token
        return reg.from_ucum("1").units
    if not math.isclose(float(parsed.magnitude), 1.0):
        # e.g. "10*3/uL" parses as 1.0 * _10**3/uL: the factor is part of the unit already;
        # any other magnitude would be a number inside the unit string, which we refuse.
        raise UnitError(f"{unit!r} is not a unit but a quantity")
    return parsed.units


def require_known_unit(unit: str | None) -> None:
    """Raise UnitError unless `unit` parses (as parse_unit would), without pint when answered before."""
    answers.answer(("unit", unit), lambda: float(parse_unit(unit) is not None), UnitError)


def is_known_unit(unit: str) -> bool:
    try:
        require_known_unit(unit)
    except UnitError:
        return False
    return True


def round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """Round to `digits` significant digits: removes float noise such as 0.9999999999999999."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


@lru_cache(maxsize=1024)
def conversion_factor(from_unit: str | None, to_unit: str | None, molar_mass: float | None = None) -> float:
    """The factor f with value[to_unit] = f * value[from_unit]; raises UnitError if impossible.

    `molar_mass` (g/mol) allows mass <-> amount-of-substance conversion for one analyte.
    Answers are persisted (connector.unit_cache): pint is loaded only for a new question.
    """
    return answers.answer(("factor", from_unit, to_unit, molar_mass),
                          lambda: _computed_factor(from_unit, to_unit, molar_mass), UnitError)


def _computed_factor(from_unit: str | None, to_unit: str | None, molar_mass: float | None) -> float:
    if _annotations(from_unit or "") != _annotations(to_unit or ""):
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}: their annotations differ")
    source = 1.0 * parse_unit(from_unit)
    target = parse_unit(to_unit)
    from pint.errors import DimensionalityError

    try:
        return float(source.to(target).magnitude)
    except DimensionalityError:
        pass
    if molar_mass:
        mass_per_mole = molar_mass * parse_unit("g/mol")
        for candidate in (source * mass_per_mole, source / mass_per_mole):
            try:
                return float(candidate.to(target).magnitude)
            except DimensionalityError:
                continue
    raise UnitError(f"cannot convert {from_unit or 'a unitless value'!r} to {to_unit or 'a unitless value'!r}")


def convert(value: float, from_unit: str | None, to_unit: str | None, molar_mass: float | None = None) -> float:
    """`value` in `from_unit` expressed in `to_unit`, rounded to 12 significant digits."""
    return round_sig(value * conversion_factor(from_unit, to_unit, molar_mass))
