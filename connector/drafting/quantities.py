"""Numbers, comparators and units as eligibility text writes them -> bounds the engine can run.

Plain readable patterns, one list per idea. A bound is `comparator value unit`, where the unit
is UCUM (`g/dL`, `10*9/L`, `mL/min/{1.73_m2}`), `xULN` for a multiple of the upper limit of
normal, or None (scores). Ranges ("between 0.4 and 1.7 mg/dL", "50-100%") give two bounds.
A comparator lost to a bad character conversion ("? 70mL/min") gives comparator None, so the
caller can decide (or leave it to a person).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ULN = "xULN"


@dataclass(frozen=True)
class Bound:
    comparator: str | None  # < <= > >= ; None = unreadable
    value: float
    unit: str | None
    start: int
    end: int


# Comparators written before the number, longest first so "less than or equal to" wins over "less than".
_PREFIX_WORDS = [
    (r"greater than or equal to|greater than or equal|more than or equal to|equal to or greater than|"
     r"equal or greater than|higher than or equal to|at least|a minimum of|minimum of|not less than|"
     r"no less than|not lower than|>=", ">="),
    (r"less than or equal to|less than or equal|equal to or less than|equal or less than|not more than|"
     r"no more than|not greater than|no greater than|not exceeding|not to exceed|a maximum of|maximum of|"
     r"up to|<=", "<="),
    (r"greater than|more than|higher than|above|over|exceeding|exceeds|in excess of|>", ">"),
    (r"less than|lower than|below|under|fewer than|<", "<"),
]
_PREFIX = re.compile(r"(?:" + "|".join(f"(?P<c{i}>{p})" for i, (p, _) in enumerate(_PREFIX_WORDS)) +
                     r")\s*(?:of\s+|than\s+|:\s*)?$", re.IGNORECASE)
_PREFIX_OPS = [op for _, op in _PREFIX_WORDS]
# A character lost in conversion where a comparator was (e.g. "rate ? 70mL/min").
_LOST = re.compile(r"(?:^|\s)\?\s*$")
_POSTFIX = [
    (re.compile(r"^\s*(?:or|and)\s+(?:more|greater|higher|above|over)\b", re.I), ">="),
    (re.compile(r"^\s*(?:or|and)\s+(?:less|lower|below|fewer|under)\b", re.I), "<="),
]
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+,\d{1,2}(?!\d)|\d+)(?![\d])")
_RANGE = re.compile(
    r"(?:between\s+)?(?P<a>\d+(?:[.,]\d+)?)\s*(?P<ua>%|g/dl|mg/dl)?\s*(?:-|to|and)\s*(?P<b>\d+(?:[.,]\d+)?)(?![\d.])",
    re.IGNORECASE)

# Units after the number: (pattern, UCUM code), checked in order at the text right after the number.
_UNITS: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.IGNORECASE), u) for p, u in [
    (r"^\s*(?:x|times|fold|×)?\s*(?:(?:greater|higher)\s+than\s+)?(?:the\s+)?(?:institutional\s+|local\s+)?"
     r"(?:upper\s+limits?\s+of\s+(?:the\s+)?(?:institutional\s+|local\s+)?normal(?:\s+range)?|uln\b|"
     r"upper\s+normal\s+(?:limit|value)|"
     r"upper\s+limit\s+normal|normal\s+limit|nl\b|institutional\s+norm\b|upper\s+range\s+of\s+normal)", ULN),
    (r"^\s*(?:x|×)?\s*10\s*(?:\^|\*|e)?\s*\(?9\)?\s*/\s*l\b", "10*9/L"),
    (r"^\s*(?:x|×)?\s*10\s*(?:\^|\*|e)?\s*\(?3\)?\s*/\s*(?:ul|mcl)\b", "10*3/uL"),
    (r"^\s*(?:x|×)?\s*10\s*(?:\^|\*|e)?\s*\(?3\)?\s*/\s*(?:mm\s*\^?\s*3|cu\.?\s*mm)", "10*3/mm3"),
    (r"^\s*(?:x|×)?\s*10\s*(?:\^|\*|e)?\s*\(?12\)?\s*/\s*l\b", "10*12/L"),
    (r"^\s*k\s*/\s*(?:ul|mcl|mm\s*\^?\s*3)\b", "10*3/uL"),
    (r"^\s*(?:cells\s*)?(?:/|per)\s*(?:ul|mcl|microliter)\b", "/uL"),
    (r"^\s*(?:cells\s*)?(?:/|per)\s*(?:mm\s*\^?\s*3|cu\.?\s*mm|cubic\s+mm|cumm)", "/mm3"),
    (r"^\s*(?:cells\s*)?(?:/|per)\s*l\b", "/L"),
    (r"^\s*m[lL]\s*/\s*min(?:ute)?\s*(?:/|per)\s*1[.,]73\s*(?:m\s*\^?\s*2|sq\.?\s*m|m2)", "mL/min/{1.73_m2}"),
    (r"^\s*ml\s*/\s*min(?:ute)?\b", "mL/min"),
    (r"^\s*(?:g|gm|gms|grams?)\s*/\s*dl\b", "g/dL"),
    (r"^\s*(?:g|gm|gms|grams?)\s*/\s*l\b", "g/L"),
    (r"^\s*mg\s*/\s*dl\b", "mg/dL"),
    (r"^\s*mg\s*/\s*l\b", "mg/L"),
    (r"^\s*(?:umol|mcmol|micromol)\s*/\s*l\b", "umol/L"),
    (r"^\s*mmol\s*/\s*l\b", "mmol/L"),
    (r"^\s*mmol\s*/\s*mol\b", "mmol/mol"),
    (r"^\s*meq\s*/\s*l\b", "meq/L"),
    (r"^\s*ng\s*/\s*ml\b", "ng/mL"),
    (r"^\s*pg\s*/\s*ml\b", "pg/mL"),
    (r"^\s*(?:iu|u)\s*/\s*l\b", "U/L"),
    (r"^\s*(?:ms|msec|milliseconds?)\b", "ms"),
    (r"^\s*(?:sec|seconds?|s)\b", "s"),
    (r"^\s*%", "%"),
    (r"^\s*percent\b", "%"),
]]
_BARE_ULN = re.compile(
    "(?:" + "|".join(f"(?P<c{i}>{p})" for i, (p, _) in enumerate(_PREFIX_WORDS)) + r")\s*(?:the\s+)?"
    r"(?:institutional\s+|local\s+)?(?:uln\b|upper\s+limits?\s+of\s+(?:the\s+)?(?:institutional\s+)?normal)",
    re.IGNORECASE)
_COUNT_UNIT_AFTER_DOT_THOUSANDS = re.compile(r"^\s*(?:cells\s*)?(?:/|per)\s*(?:ul|mcl|mm)", re.IGNORECASE)


def parse_number(text: str, following: str = "") -> float:
    """`1,500` -> 1500, `2,5` -> 2.5 (decimal comma), `100.000` before a count unit -> 100000."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        return float(text.replace(",", ""))
    if re.fullmatch(r"\d+,\d{1,2}", text):
        return float(text.replace(",", "."))
    if re.fullmatch(r"\d{1,3}\.\d{3}", text) and _COUNT_UNIT_AFTER_DOT_THOUSANDS.match(following):
        return float(text.replace(".", ""))
    return float(text)


