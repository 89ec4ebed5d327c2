"""Rule bodies the drafter writes beyond the lab dictionary: the same codes and shapes as the
reviewed seed mapping (mappings/NCT05773274.yaml), so a drafted criterion reads its data the way a
reviewed one does."""

from __future__ import annotations

PREGNANCY_WINDOW = 28

ECOG_CODES = [{"system": "loinc", "codes": ["89247-1"]}]
ECOG_ANSWERS = [
    {"value": 0, "codes": [{"system": "loinc", "codes": ["LA9622-7"]}]},
    {"value": 1, "codes": [{"system": "loinc", "codes": ["LA9623-5"]}]},
    {"value": 2, "codes": [{"system": "loinc", "codes": ["LA9624-3"]}]},
    {"value": 3, "codes": [{"system": "loinc", "codes": ["LA9625-0"]}]},
    {"value": 4, "codes": [{"system": "loinc", "codes": ["LA9626-8"]}]},
    {"value": 5, "codes": [{"system": "loinc", "codes": ["LA9627-6"]}]},
]
KARNOFSKY_CODES = [{"system": "loinc", "codes": ["89243-0"]}]
PREGNANCY_RULE = {
    "kind": "all_of",
    "rules": [
        {"kind": "sex", "allowed": ["female"]},
        {"kind": "any_of", "rules": [
            {"kind": "coded_observation", "codes": [{"system": "loinc", "codes": ["82810-3"]}],
             "answers": [{"system": "snomed", "codes": ["77386006"]}, {"system": "loinc", "codes": ["LA15173-0"]}],
             "window_days": PREGNANCY_WINDOW, "when_missing": "absent"},
            {"kind": "coded_observation", "codes": [{"system": "loinc", "codes": ["2106-3", "2118-8"]}],
             "answers": [{"system": "snomed", "codes": ["10828004"]}, {"system": "loinc", "codes": ["LA6576-8"]}],
             "answer_texts": ["positive"], "window_days": PREGNANCY_WINDOW, "when_missing": "absent"},
        ]},
    ],
}
CREATININE_CLEARANCE = {
    "measured_codes": [{"system": "loinc", "codes": ["2164-2"]}],
    "creatinine_codes": [{"system": "loinc", "codes": ["2160-0", "38483-4", "14682-9"]}],
    "creatinine_molar_mass": 113.12,
    "weight_codes": [{"system": "loinc", "codes": ["29463-7"]}],
    "weight_window_days": 90,
}
