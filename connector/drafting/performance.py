"""Performance status: ECOG/WHO/Zubrod, Karnofsky and Lansky bounds in a bullet.

ECOG is written as a list or range of allowed grades ("0 or 1", "0-2", "=< 2"): the bound is
"<= the highest allowed". Karnofsky and Lansky are written as a floor ("KPS >= 70", "50-100%",
"> 60"). When one statement names two scales ("> 60 from Lansky (age 1 to 16) or Karnofsky
(age > 16)"), each takes the bound. The usual correspondence (Oken 1982) is kept for notes:
ECOG 0 = KPS 90-100, 1 = 70-80, 2 = 50-60, 3 = 30-40, 4 = 10-20.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from connector.drafting.quantities import find_bounds

ECOG, KARNOFSKY, LANSKY = "ecog", "karnofsky", "lansky"
KPS_FLOOR_FOR_ECOG = {0: 90, 1: 70, 2: 50, 3: 30, 4: 10}

_SCALES = [
    (re.compile(r"\b(?:ecog|eastern cooperative(?: oncology)? group|zubrod|who performance|"
                r"world health organi[sz]ation(?: \(who\))? performance)", re.IGNORECASE), ECOG),
    (re.compile(r"\b(?:karnofsky|kps)\b", re.IGNORECASE), KARNOFSKY),
    (re.compile(r"\b(?:lansky|lps)\b", re.IGNORECASE), LANSKY),
]
_GRADE_LIST = re.compile(r"(?<![\w.])([0-4])(?:\s*(?:,|or|and|to|-)\s*(?:or\s+)?([0-4]))+(?![\w%]|\.\d)", re.IGNORECASE)
_SINGLE_GRADE = re.compile(r"(?:of|:|=|is|status|be)\s*([0-4])(?![\w%-]|\.\d)", re.IGNORECASE)
_AGE_CONTEXT = re.compile(r"\bage[sd]?\b[^.;]{0,6}$|\byears?\b", re.IGNORECASE)


@dataclass(frozen=True)
class PerformanceBound:
    scale: str
    comparator: str
    value: int
    span: tuple[int, int]


def _ecog_bound(segment: str) -> tuple[str, int, int, int] | None:
    for bound in find_bounds(segment):
        if bound.comparator in ("<", "<=") and bound.value <= 4 and bound.unit is None:
            value = int(bound.value) - (1 if bound.comparator == "<" else 0)
            return "<=", value, bound.start, bound.end
    grades = _GRADE_LIST.search(segment)
    if grades:
        values = [int(v) for v in re.findall(r"[0-4]", grades.group(0))]
        return "<=", max(values), grades.start(), grades.end()
    single = _SINGLE_GRADE.search(segment)
    if single:
        return "<=", int(single.group(1)), single.start(1), single.end(1)
    return None


def _floor_bound(segment: str) -> tuple[str, int, int, int] | None:
    for bound in find_bounds(segment):
        if _AGE_CONTEXT.search(segment[max(0, bound.start - 12):bound.start]) or \
                re.match(r"\s*(?:years?|months?)", segment[bound.end:]):
            continue  # "(age > 16)", "> 16 years": an age, not a score
        if bound.comparator in (">", ">=") and 10 <= bound.value <= 100 and bound.unit in (None, "%"):
            return bound.comparator, int(bound.value), bound.start, bound.end
    return None


def extract_performance(text: str) -> list[PerformanceBound]:
    """Performance-status bounds stated in one cleaned bullet, in text order."""
    mentions = sorted(((m.start(), m.end(), scale) for pattern, scale in _SCALES for m in pattern.finditer(text)))
    found: list[PerformanceBound] = []
    seen_scales: set[str] = set()
    waiting: list[str] = []  # scales named before the bound they share
    for index, (start, end, scale) in enumerate(mentions):
        next_start = mentions[index + 1][0] if index + 1 < len(mentions) else len(text)
        segment = text[end:min(next_start, end + 80)]
        bound = _ecog_bound(segment) if scale == ECOG else _floor_bound(segment)
        if bound is None and scale != ECOG:
            # "> 60 from Lansky ... or Karnofsky": the bound written before the scale's name
            bound = _floor_bound(text[max(0, start - 40):start])
            if bound is not None:
                bound = (bound[0], bound[1], 0, 0)
        if bound is None:
            waiting.append(scale)
            continue
        comparator, value, b_start, b_end = bound
        for each in [*waiting, scale]:
            if each in seen_scales:
                continue
            seen_scales.add(each)
            found.append(PerformanceBound(each, comparator if each == scale or each != ECOG else "<=", value,
                                          (end + b_start, end + b_end)))
        waiting = []
    for scale in waiting:  # named, but its bound is stated once for another scale of the same kind
        if scale not in seen_scales and scale != ECOG and found:
            floor = next((f for f in found if f.scale != ECOG), None)
            if floor:
                found.append(PerformanceBound(scale, floor.comparator, floor.value, floor.span))
                seen_scales.add(scale)
    return found


def correspondence_note(bound: PerformanceBound) -> str:
    """The other scale's equivalent, for the reviewer (Oken 1982)."""
    if bound.scale == ECOG:
        floor = KPS_FLOOR_FOR_ECOG.get(bound.value)
        return f"ECOG <= {bound.value} corresponds to Karnofsky/Lansky >= {floor}" if floor else ""
    minimum = bound.value + (1 if bound.comparator == ">" else 0)
    grades = [g for g, kps in KPS_FLOOR_FOR_ECOG.items() if kps >= minimum]
    if not grades:
        return ""
    exact = minimum in KPS_FLOOR_FOR_ECOG.values()
    return (f"{bound.scale.capitalize()} {bound.comparator} {bound.value} corresponds to ECOG <= {max(grades)}"
            + ("" if exact else " (ECOG one grade worse is partly allowed: review)"))
