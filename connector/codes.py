"""Code systems and code matching shared by mappings and the criteria engine.

Why: the same concept reaches us as `http://loinc.org` or `urn:oid:2.16.840.1.113883.6.1`, and
ICD-10 codes as `C7A.012` or `C7A012`; comparing raw strings would miss real matches. Mappings
may name systems by short alias (`loinc`, `snomed`, `icd-10-cm`, `rxnorm`) for readability.
Sources canonicalise every coding's system as they read it (connector.parse), so filters and
criteria compare canonical URIs only. `match: descendants` takes an ICD-10-CM code with its
whole subtree from the maintained code table of `simple-icd-10-cm` (offline), rather than by
string prefix (`I50` must not match an invented `I500`). The table takes ~3 s to load, so it is
consulted only when a patient's code starts like one of the set's codes.
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
    "https://loinc.org": LOINC,
    "http://www.loinc.org": LOINC,
    "https://snomed.info/sct": SNOMED,
    "http://hl7.org/fhir/sid/icd-10-us": ICD10CM,
    "http://hl7.org/fhir/sid/icd10cm": ICD10CM,
    "http://hl7.org/fhir/sid/icd10": ICD10,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "https://www.nlm.nih.gov/research/umls/rxnorm": RXNORM,
}
# The OIDs servers may store instead of the URI: REST code searches ask for both forms.
SYSTEM_OIDS = {LOINC: "urn:oid:2.16.840.1.113883.6.1", SNOMED: "urn:oid:2.16.840.1.113883.6.96",
               ICD10CM: "urn:oid:2.16.840.1.113883.6.90", ICD10: "urn:oid:2.16.840.1.113883.6.3",
               RXNORM: "urn:oid:2.16.840.1.113883.6.88"}
_ICD_SYSTEMS = {ICD10CM, ICD10}
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=4096)  # called for every coding of every resource read: a few distinct systems
def canonical_system(system: str | None) -> str | None:
    """A system URI or alias -> its canonical FHIR URI (unknown systems are kept as given)."""
    if system is None:
        return None
    text = system.strip()
    found = SYSTEM_ALIASES.get(text.lower()) or SYSTEM_ALIASES.get(text.lower().rstrip("/"))
    return found or text.rstrip("/")


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
    """Codes of one system; `prefix` lets `C7A.0` match `C7A.012` as text, `descendants` lets
    `I50` match `I50.810` when the ICD-10-CM table says it is below it."""

    system: str
    codes: frozenset[str]
    prefix: bool = False
    descendants: bool = False

    @classmethod
    def of(cls, system: str, codes: list[str] | tuple[str, ...], prefix: bool = False,
           descendants: bool = False) -> "CodeSet":
        """ValueError for `descendants` on a system other than ICD-10-CM or a malformed code."""
        canonical = canonical_system(system) or system
        normalized = frozenset(normalize_code(canonical, c) for c in codes)
        if descendants:
            if canonical != ICD10CM:
                raise ValueError("match: descendants is available for ICD-10-CM only")
            bad = sorted(c for c in normalized if not _ICD10CM_SHAPE.match(c))
            if bad:
                raise ValueError(f"{bad[0]!r} is not an ICD-10-CM code")
        return cls(canonical, normalized, prefix, descendants)

    def matches(self, coding: Coding) -> bool:
        if coding.code is None or canonical_system(coding.system) != self.system:
            return False
        code = normalize_code(self.system, coding.code)
        if code in self.codes:
            return True
        if self.prefix and any(code.startswith(c) for c in self.codes):
            return True
        return self.descendants and any(code.startswith(c) and icd10cm_is_below(code, c) for c in self.codes)

    def pairs(self) -> frozenset[tuple[str, str]]:
        """(system, code) pairs for narrowing server searches (exact codes only)."""
        return frozenset((self.system, c) for c in self.codes)


_ICD10CM_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z]{1,5}$")


def icd10cm_is_below(code: str, ancestor: str) -> bool:
    """Whether the ICD-10-CM table puts `code` below `ancestor` (codes with or without dots)."""
    import simple_icd_10_cm as table  # loads its tables on import (~3 s): only when needed

    return table.is_valid_item(code) and table.is_valid_item(ancestor) and table.is_descendant(code, ancestor)


def search_tokens(pairs: frozenset[tuple[str, str]] | set[tuple[str, str]]) -> list[str]:
    """`system|code` tokens for a FHIR `code=` search: each code under its URI and, for the
    common systems, under its OID too, since a server matches the system as stored."""
    tokens = set()
    for system, code in pairs:
        if not system:
            tokens.add(code)
            continue
        tokens.add(f"{system}|{code}")
        if system in SYSTEM_OIDS:
            tokens.add(f"{SYSTEM_OIDS[system]}|{code}")
    return sorted(tokens)


def first_match(code_sets: tuple[CodeSet, ...], codings: tuple[Coding, ...]) -> Coding | None:
    """The first coding that any of the code sets matches."""
    for coding in codings:
        if any(cs.matches(coding) for cs in code_sets):
            return coding
    return None
