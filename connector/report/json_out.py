"""The `--format json` output: ScreenReport.to_json() (schemas/result.schema.json), and with the
mapping, each criterion's text, threshold and window, and for every unknown / not_met result
`hint` (the sentence) and `settle` (its fields; connector.report.hints)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

from connector.mapping.model import Mapping
from connector.report.hints import criterion_text, patient_hints, requirement
from connector.results import PatientResult, ScreenReport

SETTLE_FIELDS = ("action", "what", "dated_from", "latest_reference", "latest_value", "latest_unit", "latest_date")


def criterion_fields(mapping: Mapping) -> dict[str, dict[str, Any]]:
    """Per criterion id: `text`, `threshold` ({comparator, value, unit, relative_to} a value must
    satisfy for the criterion to be met) or None, `window_days` or None."""
    fields = {}
    for criterion in mapping.criteria:
        need = requirement(criterion)
        threshold = None
        if need.comparator is not None and need.threshold is not None:
            threshold = {"comparator": need.comparator, "value": need.threshold, "unit": need.unit,
                         "relative_to": need.relative_to}
        fields[criterion.id] = {"text": criterion_text(criterion), "threshold": threshold,
                                "window_days": need.window_days}
    return fields


def annotated(report: ScreenReport, mapping: Mapping,
              as_of_for: Callable[[PatientResult], date] | None = None) -> dict[str, Any]:
    data = report.to_json()
    data["patients"] = annotated_patients(report.patients, mapping, as_of_for or (lambda _patient: report.as_of))
    return data


def annotated_patients(patients: list[PatientResult], mapping: Mapping,
                       as_of_for: Callable[[PatientResult], date]) -> list[dict[str, Any]]:
    """Each result's JSON with its criteria's text, threshold, window, hint and settle fields
    (shared by single-trial and portfolio output, so both give a trial's results the same way)."""
    fields = criterion_fields(mapping)
    criteria = {c.id: c for c in mapping.criteria}
    annotated_json = []
    for patient in patients:
        patient_json = patient.to_json()
        hints = patient_hints(criteria, patient.criteria, as_of_for(patient))
        for result_json in patient_json["criteria"]:
            result_json.update(fields.get(result_json["id"], {"text": None, "threshold": None, "window_days": None}))
            hint = hints.get(result_json["id"])
            result_json["hint"] = hint.hint if hint else None
            result_json["settle"] = {k: getattr(hint, k) for k in SETTLE_FIELDS} if hint else None
        annotated_json.append(patient_json)
    return annotated_json


def render_json(report: ScreenReport, mapping: Mapping | None = None,
                as_of_for: Callable[[PatientResult], date] | None = None) -> str:
    data = annotated(report, mapping, as_of_for) if mapping is not None else report.to_json()
    return json.dumps(data, indent=2, ensure_ascii=False)
