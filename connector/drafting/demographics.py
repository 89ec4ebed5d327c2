"""Age and sex: the registry's structured fields first, the text where they are silent."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from connector.registry.normalise import age_in_years

_TEXT_AGE = re.compile(
    r"^(?:(?:male|female|men|women|patients?|participants?|subjects?|adults?)[\w\s,'/]{0,40}?)?"
    r"(?:aged?|ages)\b[^\d]{0,30}?(?P<body>.{0,60})", re.IGNORECASE)
_BETWEEN = re.compile(r"(?:between\s+)?(\d{1,3})\s*(?:-|to|and)\s*(\d{1,3})\s*(?:years?|yrs)", re.IGNORECASE)
_FLOOR = re.compile(r"(?:>=|at least|over|older than|above|>)\s*(\d{1,3})\s*(?:years?|yrs)?(?!\s*months)|"
                    r"(\d{1,3})\s*(?:years?|yrs)(?: of age)?\s*(?:or older|and older|and above|or above|\+)",
                    re.IGNORECASE)
_CEILING = re.compile(r"(?:<=|under|younger than|below|<)\s*(?:age\s+)?(\d{1,3})\s*(?:years?|yrs)?(?!\s*months)",
                      re.IGNORECASE)


@dataclass
class AgeBounds:
    min_years: int | None = None
    max_years: int | None = None
    notes: list[str] = field(default_factory=list)
    from_text: bool = False


def structured_age(module: dict) -> AgeBounds:
    """minimumAge/maximumAge ("18 Years", "6 Months") -> whole years the engine compares."""
    bounds = AgeBounds()
    low = age_in_years(module.get("minimumAge"))
    high = age_in_years(module.get("maximumAge"))
    if low:
        bounds.min_years = math.floor(low)
        if low != bounds.min_years:
            bounds.notes.append(f"minimumAge {module.get('minimumAge')} is not whole years; "
                                f"screened as {bounds.min_years} years")
    if high is not None:
        bounds.max_years = math.floor(high)
        if high != bounds.max_years:
            bounds.notes.append(f"maximumAge {module.get('maximumAge')} is not whole years; "
                                f"screened as {bounds.max_years} years")
    return bounds


def text_age(text: str) -> AgeBounds | None:
    """An age bullet ("Age >= 18 years", "Male or females 12-24 years old"), else None."""
    match = _TEXT_AGE.search(text)
    body = match.group("body") if match else text
    if not re.search(r"\byears?\b|\byrs\b", text, re.IGNORECASE) and not match:
        return None
    between = _BETWEEN.search(body) or _BETWEEN.search(text)
    if between and re.search(r"year|yrs|age", text, re.IGNORECASE):
        return AgeBounds(int(between.group(1)), int(between.group(2)), from_text=True)
    if not match:
        return None
    floor, ceiling = _FLOOR.search(body), _CEILING.search(body)
    if not floor and not ceiling:
        return None
    bounds = AgeBounds(from_text=True)
    if floor:  # "over 18" is written for "18 or older" far more often than for 19: taken as 18
        bounds.min_years = int(floor.group(1) or floor.group(2))
    if ceiling:
        value = int(ceiling.group(1))
        bounds.max_years = value - 1 if re.match(r"under|younger|below|<(?!=)", ceiling.group(0), re.I) else value
    return bounds


def allowed_sexes(module: dict) -> list[str] | None:
    """FEMALE -> [female], MALE -> [male]; ALL or absent -> None (no restriction)."""
    sex = str(module.get("sex") or "").upper()
    return {"FEMALE": ["female"], "MALE": ["male"]}.get(sex)
