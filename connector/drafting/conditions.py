"""Conditions named in the text -> ICD-10-CM code sets, from a maintained offline table.

The names -> codes list (conditions.yaml) is small and hand-kept; the codes themselves are
checked against simple-icd-10-cm (the CMS ICD-10-CM release) and expanded with every descendant
there, so "I50" covers I50.1 ... I50.9 and a mistyped code never reaches a mapping.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConditionEntry:
    key: str
    codes: tuple[str, ...]  # the listed codes and all their descendants, dotted
    snomed: tuple[str, ...]
    pattern: re.Pattern[str]


def expand_icd10cm(codes: list[str]) -> tuple[str, ...]:
    """Listed codes that the ICD-10-CM table knows, plus all their descendants."""
    import simple_icd_10_cm as cm

    found: list[str] = []
    for code in codes:
        if not cm.is_valid_item(code):
            log.warning("conditions.yaml: %s is not an ICD-10-CM code; dropped", code)
            continue
        found.append(cm.add_dot(code) if "." not in code and len(code) > 3 else code)
        found.extend(cm.add_dot(d) if "." not in d and len(d) > 3 else d for d in cm.get_descendants(code))
    return tuple(dict.fromkeys(found))


@lru_cache(maxsize=1)
def table() -> dict[str, ConditionEntry]:
    data = yaml.safe_load(resources.files("connector.drafting").joinpath("conditions.yaml").read_text(encoding="utf-8"))
    entries = {}
    for key, entry in data["conditions"].items():
        pattern = re.compile(r"(?<![\w-])(?:" + "|".join(entry["names"]) + r")(?![\w])", re.IGNORECASE)
        entries[key] = ConditionEntry(key, expand_icd10cm(entry["icd10cm"]), tuple(entry.get("snomed") or []), pattern)
    return entries


def find_conditions(text: str) -> list[tuple[ConditionEntry, re.Match[str]]]:
    """Every known condition named in `text`, in order."""
    found = [(entry, m) for entry in table().values() for m in entry.pattern.finditer(text)]
    return sorted(found, key=lambda pair: pair[1].start())


def code_sets(entry: ConditionEntry) -> list[dict]:
    sets: list[dict] = [{"system": "icd-10-cm", "codes": list(entry.codes)}]
    if entry.snomed:
        sets.append({"system": "snomed", "codes": list(entry.snomed)})
    return sets
