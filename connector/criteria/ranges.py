"""Which Observation.referenceRange applies to this patient, for `x ULN` thresholds.

A range counts only when it fits: its `type` (when given) is `normal`; its `appliesTo` (when
given) names only things we can check and that hold (the patient's sex); its `age` (when given)
contains every age the patient may have on the result's date. A range fitted to the patient
(by sex or age) is preferred over a general one. None fits -> no ULN (`no-reference-range`).
"""

from __future__ import annotations

from datetime import date

from connector.codes import SNOMED
from connector.criteria.demographics import age_span
from connector.facts import Coding, ObservationFact, PatientFacts, ReferenceRange

REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"
V3_GENDER = "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender"
# SNOMED CT 248152002 |Female| and 248153007 |Male| (the FHIR referencerange-appliesto examples)
_SEX_CODES = {
    (SNOMED, "248152002"): "female", (SNOMED, "248153007"): "male",
    (ADMINISTRATIVE_GENDER, "female"): "female", (ADMINISTRATIVE_GENDER, "male"): "male",
    (V3_GENDER, "F"): "female", (V3_GENDER, "M"): "male",
}


def applicable_range(obs: ObservationFact, facts: PatientFacts, on: date) -> ReferenceRange | None:
    """The reference range of `obs` that applies to the patient on `on` (None if none does)."""
    ranges = obs.reference_ranges
    if not ranges and (obs.reference_high or obs.reference_low):
        ranges = (ReferenceRange(obs.reference_low, obs.reference_high),)
    fitting = [rr for rr in ranges if _fits(rr, facts, on)]
    specific = [rr for rr in fitting if rr.applies_to or rr.age_low is not None or rr.age_high is not None]
    return (specific or fitting or [None])[0]


def _fits(rr: ReferenceRange, facts: PatientFacts, on: date) -> bool:
    if any(not (c.system == REFERENCE_RANGE_MEANING and c.code == "normal") for c in rr.type_codes):
        return False
    if any(not _applies(c, facts) for c in rr.applies_to):
        return False
    if rr.age_low is None and rr.age_high is None:
        return True
    ages = age_span(facts, on)
    if ages is None:
        return False
    youngest, oldest = ages
    return (rr.age_low is None or youngest >= rr.age_low) and (rr.age_high is None or oldest <= rr.age_high)


def _applies(coding: Coding, facts: PatientFacts) -> bool:
    sex = _SEX_CODES.get((coding.system or "", coding.code or ""))
    return sex is not None and sex == facts.gender
