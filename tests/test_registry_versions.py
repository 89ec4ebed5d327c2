"""Versioned trial records in the store (SQLite and PostgreSQL): what is a change, what is not."""

from __future__ import annotations

import copy

from connector.registry.diff import record_diff, render_change
from connector.registry.normalise import normalise_study
from connector.registry.versions import (
    content_sha256, latest_trial_record, request_rescreen, save_study, trial_state, trial_versions,
)
from registry_support import load, study, with_criteria, with_status

T0, T1, T2, T3 = ("2026-03-03T06:00:00.000000+00:00", "2026-03-06T06:00:00.000000+00:00",
                  "2026-03-07T06:00:00.000000+00:00", "2026-03-08T06:00:00.000000+00:00")


def test_version_holder_only_change_is_not_a_new_version(store):
    older = load("versions/NCT01305200@2026-03-03.json")
    newer = load("versions/NCT01305200@2026-03-06.json")
    assert older != newer  # the real pair differs ...
    holders = [v["derivedSection"]["miscInfoModule"]["versionHolder"] for v in (older, newer)]
    assert holders == ["2026-03-03", "2026-03-06"]
    assert older["protocolSection"] == newer["protocolSection"]  # ... only outside protocolSection
    first = save_study(store, older, source="test", now=T0)
    second = save_study(store, newer, source="test", now=T1)
    assert (first.status, first.version) == ("new", 1)
    assert (second.status, second.version) == ("unchanged", 1)
    assert [v.version for v in trial_versions(store, "NCT01305200")] == [1]
    state = trial_state(store, "NCT01305200")
    assert state.last_checked_at == T1 and state.changed_at == T0 and state.rescreen_after is None


def test_derived_section_drift_is_not_a_change(store):
    record = study("NCT00716976")
    save_study(store, record, source="test", now=T0)
    drifted = copy.deepcopy(record)
    drifted["derivedSection"]["conditionBrowseModule"] = {"meshes": [{"id": "D000001", "term": "Drift"}]}
    assert save_study(store, drifted, source="test", now=T1).status == "unchanged"


def test_status_change_is_a_new_version_with_a_field_diff(store):
    record = study("NCT05773274")
    save_study(store, record, source="test", now=T0)
    outcome = save_study(store, with_status(record, "COMPLETED"), source="test", now=T1)
    assert (outcome.status, outcome.version, outcome.criteria_changed) == ("changed", 2, False)
    assert outcome.diff == [{"field": "overall_status", "old": "RECRUITING", "new": "COMPLETED"}]
    assert [render_change(c) for c in trial_versions(store, "NCT05773274")[1].diff] == [
        "overall_status: RECRUITING -> COMPLETED"]
    assert latest_trial_record(store, "NCT05773274")["overall_status"] == "COMPLETED"
    state = trial_state(store, "NCT05773274")
    assert state.latest_version == 2 and state.changed_at == T1
    assert state.criteria_version == 1 and state.rescreen_after is None  # criteria did not move
    # the same content again: nothing new
    assert save_study(store, with_status(record, "COMPLETED"), source="test", now=T2).status == "unchanged"
    assert len(trial_versions(store, "NCT05773274")) == 2


def test_eligibility_change_is_a_new_version_and_marks_rescreening(store):
    record = study("NCT05773274")
    first = save_study(store, record, source="test", now=T0)
    assert first.criteria_changed is False
    old_hash = latest_trial_record(store, "NCT05773274")["eligibility_criteria_sha256"]
    changed = with_criteria(record, "Hemoglobin \\>= 80 g/L", "Hemoglobin \\>= 90 g/L")
    outcome = save_study(store, changed, source="test", now=T1)
    assert outcome.status == "changed" and outcome.criteria_changed
    fields = [c["field"] for c in outcome.diff]
    assert fields == ["eligibility_criteria", "eligibility_criteria_sha256", "inclusion_criteria"]
    latest = latest_trial_record(store, "NCT05773274")
    assert latest["eligibility_criteria_sha256"] != old_hash
    state = trial_state(store, "NCT05773274")
    assert state.criteria_sha256 == latest["eligibility_criteria_sha256"]
    assert (state.criteria_version, state.criteria_changed_at, state.rescreen_after) == (2, T1, T1)
    line = render_change(outcome.diff[0])
    before, after = line.removeprefix("eligibility_criteria: ").split(" -> ")
    assert "80 g/L" in before and "90 g/L" in after and "80 g/L" not in after
    assert render_change(outcome.diff[2]) == "inclusion_criteria: 23 items -> 23 items (+1 -1)"


def test_results_presence_is_a_change(store):
    record = study("NCT05773274")
    save_study(store, record, source="test", now=T0)
    posted = copy.deepcopy(record)
    posted["hasResults"] = True
    outcome = save_study(store, posted, source="test", now=T1)
    assert outcome.status == "changed" and outcome.diff == [{"field": "has_results", "old": False, "new": True}]


def test_change_outside_record_fields_shows_the_module(store):
    record = study("NCT05773274")
    save_study(store, record, source="test", now=T0)
    edited = copy.deepcopy(record)
    edited["protocolSection"]["descriptionModule"]["detailedDescription"] += " (amended)"
    outcome = save_study(store, edited, source="test", now=T1)
    assert outcome.status == "changed"
    assert [render_change(c) for c in outcome.diff] == ["protocol_section.descriptionModule: changed"]


def test_request_rescreen_only_moves_forward(store):
    assert request_rescreen(store, "NCT05773274", at=T1) is False  # never synced
    save_study(store, study("NCT05773274"), source="test", now=T0)
    assert request_rescreen(store, "NCT05773274", at=T2) is True
    assert trial_state(store, "NCT05773274").rescreen_after == T2
    request_rescreen(store, "NCT05773274", at=T1)
    assert trial_state(store, "NCT05773274").rescreen_after == T2
    request_rescreen(store, "nct5773274", at=T3)
    assert trial_state(store, "NCT05773274").rescreen_after == T3


def test_aliases_resolve_to_the_study(store):
    record = study("NCT05773274")
    save_study(store, record, source="test", aliases=["NCT01234567"], now=T0)
    assert latest_trial_record(store, "NCT01234567")["nct_id"] == "NCT05773274"
    assert trial_state(store, "nct1234567").nct_id == "NCT05773274"
    assert latest_trial_record(store, "NCT09999999") is None


def test_versions_since_filter(store):
    record = study("NCT05773274")
    save_study(store, record, source="a", now=T0)
    save_study(store, with_status(record, "SUSPENDED"), source="b", now=T2)
    assert [v.version for v in trial_versions(store, "NCT05773274", since="2026-03-07")] == [2]
    assert [v.source for v in trial_versions(store, "NCT05773274")] == ["a", "b"]


def test_content_hash_ignores_everything_but_protocol_and_results():
    a = normalise_study(load("versions/NCT01305200@2026-03-03.json"))
    b = normalise_study(load("versions/NCT01305200@2026-03-06.json"))
    assert content_sha256(a) == content_sha256(b)
    assert content_sha256(a) != content_sha256(normalise_study(with_status(study("NCT01305200"), "WITHDRAWN")))
    assert record_diff(a, b) == []
