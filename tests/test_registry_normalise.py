"""API study JSON -> trial record, on every real record we have, checked against the source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.researchstudy import ResearchStudy

from connector.errors import ConnectorError
from connector.registry.eligibility import split_criteria
from connector.registry.fhir import research_study
from connector.registry.normalise import InvalidStudy, age_in_years, normalise_study, validate_study
from connector.registry.schemas import trial_record_errors
from registry_support import FIXTURES, SHARED, fixture_studies, load, study


def _shared_studies() -> list[Path]:
    """The shared originals too when this machine has them (the 1.5 MB record is not copied)."""
    if not SHARED.is_dir():
        return []
    return sorted([*SHARED.glob("studies/*.json"), *SHARED.glob("more/studies/*.json"), SHARED / "NCT05773274.json"])


ALL_STUDIES = fixture_studies() + _shared_studies()


@pytest.mark.parametrize("path", ALL_STUDIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_real_study_normalises_and_validates(path: Path):
    source = json.loads(path.read_text(encoding="utf-8"))
    record = normalise_study(source)
    assert trial_record_errors(record) == []
    ps = source["protocolSection"]
    assert record["nct_id"] == ps["identificationModule"]["nctId"]
    assert record["overall_status"] == ps["statusModule"]["overallStatus"]
    assert record["protocol_section"] == ps
    text = ps.get("eligibilityModule", {}).get("eligibilityCriteria")
    assert record["eligibility_criteria"] == text
    if text:
        assert record["eligibility_criteria_sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert record["inclusion_criteria"], "every real record has at least one inclusion item"
    assert record["has_results"] == (source.get("hasResults", False) or "resultsSection" in source)
    assert len(record["locations"]) == len(ps.get("contactsLocationsModule", {}).get("locations", []))


@pytest.mark.parametrize("name", [
    "pages/biomcp__search_phelan_limit5_20260811.json", "pages/cyanheads__studies_2025-06-17T11-16-37-179Z.json",
    "pages/kylevogeler__sampleResponse.json", "pages/aact__NCT06388018_studies_wrapper.json",
])
def test_search_page_studies_normalise(name: str):
    page = load(name)
    records = [normalise_study(s) for s in page["studies"]]
    assert [r["nct_id"] for r in records] == [s["protocolSection"]["identificationModule"]["nctId"]
                                              for s in page["studies"]]


def test_seed_trial_fields_match_the_source():
    source = study("NCT05773274")
    record = normalise_study(source)
    ps = source["protocolSection"]
    assert record["brief_title"] == ps["identificationModule"]["briefTitle"]
    assert record["phases"] == ["PHASE2"]
    assert record["study_type"] == "INTERVENTIONAL"
    assert record["sponsor"] == {"name": "National Cancer Institute (NCI)", "class": "NIH"}
    assert record["minimum_age"] == "18 Years" and record["minimum_age_years"] == 18
    assert record["maximum_age"] is None and record["maximum_age_years"] is None
    assert record["sex"] == "ALL" and record["healthy_volunteers"] is False
    assert record["std_ages"] == ["ADULT", "OLDER_ADULT"]
    assert record["start_date"] == "2024-01-12" and record["start_date_type"] == "ACTUAL"
    assert record["primary_completion_date"] == "2026-04-30" and record["primary_completion_date_type"] == "ESTIMATED"
    assert record["last_update_posted"] == "2025-11-12"
    assert record["has_results"] is False
    arms = ps["armsInterventionsModule"]["armGroups"]
    assert [a["label"] for a in record["arms"]] == [a["label"] for a in arms]
    assert record["arms"][0]["intervention_names"] == arms[0]["interventionNames"]
    first = ps["armsInterventionsModule"]["interventions"][0]
    assert record["interventions"][0] == {
        "type": first["type"], "name": first["name"], "description": first.get("description"),
        "arm_labels": first.get("armGroupLabels", []), "other_names": first.get("otherNames", []),
    }
    loc = ps["contactsLocationsModule"]["locations"][0]
    assert record["locations"][0]["facility"] == loc["facility"] and record["locations"][0]["city"] == "Birmingham"
    # criteria items: verbatim bullets, escapes kept
    assert record["inclusion_criteria"][0].startswith("Metastatic, histologically confirmed grade 1 or 2")
    hemoglobin = "Hemoglobin \\>= 80 g/L (\\>= 8.0 g/dL) (measured within 28 days prior to enrollment)"
    assert hemoglobin in record["inclusion_criteria"]
    assert len(record["exclusion_criteria"]) == 5
    assert record["exclusion_criteria"][-1].startswith("Pregnant women are excluded")


def test_partial_dates_geo_results_and_aliases_from_real_records():
    terminated = normalise_study(study("NCT00711542"))
    assert terminated["start_date"] == "2008-09" and terminated["start_date_type"] is None
    assert terminated["overall_status"] == "TERMINATED" and terminated["phases"] == ["PHASE1", "PHASE2"]
    assert terminated["maximum_age_years"] == 80
    source = study("NCT04267848")
    geo = source["protocolSection"]["contactsLocationsModule"]["locations"][0]["geoPoint"]
    assert normalise_study(source)["locations"][0]["geo"] == {"lat": geo["lat"], "lon": geo["lon"]}
    with_results = normalise_study(study("NCT00716976"))
    assert with_results["has_results"] is True
    assert with_results["minimum_age"] == "1 Year" and with_results["minimum_age_years"] == 1


@pytest.mark.parametrize("text, years", [
    ("18 Years", 18), ("1 Year", 1), ("6 Months", 0.5), ("12 Months", 1), ("2 Weeks", 0.038330),
    ("28 Days", 0.076660), ("365 Days", 0.999316), ("36 Hours", 0.004107), ("90 Minutes", 0.000171),
    (None, None), ("", None),
])
def test_ages_in_years(text, years):
    assert age_in_years(text) == (pytest.approx(years, abs=1e-6) if years is not None else None)


def test_criteria_split_keeps_nested_items_with_their_parent():
    text = study("NCT00184067")["protocolSection"]["eligibilityModule"]["eligibilityCriteria"]
    split = split_criteria(text)
    assert len(split.inclusion) == 7 and len(split.exclusion) == 7
    assert split.inclusion[0].startswith("Patients who have completed protocol 10M-01-1")
    assert "\n4. They experienced no grade 3 or 4 toxicity" in split.inclusion[0]
    # group labels are not items; PDQ-style headings stay inclusion
    grouped = split_criteria(study("NCT03630471")["protocolSection"]["eligibilityModule"]["eligibilityCriteria"])
    assert not any(item.startswith("For ") and item.endswith(":") for item in grouped.inclusion + grouped.exclusion)
    assert grouped.exclusion[0].startswith("Requiring urgent medical attention")
    pdq = split_criteria(study("NCT00716976")["protocolSection"]["eligibilityModule"]["eligibilityCriteria"])
    assert pdq.exclusion == [] and "Serum sodium normal" in pdq.inclusion
    assert split_criteria(None).inclusion == [] and split_criteria("").exclusion == []


@pytest.mark.parametrize("path", sorted((FIXTURES / "altered").glob("*.json")), ids=lambda p: p.stem)
def test_schema_breaking_copies_are_rejected_with_a_json_path(path: Path):
    altered = json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(InvalidStudy) as caught:
        normalise_study(altered)
    message = str(caught.value)
    assert message.startswith(f"{path.stem}: does not match the ClinicalTrials.gov API Study schema: $.")
    assert caught.value.errors and all(e.startswith("$.") for e in caught.value.errors)
    assert any("is not of type 'array'" in e for e in caught.value.errors)


def test_study_without_a_valid_nct_id_is_rejected():
    broken = study("NCT05773274")
    broken["protocolSection"]["identificationModule"]["nctId"] = "NCTX"
    with pytest.raises(InvalidStudy, match=r"identificationModule.nctId"):
        validate_study(broken)


def test_trial_schema_catches_a_bad_record():
    record = normalise_study(study("NCT05773274"))
    record["minimum_age_years"] = "18"
    record["surprise"] = 1
    errors = trial_record_errors(record)
    assert any(e.startswith("$.minimum_age_years") for e in errors)
    assert any("surprise" in e for e in errors)


def test_research_study_is_valid_r4_fhir():
    record = normalise_study(study("NCT05773274"))
    resource = research_study(record)
    parsed = ResearchStudy.model_validate(resource)
    assert parsed.id == "NCT05773274" and parsed.status == "active"
    assert resource["identifier"][0]["value"] == "NCT05773274"
    assert resource["phase"]["coding"][0]["code"] == "phase-2"
    group = resource["contained"][0]
    excluded = [c for c in group["characteristic"] if c["exclude"]]
    assert len(excluded) == len(record["exclusion_criteria"])
    assert group["characteristic"][0]["valueRange"]["low"]["value"] == 18
    # statuses map onto FHIR's value set; the registry code is kept in an extension
    completed = research_study(normalise_study(study("NCT00716976")))
    assert completed["status"] == "completed" and completed["extension"][0]["valueCode"] == "COMPLETED"
    unknown = research_study(normalise_study(study("NCT03475563")))
    assert unknown["extension"][0]["valueCode"] == "UNKNOWN" and unknown["status"] != "unknown"


def test_research_study_validation_failure_is_reported():
    record = normalise_study(study("NCT05773274"))
    record["nct_id"] = "NCT 0577"  # not a valid FHIR id
    with pytest.raises(ConnectorError, match="NCT 0577: cannot build a valid FHIR ResearchStudy"):
        research_study(record)
