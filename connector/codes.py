"""Code systems and code matching shared by mappings and the criteria engine.

Why: the same concept reaches us as `http://loinc.org` or `urn:oid:2.16.840.1.113883.6.1`, and
ICD-10 codes as `C7A.012` or `C7A012`; comparing raw strings would miss real matches. Mappings
may name systems by short alias (`loinc`, `snomed`, `icd-10-cm`, `rxnorm`) for readability.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from connector.facts import Coding

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

SYSTEM_ALIASES = {
    "loinc": LOINC,
    "snomed": SNOMED,
    "sct": SNOMED,
    "icd-10-cm": ICD10CM,
    "icd10cm": ICD10CM,
    "icd-10": ICD10,
    "rxnorm": RXNORM,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.3": ICD10,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://snomed.info/sct/": SNOMED,
}
_ICD_SYSTEMS = {ICD10CM, ICD10}
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=4096)  # called for every coding of every resource read: a few distinct systems
def canonical_system(system: str | None) -> str | None:
    """A system URI or alias -> its canonical FHIR URI (unknown systems are kept as given)."""
    if system is None:
        return None
    text = system.strip()
    return SYSTEM_ALIASES.get(text.lower(), SYSTEM_ALIASES.get(text, text.rstrip("/")))


@lru_cache(maxsize=65536)
def normalize_code(system: str | None, code: str) -> str:
    """ICD-10 codes compare without dots and case (`c7a.012` == `C7A012`); others as given."""
    code = code.strip()
    if system in _ICD_SYSTEMS:
        return code.replace(".", "").upper()
    return code


def normalize_text(text: str) -> str:
    """For name matching: lower case, punctuation and spacing folded to single spaces.

    `177Lu-DOTATATE` and `177lu dotatate` become the same string, so synonyms need not list
    every hyphenation an EHR might use.
    """
    return _NON_ALNUM.sub(" ", text.lower()).strip()


@dataclass(frozen=True)
class CodeSet:
    """Codes of one system; `prefix` lets `C7A.0` match `C7A.012` (ICD hierarchies)."""

    system: str
    codes: frozenset[str]
    prefix: bool = False

    @classmethod
    def of(cls, system: str, codes: list[str] | tuple[str, ...], prefix: bool = False) -> "CodeSet":
        canonical = canonical_system(system) or system
        return cls(canonical, frozenset(normalize_code(canonical, c) for c in codes), prefix)

    def matches(self, coding: Coding) -> bool:
        if coding.code is None or canonical_system(coding.system) != self.system:
            return False
        code = normalize_code(self.system, coding.code)
        if code in self.codes:
            return True
        return self.prefix and any(code.startswith(c) for c in self.codes)

    def pairs(self) -> frozenset[tuple[str, str]]:
        """(system, code) pairs for narrowing server searches (exact codes only)."""
        return frozenset((self.system, c) for c in self.codes)


def first_match(code_sets: tuple[CodeSet, ...], codings: tuple[Coding, ...]) -> Coding | None:
    """The first coding that any of the code sets matches."""
    for coding in codings:
        if any(cs.matches(coding) for cs in code_sets):
            return coding
    return None
