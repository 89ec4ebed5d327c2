"""Laboratory thresholds in a bullet: analyte names from the lab dictionary (labs.yaml), each
paired with the bound(s) written after it.

Rules, from how eligibility text is written:
- an analyte takes the bounds between its name and the next analyte's name ("Hemoglobin >= 9
  g/dL, platelets >= 100,000/mm3");
- names joined by "/", "or", "and" with no bound between share the next one ("AST/ALT <= 2.5
  x ULN", "SGOT or SGPT less than 2.5 x NL");
- a second bound of the same direction is either the same threshold in other units ("80 g/L
  (8.0 g/dL)": dropped) or an alternative under a condition ("<= 5 x ULN with liver metastases",
  "<= 3 x ULN ... in patients with Gilbert's syndrome"): kept as an alternative;
- thresholds joined by "or" ("creatinine <= 1.5 x ULN or creatinine clearance >= 60 mL/min")
  are alternatives: one group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import yaml

from connector.drafting.quantities import ULN, Bound, find_bounds
from connector.units import UnitError, convert


@dataclass(frozen=True)
class Analyte:
    key: str
    label: str
    unit: str
    bound: str  # lower | upper
    loinc: tuple[str, ...]
    molar_mass: float | None = None
    derived: str | None = None
    count_units: bool = False


@dataclass
class LabThreshold:
    analyte: Analyte
    comparator: str
    value: float
    unit: str  # UCUM or xULN
    span: tuple[int, int]
    condition: str | None = None  # text of the condition an alternative applies under
    inferred_comparator: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class LabGroup:
    """One criterion: any one option suffices; every threshold of an option must hold."""

    options: list[list[LabThreshold]]

    @property
    def thresholds(self) -> list[LabThreshold]:
        return [t for option in self.options for t in option]


@lru_cache(maxsize=1)
def dictionary() -> tuple[dict[str, Analyte], re.Pattern[str], re.Pattern[str]]:
    """The analytes, and two patterns (case-insensitive names, case-sensitive abbreviations)."""
    data = yaml.safe_load(resources.files("connector.drafting").joinpath("labs.yaml").read_text(encoding="utf-8"))
    analytes: dict[str, Analyte] = {}
    names: list[tuple[str, str]] = []
    abbreviations: list[tuple[str, str]] = []
    for key, entry in data["analytes"].items():
        analytes[key] = Analyte(key, entry["label"], str(entry["unit"]), entry["bound"],
                                tuple(c["code"] for c in entry.get("loinc") or []),
                                entry.get("molar_mass"), entry.get("derived"), bool(entry.get("count_units")))
        names += [(key, n) for n in entry.get("names") or []]
        abbreviations += [(key, re.escape(a)) for a in entry.get("abbreviations") or []]

    def alternation(items: list[tuple[str, str]]) -> str:
        # Longest first, so "creatinine clearance" wins over "creatinine".
        ordered = sorted(items, key=lambda kv: -len(kv[1]))
        return "|".join(f"(?P<{k}__{i}>{p})" for i, (k, p) in enumerate(ordered))

    names_re = re.compile(rf"(?<![\w-])(?:{alternation(names)})(?![\w])", re.IGNORECASE)
    abbr_re = re.compile(rf"(?<![\w-])(?:{alternation(abbreviations)})(?![\w])")
    return analytes, names_re, abbr_re


@dataclass(frozen=True)
class Mention:
    key: str
    start: int
    end: int


def find_mentions(text: str) -> list[Mention]:
    """Analyte names in `text`, left to right, overlaps resolved in favour of the longer name."""
    _, names_re, abbr_re = dictionary()
    found: list[Mention] = []
    for pattern in (names_re, abbr_re):
        for match in pattern.finditer(text):
            group = next(g for g, v in match.groupdict().items() if v is not None)
            found.append(Mention(group.split("__")[0], match.start(), match.end()))
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[Mention] = []
    for mention in found:
        if kept and mention.start < kept[-1].end:
            continue
        kept.append(mention)
    return kept


_JOINER = re.compile(r"^\)?[\s,]*(?:\([^()]{0,40}\)\s*)?(?P<joiner>/|or|and|and/or)?[\s,]*(?:\([^()]{0,40}\)\s*)?$",
                     re.IGNORECASE)
_CONDITION = re.compile(
    r"\b(?:with|in|for)\s+(?:patients?|subjects?|participants?|those)?\s*(?:with|who have)?\s*"
    r"(?P<what>(?:documented |known |confirmed )?(?:liver|hepatic) (?:metastas[ie]s|involvement)|"
    r"(?:documented |known |confirmed )?gilbert'?s?(?: syndrome| disease)?|"
    r"(?:liver|hepatic|bone) (?:metastas[ie]s|involvement))", re.IGNORECASE)
_CONDITION_LEAD = re.compile(r"(?:\b(?:for|in)\s+(?:patients?|subjects?|participants?|those)\s+(?:with|who have)|"
                             r"\bif|\bwhen|\bunless|\bunder the condition of|\bprovided(?: that)?)\s+(?:\w+\s+){0,2}$",
                             re.IGNORECASE)
_CONDITION_BEFORE = re.compile(r"(?P<what>liver metastas[ie]s|hepatic metastas[ie]s|liver involvement|gilbert'?s?"
                               r"(?: syndrome| disease)?)|\b(?:except|unless|who can have)\b", re.IGNORECASE)
_RESTATED = re.compile(r"[\s(),/]*(?:or\s*)?[\s(),/]*", re.IGNORECASE)
_EXCEPTION = re.compile(r"\b(?:except|unless|other than|excluding)\b", re.IGNORECASE)
_OR = re.compile(r"\bor\b", re.IGNORECASE)
_AND = re.compile(r"\band\b|;|,\s", re.IGNORECASE)
_COCKCROFT = re.compile(r"cockcroft", re.IGNORECASE)
_TRANSAMINASES = {"ast", "alt"}


def _same_quantity(a: LabThreshold, b: Bound, analyte: Analyte) -> bool:
    """`b` restates `a` in other units (80 g/L = 8.0 g/dL)."""
    if b.unit is None or a.unit == ULN or b.unit == ULN:
        return False
    try:
        return abs(convert(b.value, b.unit, a.unit, analyte.molar_mass) - a.value) <= 1e-6 * max(1.0, abs(a.value))
    except UnitError:
        return False


def _unit_for(bound: Bound, analyte: Analyte) -> str | None:
    if bound.unit is not None:
        return bound.unit
    if analyte.count_units:
        return "/uL" if bound.value >= 100 else "10*9/L"
    return "1" if analyte.unit == "1" else None


def _plausible(bound: Bound, analyte: Analyte) -> bool:
    """A bound belongs to a lab when its unit fits the analyte (ages, days and scores do not)."""
    unit = _unit_for(bound, analyte)
    if unit is None:
        return False
    if unit == ULN:
        return True
    if unit == "%" or analyte.unit == "%":
        return unit == analyte.unit
    if analyte.key in ("creatinine_clearance", "gfr"):
        return unit.startswith("mL/min")
    try:
        convert(1.0, unit, analyte.unit, analyte.molar_mass)
        return True
    except UnitError:
        return False


@dataclass
class _Claim:
    """Mentions that share the bounds written after the last of them, and how they were joined."""

    mentions: list[Mention]
    joiner: str  # "or" = alternatives, else each must hold


def extract_labs(text: str) -> list[LabGroup]:
    """The lab threshold groups stated in one cleaned bullet (empty when there are none)."""
    analytes, _, _ = dictionary()
    mentions = _merge_restated(find_mentions(text), text)
    bounds = find_bounds(text)
    if not mentions or not bounds:
        return []
    # "at least 1500 granulocytes": a bound written right before a name belongs to that name.
    before = {id(b): m for b in bounds for m in mentions
              if b.unit is None and 0 <= m.start - b.end <= 2 and not text[b.end:m.start].strip()}
    used: set[int] = set()
    groups: list[tuple[_Claim, list[LabThreshold]]] = []
    pending: list[Mention] = []
    joiner = ""
    for index, mention in enumerate(mentions):
        analyte = analytes[mention.key]
        segment_end = mentions[index + 1].start if index + 1 < len(mentions) else len(text)
        mine = [b for b in bounds if before.get(id(b)) is mention or
                (mention.end <= b.start < segment_end and id(b) not in before and id(b) not in used)]
        mine = [b for b in mine if _plausible(b, analyte)]
        if not mine:
            join = _JOINER.match(text[mention.end:segment_end]) if index + 1 < len(mentions) else None
            if join and join.group("joiner"):
                pending.append(mention)
                joiner = joiner or join.group("joiner").lower()
            else:
                pending, joiner = [], ""
            continue
        if _CONDITION_LEAD.search(text[max(0, mention.start - 40):mention.start]):
            used.update(id(b) for b in mine)  # "... for patients with serum creatinine above ULN": a condition
            pending, joiner = [], ""
            continue
        claim = _Claim([*pending, mention], joiner)
        pending, joiner = [], ""
        used.update(id(b) for b in mine)
        for member in claim.mentions:
            member_analyte = _analyte_in_context(analytes[member.key], text[member.start:segment_end], analytes)
            kept = [b for b in mine if _plausible(b, member_analyte)]
            groups.append((_Claim([member], claim.joiner if len(claim.mentions) > 1 else ""),
                           _thresholds_for(member_analyte, kept, text, bounds)))
    return _group(groups, text)


def _merge_restated(mentions: list[Mention], text: str) -> list[Mention]:
    """"white blood cell (WBC)": one mention, not two."""
    merged: list[Mention] = []
    for mention in mentions:
        if merged and merged[-1].key == mention.key and _RESTATED.fullmatch(text[merged[-1].end:mention.start]):
            merged[-1] = Mention(mention.key, merged[-1].start, mention.end)
            continue
        merged.append(mention)
    return merged


def _analyte_in_context(analyte: Analyte, segment: str, analytes: dict[str, Analyte]) -> Analyte:
    """An "estimated GFR (Cockcroft-Gault)" is a creatinine clearance."""
    if analyte.key == "gfr" and _COCKCROFT.search(segment):
        return analytes["creatinine_clearance"]
    return analyte


def _thresholds_for(analyte: Analyte, bounds: list[Bound], text: str, every_bound: list[Bound]) -> list[LabThreshold]:
    result: list[LabThreshold] = []
    for bound in bounds:
        unit = _unit_for(bound, analyte)
        if unit is None:
            continue
        comparator = bound.comparator
        inferred = comparator is None
        if comparator is None:
            comparator = ">=" if analyte.bound == "lower" else "<="
        threshold = LabThreshold(analyte, comparator, bound.value, unit, (bound.start, bound.end),
                                 inferred_comparator=inferred)
        if inferred:
            threshold.notes.append("comparator unreadable in the text; inferred from the analyte's usual direction")
        if bound.unit is None and analyte.count_units:
            threshold.notes.append(f"no unit in the text; {unit} assumed for a count of {bound.value:g}")
        same_side = [t for t in result if t.comparator[0] == comparator[0]]
        if any(_same_quantity(t, bound, analyte) for t in same_side):
            continue  # the same threshold restated in other units
        condition = _CONDITION.search(text[bound.end:bound.end + 120])
        if condition and (_EXCEPTION.search(text[bound.end:bound.end + condition.start()]) or
                          find_bounds(text[bound.end + condition.end():bound.end + condition.end() + 50])):
            # "(except subjects with Gilbert's ...", "..., and for patients with liver metastases, ALT < 5 x ULN":
            # the condition belongs to the exception or to the threshold that follows it
            condition = None
        previous_end = max((b.end for b in every_bound if b.end <= bound.start), default=0)
        lead = text[max(previous_end, bound.start - 80):bound.start]
        lead = lead[max(lead.rfind(";"), lead.rfind(". ")) + 1:]
        named = [m.group("what") for m in _CONDITION_BEFORE.finditer(lead) if m.group("what")]
        if condition and not find_bounds(text[bound.end:bound.end + condition.start()]):
            threshold.condition = condition.group("what")
        elif named or _CONDITION_BEFORE.search(lead):
            threshold.condition = named[0] if named else "an unstated condition"
        elif same_side:
            threshold.condition = "an unstated condition"
        result.append(threshold)
    return result


def _group(claims: list[tuple[_Claim, list[LabThreshold]]], text: str) -> list[LabGroup]:
    """One analyte's thresholds: its range is one option, a conditional alternative another.
    Analytes named together with "or", or whose thresholds are joined by "or", are alternatives."""
    groups: list[LabGroup] = []
    previous_end = None
    previous_joiner = ""
    for claim, thresholds in claims:
        if not thresholds:
            continue
        base = [t for t in thresholds if t.condition is None]
        options = [base] if base else []
        options += [[t] for t in thresholds if t.condition is not None]
        start = min(t.span[0] for t in thresholds)
        alternative = False
        if groups and previous_end is not None:
            between = text[previous_end:start]
            same_bound = start < previous_end
            if same_bound:
                alternative = previous_joiner == "or" and not (
                    {groups[-1].thresholds[-1].analyte.key, thresholds[0].analyte.key} <= _TRANSAMINASES)
            elif thresholds[0].analyte.key == groups[-1].thresholds[-1].analyte.key and (
                    _OR.search(between) or all(t.condition for t in thresholds)):
                alternative = True  # "bilirubin <= ULN; or bilirubin <= 3 x ULN with Gilbert's"
            else:
                alternative = bool(_OR.search(between)) and not _AND.search(_OR.sub(" ", between))
        if alternative:
            groups[-1].options.extend(options)
        else:
            groups.append(LabGroup(options))
        previous_end = max(t.span[1] for t in thresholds)
        previous_joiner = claim.joiner
    return groups
