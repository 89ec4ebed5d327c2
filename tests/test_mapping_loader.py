"""Mapping files: every error is one line naming the file, the criterion and the JSON path."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from connector.errors import MappingError
from connector.mapping import data_needs, load_mapping

HASH = "0" * 64
SEED = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"

GOOD = f"""\
trial: NCT00000001
criteria_hash: "{HASH}"
criteria:
  - id: adult
    type: inclusion
    text: Age 18 or over
    kind: age
    min_years: 18
  - id: hemoglobin
    type: inclusion
    text: Hemoglobin >= 80 g/L
    kind: observation
    codes: [{{system: loinc, codes: [718-7]}}]
    comparator: ">="
    threshold: {{value: 80, unit: g/L}}
    window_days: 28
  - id: consent
    type: inclusion
    text: Consent
    kind: manual
"""


def write(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path, text) -> str:
    with pytest.raises(MappingError) as err:
        load_mapping(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_good_mapping_loads(tmp_path):
    mapping = load_mapping(write(tmp_path, GOOD))
    assert [c.id for c in mapping.criteria] == ["adult", "hemoglobin", "consent"]
    assert mapping.criterion("hemoglobin").rule.threshold.unit == "g/L"


def test_unknown_ucum_unit_names_file_criterion_and_path(tmp_path):
    message = error_of(tmp_path, GOOD.replace("unit: g/L", "unit: g/dq"))
    assert message.endswith("m.yaml: criterion 'hemoglobin': $.criteria[1].threshold.unit: 'g/dq' is not a known UCUM unit")


def test_unknown_kind(tmp_path):
    message = error_of(tmp_path, GOOD.replace("kind: age", "kind: agee"))
    assert "criterion 'adult': $.criteria[0].kind: unknown kind 'agee'" in message


def test_bad_comparator_points_at_the_field(tmp_path):
    message = error_of(tmp_path, GOOD.replace('comparator: ">="', 'comparator: "=>"'))
    assert "criterion 'hemoglobin': $.criteria[1].comparator: '=>' is not one of" in message


def test_missing_required_field(tmp_path):
    message = error_of(tmp_path, GOOD.replace("    window_days: 28\n", ""))
    assert "criterion 'hemoglobin': $.criteria[1]: 'window_days' is a required property" in message


def test_unexpected_field(tmp_path):
    message = error_of(tmp_path, GOOD.replace("    min_years: 18\n", "    min_years: 18\n    max_yaers: 90\n"))
    assert "criterion 'adult': $.criteria[0]:" in message and "max_yaers" in message


def test_yaml_syntax_error_has_line(tmp_path):
    message = error_of(tmp_path, GOOD.replace("    min_years: 18", "    min_years: [18"))
    assert "m.yaml: invalid YAML: line" in message


def test_duplicate_yaml_key(tmp_path):
    message = error_of(tmp_path, GOOD.replace("    min_years: 18", "    min_years: 18\n    min_years: 21"))
    assert "duplicate key 'min_years'" in message and "line 9" in message


def test_duplicate_criterion_id(tmp_path):
    message = error_of(tmp_path, GOOD.replace("id: consent", "id: adult"))
    assert "criterion 'adult': $.criteria[2].id: duplicate id (also $.criteria[0])" in message


def test_bad_trial_id_and_hash(tmp_path):
    assert "$.trial:" in error_of(tmp_path, GOOD.replace("NCT00000001", "NCT1"))
    assert "$.criteria_hash:" in error_of(tmp_path, GOOD.replace(HASH, "abc"))


def test_uln_threshold_takes_no_unit(tmp_path):
    bad = GOOD.replace("threshold: {value: 80, unit: g/L}", "threshold: {value: 1.5, unit: mg/dL, relative_to: uln}")
    assert "$.criteria[1].threshold.unit: a threshold relative to the ULN takes no unit" in error_of(tmp_path, bad)


def test_review_if_found_only_on_exclusions(tmp_path):
    bad = GOOD.replace("    kind: manual", "    kind: manual\n    review_if_found: true")
    assert "criterion 'consent': $.criteria[2].review_if_found:" in error_of(tmp_path, bad)


def test_nested_rule_errors_have_the_nested_path(tmp_path):
    nested = GOOD + """\
  - id: either
    type: inclusion
    text: Either
    kind: any_of
    rules:
      - kind: manual
      - kind: observation
        codes: [{system: loinc, codes: [718-7]}]
        comparator: ">="
        threshold: {value: 1, unit: furlong/dq}
        window_days: 3
"""
    assert "criterion 'either': $.criteria[3].rules[1].threshold.unit:" in error_of(tmp_path, nested)


def test_not_a_mapping_at_all(tmp_path):
    assert "m.yaml: $:" in error_of(tmp_path, "- just\n- a list\n")


def test_data_needs_narrow_the_fetch(tmp_path):
    needs = data_needs(load_mapping(write(tmp_path, GOOD)), date(2026, 11, 16))
    assert needs.resource_types == frozenset({"Patient", "Observation"})
    assert needs.observation_codes == frozenset({("http://loinc.org", "718-7")})
    assert needs.observations_since == date(2026, 11, 16) - timedelta(days=28 + 365)


def test_seed_needs_cover_every_type_and_code():
    needs = data_needs(load_mapping(SEED), date(2026, 11, 16))
    assert needs.resource_types >= {"Patient", "Observation", "Condition", "MedicationStatement",
                                    "MedicationRequest", "MedicationAdministration"}
    codes = {code for _, code in needs.observation_codes}
    assert {"718-7", "751-8", "777-3", "1975-2", "14631-6", "2160-0", "14682-9", "2164-2", "29463-7",
            "89247-1", "82810-3", "2106-3", "2118-8"} <= codes
    assert needs.observations_since == date(2025, 8, 18)  # 90-day windows + 365-day look-back


@pytest.mark.parametrize("system, hint", [("lonic", "did you mean 'loinc'?"), ("SNOMDE", "did you mean 'snomed'?"),
                                          ("labcodes", "give a URI")])
def test_unknown_code_system_is_an_error_naming_where(tmp_path, system, hint):
    message = error_of(tmp_path, GOOD.replace("system: loinc", f"system: {system}"))
    assert (f"m.yaml: criterion 'hemoglobin': $.criteria[1].codes[0].system: unknown code system "
            f"{system!r}") in message
    assert hint in message


@pytest.mark.parametrize("system", ["http://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "LOINC",
                                    "http://hospital.example/lab-codes"])
def test_uris_oids_and_aliases_are_accepted(tmp_path, system):
    assert load_mapping(write(tmp_path, GOOD.replace("system: loinc", f"system: '{system}'"))).criteria


def test_unknown_keys_are_named_with_the_key_meant(tmp_path):
    misspelt = error_of(tmp_path, GOOD.replace("window_days: 28", "window_dayz: 28"))
    assert misspelt.endswith("m.yaml: criterion 'hemoglobin': $.criteria[1]: unknown key 'window_dayz' "
                             "(did you mean 'window_days'?)")
    assert error_of(tmp_path, GOOD.replace("window_days: 28", "window_days: 28\n    colour: red")).endswith(
        "$.criteria[1]: unknown key 'colour'")
    assert error_of(tmp_path, GOOD.replace("criteria:", "critera_x: 1\ncriteria:")).endswith(
        "m.yaml: $: unknown key 'critera_x' (did you mean 'criteria'?)")
    assert "unknown kind 'observaton' (did you mean 'observation'?" in error_of(
        tmp_path, GOOD.replace("kind: observation", "kind: observaton"))
