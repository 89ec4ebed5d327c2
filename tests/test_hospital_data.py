"""Issue 9's contract on realistic hospital FHIR R4 data, read from files (the same rules over
REST are in test_hospital_server.py). Each test starts from a candidate for NET RETREAT
(hospital_feed.candidate_record) and changes what a real feed would send."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.results import CANDIDATE, EXCLUDED, POSSIBLE
from hospital_feed import (
    ICD10,
    ICD10CM,
    LAB_TIME,
    LOINC,
    LOINC_OID,
    RXNORM,
    SNOMED,
    administration,
    bundle,
    candidate_record,
    coded,
    condition,
    lab,
    medication,
    meta,
    outcome,
    patient,
    references,
    request,
    screen_path,
    screen_resources,
    statement,
    validated,
    write,
)

P = "h"


def screen(tmp_path: Path, *changes, without=(), uuids=False):
    """The candidate with `changes` added (resources with the same id replace the original)."""
    record = candidate_record(P, without=without)
    extra = validated(changes)
    ids = {(r["resourceType"], r["id"]) for r in extra}
    record = [r for r in record if (r["resourceType"], r["id"]) not in ids] + extra
    return screen_resources(tmp_path, record, uuids=uuids)[P]


def test_the_base_record_is_a_candidate(tmp_path):
    result = screen(tmp_path)
    assert result.status == CANDIDATE and not result.errors


# ---- 1. resource status and intent ---------------------------------------------------------------

@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_void_observations_never_count(tmp_path, status):
    wrong = lab(P, f"{P}-plt-void", "777-3", 12, "10*3/uL", "2026-11-09T08:00:00-05:00", status=status)
    result = screen(tmp_path, wrong)
    assert outcome(result, "platelets") == ("met", "value")
    assert references(result, "platelets") == [f"Observation/{P}-plt/_history/1"]


def test_a_later_preliminary_result_that_disagrees_leaves_it_unknown_with_both(tmp_path):
    prelim = lab(P, f"{P}-plt-prelim", "777-3", 55, "10*3/uL", "2026-11-09T08:00:00-05:00", status="preliminary")
    result = screen(tmp_path, prelim)
    assert outcome(result, "platelets") == ("unknown", "preliminary")
    assert set(references(result, "platelets")) == {f"Observation/{P}-plt/_history/1",
                                                     f"Observation/{P}-plt-prelim/_history/1"}
    assert result.status == POSSIBLE


def test_a_later_preliminary_result_that_agrees_does_not_change_the_decision(tmp_path):
    prelim = lab(P, f"{P}-plt-prelim", "777-3", 190, "10*3/uL", "2026-11-09T08:00:00-05:00", status="preliminary")
    assert outcome(screen(tmp_path, prelim), "platelets") == ("met", "value")


def test_a_preliminary_result_alone_never_decides(tmp_path):
    prelim = lab(P, f"{P}-plt", "777-3", 40, "10*3/uL", LAB_TIME, status="registered")
    result = screen(tmp_path, prelim)
    assert outcome(result, "platelets") == ("unknown", "preliminary")


def test_an_older_preliminary_result_is_superseded_by_a_final_one(tmp_path):
    prelim = lab(P, f"{P}-plt-prelim", "777-3", 40, "10*3/uL", "2026-11-06T08:00:00-05:00", status="preliminary")
    assert outcome(screen(tmp_path, prelim), "platelets") == ("met", "value")


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_diagnoses_never_count(tmp_path, verification):
    mets = condition(P, f"{P}-brain", coded(ICD10CM, "C79.31", "Secondary malignant neoplasm of brain"),
                     verification=verification)
    assert outcome(screen(tmp_path, mets), "no_brain_metastases") == ("met", "no-record")


@pytest.mark.parametrize("verification", ["provisional", "differential", "unconfirmed"])
def test_unconfirmed_diagnoses_make_inclusions_unknown_and_exclusions_go_to_review(tmp_path, verification):
    net = condition(P, f"{P}-net", coded(ICD10CM, "C7A.012", "Malignant carcinoid tumor of the ileum"),
                    verification=verification)
    chf = condition(P, f"{P}-chf", coded(ICD10CM, "I50.22", "Chronic systolic heart failure"),
                    verification=verification)
    result = screen(tmp_path, net, chf)
    assert outcome(result, "gepnet_diagnosis") == ("unknown", "unconfirmed")
    assert outcome(result, "no_uncontrolled_chf") == ("unknown", "manual")
    assert references(result, "no_uncontrolled_chf") == [f"Condition/{P}-chf/_history/1"]


XOFIGO = coded(RXNORM, "1433981", "radium Ra 223 dichloride")


@pytest.mark.parametrize("record", [
    statement(P, f"{P}-ra", "2025-03-01", XOFIGO, status="not-taken"),
    statement(P, f"{P}-ra", "2025-03-01", XOFIGO, status="entered-in-error"),
    statement(P, f"{P}-ra", "2025-03-01", XOFIGO, status="intended"),
    request(P, f"{P}-ra", "2025-03-01", XOFIGO, status="cancelled"),
    request(P, f"{P}-ra", "2025-03-01", XOFIGO, status="entered-in-error"),
    request(P, f"{P}-ra", "2025-03-01", XOFIGO, status="draft"),
    request(P, f"{P}-ra", "2025-03-01", XOFIGO, intent="proposal"),
    request(P, f"{P}-ra", "2025-03-01", XOFIGO, intent="plan"),
    administration(P, f"{P}-ra", "2025-03-01", concept=XOFIGO, status="not-done", dose_mbq=None),
    administration(P, f"{P}-ra", "2025-03-01", concept=XOFIGO, status="entered-in-error", dose_mbq=None),
], ids=lambda r: f"{r['resourceType']}-{r['status']}-{r.get('intent', '')}")
def test_medication_records_that_are_not_a_drug_received(tmp_path, record):
    assert outcome(screen(tmp_path, record), "no_targeted_alpha") == ("met", "no-record")


def test_a_medication_received_is_recognised(tmp_path):
    given = statement(P, f"{P}-ra", "2025-03-01", XOFIGO, status="completed")
    result = screen(tmp_path, given)
    assert outcome(result, "no_targeted_alpha") == ("not_met", "record")
    assert result.status == EXCLUDED


# ---- 2. versions and duplicates ------------------------------------------------------------------

def test_a_corrected_version_supersedes_the_earlier_one_whatever_the_order_and_version_ids(tmp_path):
    v9 = lab(P, f"{P}-plt", "777-3", 42, "10*3/uL", LAB_TIME, meta_=meta("2026-11-07T09:00:00-05:00", "9"))
    v10 = lab(P, f"{P}-plt", "777-3", 182, "10*3/uL", LAB_TIME, status="corrected",
              meta_=meta("2026-11-07T16:30:00-05:00", "10"))
    validated([v9, v10])
    record = [r for r in candidate_record(P) if r["id"] != f"{P}-plt"]
    # the newer version first, the older last: file order must not decide; "9" > "10" as text
    write(tmp_path / "feed", "a.json", bundle(record + [v10]))
    write(tmp_path / "feed", "b.json", bundle([v9]))
    result = screen_path(tmp_path / "feed")[P]
    assert outcome(result, "platelets") == ("met", "value")
    assert references(result, "platelets") == [f"Observation/{P}-plt/_history/10"]
    assert result.status == CANDIDATE and not result.errors


def test_the_same_record_in_two_files_counts_once(tmp_path):
    record = candidate_record(P)
    write(tmp_path / "feed", "a.json", bundle(record))
    write(tmp_path / "feed", "b.json", bundle([r for r in record if r["resourceType"] == "MedicationAdministration"]))
    result = screen_path(tmp_path / "feed")[P]
    assert outcome(result, "prior_prrt") == ("met", "count") and len(references(result, "prior_prrt")) == 4
    assert result.status == CANDIDATE and not result.errors


def test_two_different_copies_without_a_version_to_choose_by_are_a_conflict(tmp_path):
    first = lab(P, f"{P}-plt", "777-3", 42, "10*3/uL", LAB_TIME, meta_={})
    second = lab(P, f"{P}-plt", "777-3", 182, "10*3/uL", LAB_TIME, meta_={})
    record = [r for r in candidate_record(P) if r["id"] != f"{P}-plt"]
    write(tmp_path / "feed", "a.json", bundle(record + [first]))
    write(tmp_path / "feed", "b.json", bundle([second]))
    result = screen_path(tmp_path / "feed")[P]
    assert any(f"Observation/{P}-plt" in e and "conflict" in e for e in result.errors)
    assert outcome(result, "platelets") == ("unknown", "conflict")  # neither copy is picked silently
    assert set(e.value for e in result.criterion("platelets").evidence) == {42, 182}
    assert result.status == POSSIBLE


def test_a_conflict_on_a_record_no_criterion_reads_still_blocks_candidate(tmp_path):
    first = condition(P, f"{P}-htn", coded(ICD10CM, "I10", "Essential (primary) hypertension"))
    second = condition(P, f"{P}-htn", coded(ICD10CM, "I10", "Essential hypertension"), clinical="resolved")
    for copy in (first, second):
        copy["meta"] = {}
    write(tmp_path / "feed", "a.json", bundle(candidate_record(P) + [first]))
    write(tmp_path / "feed", "b.json", bundle([second]))
    result = screen_path(tmp_path / "feed")[P]
    assert any(f"Condition/{P}-htn" in e and "conflict" in e for e in result.errors)
    assert all(c.reason != "conflict" for c in result.criteria)
    assert result.status == POSSIBLE


def test_a_patient_with_errors_is_never_a_candidate(tmp_path):
    broken = lab(P, f"{P}-plt-2", "777-3", 41, "10*3/uL", LAB_TIME)
    broken["effectiveDateTime"] = "2026-13-45"  # unreadable: it might be the latest platelet count
    record = candidate_record(P) + [broken]
    write(tmp_path / "feed", "a.json", bundle(record, valid=False))
    result = screen_path(tmp_path / "feed")[P]
    assert result.errors and result.status == POSSIBLE


# ---- 3. time ---------------------------------------------------------------------------------------

def test_same_day_results_compare_full_instants_not_file_order_or_ids(tmp_path):
    morning = lab(P, f"{P}-plt-z", "777-3", 61, "10*3/uL", "2026-11-09T07:05:00-05:00")
    afternoon = lab(P, f"{P}-plt-a", "777-3", 150, "10*3/uL", "2026-11-09T15:40:00-05:00")
    result = screen(tmp_path, afternoon, morning)
    assert outcome(result, "platelets") == ("met", "value")
    assert references(result, "platelets") == [f"Observation/{P}-plt-a/_history/1"]


def test_offsets_are_compared_as_instants(tmp_path):
    # 23:30 at UTC-5 is 04:30Z the next day: later than 02:00Z, though written a day earlier
    late_evening = lab(P, f"{P}-plt-1", "777-3", 150, "10*3/uL", "2026-11-10T23:30:00-05:00")
    early_utc = lab(P, f"{P}-plt-2", "777-3", 61, "10*3/uL", "2026-11-11T02:00:00Z")
    assert references(screen(tmp_path, early_utc, late_evening), "platelets") == [f"Observation/{P}-plt-1/_history/1"]


def test_two_results_at_the_same_instant_that_disagree_are_a_conflict(tmp_path):
    one = lab(P, f"{P}-plt-1", "777-3", 150, "10*3/uL", "2026-11-10T09:00:00-05:00")
    other = lab(P, f"{P}-plt-2", "777-3", 61, "10*3/uL", "2026-11-10T14:00:00Z")
    result = screen(tmp_path, one, other)
    assert outcome(result, "platelets") == ("unknown", "conflict")
    assert set(references(result, "platelets")) == {f"Observation/{P}-plt-1/_history/1",
                                                     f"Observation/{P}-plt-2/_history/1"}


def test_a_window_is_in_the_calendar_dates_the_resource_records(tmp_path):
    # written 2026-10-19 (the window's first day) at +02:00; in UTC it would be 2026-10-18
    hb = lab(P, f"{P}-hb", "718-7", 12.4, "g/dL", "2026-10-19T00:30:00+02:00")
    assert outcome(screen(tmp_path, hb), "hemoglobin") == ("met", "value")
    older = lab(P, f"{P}-hb", "718-7", 12.4, "g/dL", "2026-10-18T23:30:00-05:00")  # 2026-10-19 in UTC
    assert outcome(screen(tmp_path / "2", older), "hemoglobin") == ("unknown", "stale")


def test_a_24_hour_urine_collection_is_dated_by_its_end(tmp_path):
    urine = lab(P, f"{P}-crcl", "2164-2", 88, "mL/min", "2026-10-19T08:00:00-05:00")
    del urine["effectiveDateTime"]
    urine["effectivePeriod"] = {"start": "2026-10-18T08:00:00-05:00", "end": "2026-10-19T08:00:00-05:00"}
    urine["issued"] = "2026-10-19T15:00:00-05:00"
    result = screen(tmp_path, urine, without=["scr"])
    assert outcome(result, "creatinine_clearance") == ("met", "value")
    assert references(result, "creatinine_clearance") == [f"Observation/{P}-crcl/_history/1"]


def test_issued_dates_a_result_without_an_effective_time(tmp_path):
    hb = lab(P, f"{P}-hb", "718-7", 7.1, "g/dL", LAB_TIME)
    del hb["effectiveDateTime"]
    assert outcome(screen(tmp_path, hb), "hemoglobin") == ("not_met", "value")


# ---- 4. partial dates ------------------------------------------------------------------------------

def test_a_year_only_birth_date_decides_when_both_ends_agree(tmp_path):
    assert outcome(screen(tmp_path, patient(P, birth="1968")), "age") == ("met", "demographics")


def test_a_partial_birth_date_across_an_age_limit_is_imprecise(tmp_path):
    result = screen(tmp_path, patient(P, birth="2008"))  # 17 or 18 on 2026-11-16
    assert outcome(result, "age") == ("unknown", "imprecise-date")
    assert result.criterion("age").evidence[0].value == "17-18"


def test_cockcroft_gault_at_both_ends_of_a_partial_birth_date(tmp_path):
    # female, 45 kg, creatinine 0.951 mg/dL: 50.28 mL/min at 50 years, 49.72 at 51 (born 1975-11: 50 or 51)
    crossing = [patient(P, birth="1975-11"),
                lab(P, f"{P}-wt", "29463-7", 45, "kg", "2026-10-17T11:20:00-04:00"),
                lab(P, f"{P}-scr", "2160-0", 0.951, "mg/dL", LAB_TIME)]
    result = screen(tmp_path, *crossing)
    assert outcome(result, "creatinine_clearance") == ("unknown", "imprecise-date")
    assert outcome(screen(tmp_path / "2", patient(P, birth="1968")), "creatinine_clearance") == ("met", "value")


@pytest.mark.parametrize("gender", ["unknown", "other", None])
def test_a_sex_the_formula_needs_but_the_record_does_not_give(tmp_path, gender):
    clear = screen(tmp_path, patient(P, gender=gender))
    assert outcome(clear, "creatinine_clearance") == ("met", "value")  # both formulas > 50
    # 58 years, 68 kg, creatinine 1.4 mg/dL: 55.3 mL/min as a man, 47.0 as a woman
    borderline = screen(tmp_path / "2", patient(P, gender=gender), lab(P, f"{P}-scr", "2160-0", 1.4, "mg/dL", LAB_TIME))
    assert outcome(borderline, "creatinine_clearance") == ("unknown", "unknown-sex")


def test_a_missing_birth_date_is_no_data(tmp_path):
    result = screen(tmp_path, patient(P, birth=None))
    assert outcome(result, "age") == ("unknown", "no-data")
    assert outcome(result, "creatinine_clearance") == ("unknown", "no-data")


# ---- 5. patient state -------------------------------------------------------------------------------

@pytest.mark.parametrize("death", [{"deceasedBoolean": True}, {"deceasedDateTime": "2026-11-02T04:10:00-05:00"},
                                   {"deceasedDateTime": "2026-11-16"}])
def test_a_deceased_patient_is_excluded_and_nothing_is_eligible(tmp_path, death):
    result = screen(tmp_path, patient(P, **death))
    assert result.status == EXCLUDED
    assert {(c.outcome, c.reason) for c in result.criteria} == {("not_met", "deceased")}
    assert all(not arm.options for arm in result.arms)


def test_a_death_after_the_screening_date_did_not_exist_yet(tmp_path):
    assert screen(tmp_path, patient(P, deceasedDateTime="2026-12-01")).status == CANDIDATE


# ---- 6. reference ranges ----------------------------------------------------------------------------

def _bili(ranges):
    return lab(P, f"{P}-bili", "1975-2", 1.5, "mg/dL", LAB_TIME, ranges=ranges)


def _range(high, unit="mg/dL", **extra):
    return {"high": {"value": high, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}, **extra}


MALE = {"coding": [{"system": SNOMED, "code": "248153007", "display": "Male"}]}
FEMALE = {"coding": [{"system": SNOMED, "code": "248152002", "display": "Female"}]}


def test_the_range_for_the_patients_sex_is_used(tmp_path):
    # female patient: 1.5 / 1.3 = 1.15 x ULN (met); the male range would give 1.5 / 0.9 = 1.67 (not met)
    ranges = [_range(0.9, appliesTo=[MALE]), _range(1.3, appliesTo=[FEMALE])]
    assert outcome(screen(tmp_path, _bili(ranges)), "bilirubin") == ("met", "value")
    assert outcome(screen(tmp_path / "2", _bili([_range(0.9, appliesTo=[MALE])])), "bilirubin") == (
        "unknown", "no-reference-range")


def test_ranges_for_other_ages_are_skipped(tmp_path):
    child = _range(0.8, age={"high": {"value": 17, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}})
    adult = _range(1.2, age={"low": {"value": 18, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}})
    assert outcome(screen(tmp_path, _bili([child, adult])), "bilirubin") == ("met", "value")  # 1.25 x ULN
    assert outcome(screen(tmp_path / "2", _bili([child])), "bilirubin") == ("unknown", "no-reference-range")


def test_a_range_in_another_unit_is_converted(tmp_path):
    # ULN 20.5 umol/L = 1.2 mg/dL; 1.9 mg/dL = 1.58 x ULN -> not met
    high = lab(P, f"{P}-bili", "1975-2", 1.9, "mg/dL", LAB_TIME, ranges=[_range(20.5, "umol/L")])
    assert outcome(screen(tmp_path, high), "bilirubin") == ("not_met", "value")


# ---- 7. medications -------------------------------------------------------------------------------

def test_a_contained_medication_matches_by_its_ingredient(tmp_path):
    brand = {"resourceType": "Medication", "id": "afinitor",
             "code": {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288", "code": "88231"}],
                      "text": "AFINITOR 10 MG TABLET"},
             "ingredient": [{"itemCodeableConcept": coded(RXNORM, "141704", "everolimus"), "isActive": True}]}
    given = statement(P, f"{P}-evero", "2025-02-01", medicationReference={"reference": "#afinitor"},
                      contained=[brand])
    given.pop("medicationCodeableConcept", None)
    result = screen(tmp_path, given)
    arm = next(a for a in result.arms if a.label.startswith("Arm II"))
    assert "everolimus" not in arm.options
    assert any("prior mTOR inhibitor" in e.why for e in arm.excluded_options)


def test_a_medication_in_the_bundle_matches_by_an_ingredient_reference(tmp_path):
    ingredient = medication(f"{P}-med-lu177", "lutetium Lu-177 dotatate", (RXNORM, "2003033",
                                                                            "lutetium Lu 177 dotatate"))
    kit = medication(f"{P}-med-lu", "RADIOPHARMACY KIT 7.4 GBQ",
                     ingredients=[{"itemReference": {"reference": f"Medication/{P}-med-lu177"}}])
    kit["code"] = {"text": "RADIOPHARMACY KIT 7.4 GBQ"}
    result = screen(tmp_path, ingredient, kit)
    assert outcome(result, "prior_prrt") == ("met", "count")


def test_cycles_recorded_elsewhere_count_with_those_given_here(tmp_path):
    outside = [statement(P, f"{P}-lu{i + 1}", day[:10], coded(RXNORM, "2003033", "lutetium Lu 177 dotatate"))
               for i, day in enumerate(("2023-08-04", "2023-09-29"))]
    # cycles 3 and 4 are administrations here; an outside statement repeats cycle 3 on its day
    repeat = statement(P, f"{P}-lu3-outside", "2023-11-24", {"text": "LUTATHERA"})
    result = screen(tmp_path, *outside, repeat)
    assert outcome(result, "prior_prrt") == ("met", "count")
    assert len(references(result, "prior_prrt")) == 4


def test_an_order_is_not_a_fifth_cycle(tmp_path):
    order = request(P, f"{P}-lu5-order", "2026-11-10", {"text": "Lutathera 7.4 GBq IV"})
    assert outcome(screen(tmp_path, order), "prior_prrt") == ("met", "count")


# ---- 8. codes -------------------------------------------------------------------------------------

def test_oid_code_systems_match_everywhere_including_the_file_filter(tmp_path):
    hb = lab(P, f"{P}-hb", "718-7", 7.2, "g/dL", LAB_TIME, system=LOINC_OID)
    result = screen(tmp_path, hb)
    assert outcome(result, "hemoglobin") == ("not_met", "value")
    net = condition(P, f"{P}-net", {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.90", "code": "C7A012"}]})
    assert outcome(screen(tmp_path / "2", net), "gepnet_diagnosis") == ("met", "record")


def test_who_icd10_and_icd10cm_with_and_without_dots(tmp_path):
    who = condition(P, f"{P}-brain", {"coding": [{"system": ICD10, "code": "C79.3"}]})
    assert outcome(screen(tmp_path, who), "no_brain_metastases") == ("unknown", "manual")
    cm = condition(P, f"{P}-brain", {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.90", "code": "C7931"}]})
    assert outcome(screen(tmp_path / "2", cm), "no_brain_metastases") == ("unknown", "manual")


def test_heart_failure_children_match(tmp_path):
    chf = condition(P, f"{P}-chf", coded(ICD10CM, "I50.810", "Right heart failure, unspecified"))
    assert outcome(screen(tmp_path, chf), "no_uncontrolled_chf") == ("unknown", "manual")


# ---- 9. coded answers -------------------------------------------------------------------------------

def _pregnancy(rid, when, code, display, system=SNOMED):
    return lab(P, rid, "82810-3", None, None, when, display="Pregnancy status",
               answer=coded(system, code, display), category=[{"coding": [
                   {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history"}]}])


@pytest.mark.parametrize("unknown_answer", [(LOINC, "LA4489-6", "Unknown"), (SNOMED, "261665006", "Unknown")])
def test_an_unknown_answer_never_overrides_an_earlier_pregnant(tmp_path, unknown_answer):
    system, code, display = unknown_answer
    pregnant = _pregnancy(f"{P}-preg1", "2026-10-27T09:00:00-05:00", "77386006", "Pregnant")
    then_unknown = _pregnancy(f"{P}-preg2", "2026-11-12T10:00:00-05:00", code, display, system)
    result = screen(tmp_path, pregnant, then_unknown)
    assert outcome(result, "not_pregnant") == ("not_met", "record")
    assert result.status == EXCLUDED


def test_a_later_definite_not_pregnant_does_override(tmp_path):
    pregnant = _pregnancy(f"{P}-preg1", "2026-10-27T09:00:00-05:00", "77386006", "Pregnant")
    not_pregnant = _pregnancy(f"{P}-preg2", "2026-11-12T10:00:00-05:00", "60001007", "Not pregnant")
    assert outcome(screen(tmp_path, pregnant, not_pregnant), "not_pregnant") == ("met", "record")


def test_only_unknown_answers_leave_it_open(tmp_path):
    only = _pregnancy(f"{P}-preg", "2026-11-12T10:00:00-05:00", "LA4489-6", "Unknown", LOINC)
    assert outcome(screen(tmp_path, only), "not_pregnant") == ("unknown", "indefinite")


def _quantitative_hcg(value, **kwargs):
    return lab(P, f"{P}-hcg", "21198-7", value, "m[IU]/mL", "2026-11-10T08:00:00-05:00",
               display="Choriogonadotropin.beta subunit [Units/volume] in Serum or Plasma", **kwargs)


def test_a_positive_quantitative_hcg_counts_by_flag_or_by_range(tmp_path):
    assert outcome(screen(tmp_path, _quantitative_hcg(1850, interpretation="H")), "not_pregnant") == ("not_met", "record")
    above = _quantitative_hcg(1850, high=5)
    assert outcome(screen(tmp_path / "2", above), "not_pregnant") == ("not_met", "record")
    below = _quantitative_hcg(2, high=5, interpretation="N")
    assert outcome(screen(tmp_path / "3", below), "not_pregnant") == ("met", "record")


def test_a_man_with_a_tumour_secreted_hcg_is_not_excluded(tmp_path):
    result = screen(tmp_path, patient(P, gender="male"), _quantitative_hcg(1850, interpretation="H"))
    assert outcome(result, "not_pregnant")[0] == "met"
    assert result.status == CANDIDATE


# ---- 10. text-only records -------------------------------------------------------------------------

def test_a_text_only_diagnosis_goes_to_review(tmp_path):
    text_only = condition(P, f"{P}-brain", {"text": "Brain metastases of NET (MRI 10/2026)"})
    result = screen(tmp_path, text_only)
    assert outcome(result, "no_brain_metastases") == ("unknown", "manual")
    assert result.criterion("no_brain_metastases").evidence[0].value == "Brain metastases of NET (MRI 10/2026)"


def test_a_gilbert_syndrome_coded_only_in_snomed_sends_a_high_bilirubin_to_review(tmp_path):
    high = lab(P, f"{P}-bili", "1975-2", 2.1, "mg/dL", LAB_TIME, high=1.2)
    gilbert = condition(P, f"{P}-gilbert", {"coding": [{"system": SNOMED, "code": "27503000",
                                                        "display": "Gilbert's syndrome"}]})
    assert outcome(screen(tmp_path, high), "bilirubin") == ("not_met", "value")
    assert outcome(screen(tmp_path / "2", high, gilbert), "bilirubin") == ("unknown", "manual")


def test_text_of_an_unrelated_condition_is_no_record(tmp_path):
    other = condition(P, f"{P}-htn", {"text": "Essential hypertension"})
    assert outcome(screen(tmp_path, other), "no_brain_metastases") == ("met", "no-record")


# ---- 11. bundles -----------------------------------------------------------------------------------

def test_urn_uuid_references_resolve_within_the_bundle(tmp_path):
    result = screen(tmp_path, uuids=True)
    assert result.status == CANDIDATE and not result.errors
    assert outcome(result, "prior_prrt") == ("met", "count")


def test_an_entry_without_id_is_named_by_its_urn_uuid(tmp_path):
    data = bundle(candidate_record(P), uuids=True)
    for entry in data["entry"]:
        if entry["resource"]["resourceType"] == "Observation":
            del entry["resource"]["id"]
    write(tmp_path / "feed", "b.json", data)
    result = screen_path(tmp_path / "feed")[P]
    assert result.status == CANDIDATE and not result.errors


def test_a_subject_that_resolves_nowhere_is_an_error_on_the_patient(tmp_path):
    data = bundle(candidate_record(P), uuids=True)
    stray = lab(P, f"{P}-preg", "82810-3", None, None, LAB_TIME, answer=coded(SNOMED, "77386006", "Pregnant"))
    stray["subject"] = {"reference": "urn:uuid:8d2c6f0e-5b8a-4d53-9a0b-000000000000"}
    data["entry"].append({"fullUrl": "urn:uuid:1b0f3a52-7a43-4a4e-8f55-6c2d2a9e0c11", "resource": stray})
    write(tmp_path / "feed", "b.json", data)
    result = screen_path(tmp_path / "feed")[P]
    assert any(f"Observation/{P}-preg" in e and "resolves nowhere" in e for e in result.errors)
    assert result.status == POSSIBLE


def test_a_medication_reference_that_resolves_nowhere_is_an_error_on_the_patient(tmp_path):
    lost = administration(P, f"{P}-lu4", LUTATHERA_LAST, medication_ref="Medication/not-sent")
    result = screen(tmp_path, lost)
    assert any(f"MedicationAdministration/{P}-lu4" in e and "Medication/not-sent" in e for e in result.errors)
    assert result.status == POSSIBLE


LUTATHERA_LAST = "2024-01-19T09:45:00-05:00"


def test_descendants_come_from_the_icd10cm_table_not_a_string_prefix():
    from connector.codes import CodeSet
    from connector.facts import Coding

    heart_failure = CodeSet.of("icd-10-cm", ["I50"], descendants=True)
    assert heart_failure.matches(Coding("urn:oid:2.16.840.1.113883.6.90", "I50810"))
    assert heart_failure.matches(Coding(ICD10CM, "I50.9"))
    assert not heart_failure.matches(Coding(ICD10CM, "I500"))  # starts like I50, but no such code
    assert not heart_failure.matches(Coding(ICD10, "I50.9"))  # another system
    with pytest.raises(ValueError, match="ICD-10-CM only"):
        CodeSet.of("snomed", ["84114007"], descendants=True)


def test_a_mapping_asking_descendants_of_another_system_is_refused(tmp_path):
    from connector.errors import MappingError
    from connector.mapping import load_mapping

    text = (Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml").read_text()
    bad = text.replace("- {system: icd-10-cm, codes: [I50], match: descendants}",
                       "- {system: snomed, codes: ['84114007'], match: descendants}")
    assert bad != text
    (tmp_path / "NCT05773274.yaml").write_text(bad)
    with pytest.raises(MappingError, match="descendants is available for ICD-10-CM only"):
        load_mapping(tmp_path / "NCT05773274.yaml")


def test_a_shared_medication_in_conflict_is_an_error_only_where_it_is_used(tmp_path):
    record = candidate_record(P)
    other = candidate_record("h2")  # a patient whose records point to another Medication
    changed = dict(next(r for r in record if r["resourceType"] == "Medication"), meta={})
    changed["code"] = {"text": "Lutathera (relabelled)"}
    first = dict(next(r for r in record if r["resourceType"] == "Medication"), meta={})
    write(tmp_path / "feed", "a.json", bundle([r for r in record if r["resourceType"] != "Medication"] + other))
    write(tmp_path / "feed", "m1.json", bundle([first]))
    write(tmp_path / "feed", "m2.json", bundle([changed]))
    results = screen_path(tmp_path / "feed")
    assert any(f"Medication/{P}-med-lu" in e and "conflict" in e for e in results[P].errors)
    assert outcome(results[P], "prior_prrt") == ("unknown", "conflict")
    assert results[P].status == POSSIBLE
    assert not results["h2"].errors and results["h2"].status == CANDIDATE


# ---- the seed mapping's code sets and names ------------------------------------------------------

@pytest.mark.parametrize("text", ["177Lu-DOTA-octreotate 7.4 GBq", "LUTETIUM (LU-177) OCTREOTATE", "Lu-177-DOTATATE"])
def test_dotatate_synonyms_count_as_prrt_cycles(tmp_path, text):
    cycles = [administration(P, f"{P}-lu{i + 1}", day, concept={"text": text})
              for i, day in enumerate(("2023-08-04", "2023-09-29", "2023-11-24", "2024-01-19"))]
    assert outcome(screen(tmp_path, *cycles), "prior_prrt") == ("met", "count")


def test_a_gallium_dotatate_scan_is_not_a_prrt_cycle(tmp_path):
    scan = administration(P, f"{P}-ga68", "2024-03-01", concept={"text": "Ga-68 DOTATATE (NETSPOT) 185 MBq"})
    assert len(references(screen(tmp_path, scan), "prior_prrt")) == 4


@pytest.mark.parametrize("text", ["Ac225-DOTATATE", "[212Pb]VMT-alpha-NET", "Bi-213 DOTATOC", "Th-227 conjugate",
                                  "radium-223 dichloride", "At-211 MABG"])
def test_every_alpha_emitter_spelling_is_targeted_alpha_therapy(tmp_path, text):
    given = administration(P, f"{P}-alpha", "2025-05-01", concept={"text": text}, dose_mbq=None)
    assert outcome(screen(tmp_path, given), "no_targeted_alpha") == ("not_met", "record")


def _arm_ii(result):
    return next(a for a in result.arms if a.label.startswith("Arm II"))


def test_surufatinib_is_a_prior_vegf_inhibitor_and_a_pancreatic_tail_net_may_get_sunitinib(tmp_path):
    tail_net = condition(P, f"{P}-net", coded(ICD10CM, "C7A.8", "Other malignant neuroendocrine tumors"),
                         bodySite=[coded(SNOMED, "73239005", "Structure of tail of pancreas")])
    assert "sunitinib" in _arm_ii(screen(tmp_path, tail_net)).options
    suru = statement(P, f"{P}-suru", "2025-06-01", {"text": "Surufatinib 300 mg capsule"})
    excluded = _arm_ii(screen(tmp_path / "2", tail_net, suru)).excluded_options
    assert any(e.option == "sunitinib" and "prior VEGF inhibitor" in e.why for e in excluded)


def test_a_manual_neutrophil_count_decides(tmp_path):
    manual = lab(P, f"{P}-anc", "753-4", 0.8, "10*3/uL", LAB_TIME, display="Neutrophils [#/volume] in Blood by Manual count")
    assert outcome(screen(tmp_path, manual), "neutrophils") == ("not_met", "value")