def unit_at(text: str) -> tuple[str | None, int]:
    """The unit starting at the beginning of `text` (UCUM or xULN) and its length."""
    for pattern, unit in _UNITS:
        match = pattern.match(text)
        if match:
            return unit, match.end()
    return None, 0


def comparator_before(text: str) -> str | None | bool:
    """The comparator that ends `text` (">=", ...), None for a lost character, False for none."""
    tail = text[-40:]
    match = _PREFIX.search(tail)
    if match:
        for i, op in enumerate(_PREFIX_OPS):
            if match.group(f"c{i}"):
                return op
    if _LOST.search(tail):
        return None
    return False


def find_bounds(text: str) -> list[Bound]:
    """Every `comparator number unit` in `text`, in order; ranges give a lower and an upper bound."""
    bounds: list[Bound] = []
    taken_until = 0
    for match in _RANGE.finditer(text):
        before = text[max(0, match.start() - 12):match.start()].lower()
        if comparator_before(text[:match.start()]) not in (False,) and "between" not in match.group(0).lower():
            continue  # "> 16-18" is not a range of the kind we read
        if re.search(r"\d\s*$", before):
            continue
        tail = text[match.end():]
        unit, length = unit_at(tail)
        if unit is None and match.group("ua"):
            unit, _ = unit_at(match.group("ua"))
        if unit is None and not re.search(r"between", match.group(0), re.I):
            continue  # "3-4 weeks", "12-18 months": not a bound without a unit we know
        end = match.end() + length
        low = parse_number(match.group("a"))
        high = parse_number(match.group("b"))
        if low >= high:
            continue
        bounds.append(Bound(">=", low, unit, match.start(), end))
        bounds.append(Bound("<=", high, unit, match.start(), end))
    for match in _BARE_ULN.finditer(text):  # "<= ULN", "below the upper limit of normal": 1 x ULN
        if re.search(r"\d\s*(?:x|times|fold)?\s*$", text[:match.start()]) or \
                re.match(r"\s*(?:\+|plus)", text[match.end():]):
            continue  # "1.5 times greater than the ULN" (a multiple), "ULN + 4 seconds" (an offset)
        comparator = _PREFIX_OPS[[i for i in range(len(_PREFIX_OPS)) if match.group(f"c{i}")][0]]
        bounds.append(Bound(comparator, 1.0, ULN, match.start(), match.end()))
    ranges = [(b.start, b.end) for b in bounds]
    for match in _NUMBER.finditer(text):
        if any(s <= match.start() < e for s, e in ranges) or match.start() < taken_until:
            continue
        following = text[match.end():]
        value = parse_number(match.group(1), following)
        unit, length = unit_at(following)
        end = match.end() + length
        comparator = comparator_before(text[:match.start()])
        for pattern, op in _POSTFIX:
            post = pattern.match(text[end:])
            if post and comparator is False:
                comparator = op
                end += post.end()
        if comparator is False:
            continue
        bounds.append(Bound(comparator, value, unit, match.start(), end))
        taken_until = end
    return sorted(bounds, key=lambda b: (b.start, b.comparator != ">="))
