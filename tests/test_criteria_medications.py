"""Medication history: prior PRRT counts and doses, excluded drugs, name and code matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.codes import RXNORM
from connector.criteria import EvalContext
from connector.evaluation import evaluate_criterion
from connector.mapping import load_mapping
from engine_helpers import AS_OF, med, patient, with_facts

MAPPING = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"
LU = "Lutathera (lutetium Lu 177 dotatate)"


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(MAPPING)


def run(mapping, criterion_id, *items):
    return evaluate_criterion(mapping.criterion(criterion_id), EvalContext(with_facts(patient(), *items), AS_OF))


def cycles(n, start=1000, every=56):
    return [med(f"lu{i}", LU, start - i * every) for i in range(n)]


@pytest.mark.parametrize("n, expected", [
    (0, ("not_met", "no-record")),
    (1, ("not_met", "count")),
    (2, ("not_met", "count")),
    (3, ("met", "count")),
    (4, ("met", "count")),
    (5, ("not_met", "count")),
])
def test_prrt_cycle_count(mapping, n, expected):
    result = run(mapping, "prior_prrt", *cycles(n))
    assert (result.outcome, result.reason) == expected
    if expected[0] == "met":
        assert len(result.evidence) == n


def test_more_than_four_in_all_is_not_met_even_years_apart(mapping):
    retreatment = [med(f"r{i}", LU, 200 - i * 56) for i in range(2)]
    result = run(mapping, "prior_prrt", *cycles(4), *retreatment)
    assert (result.outcome, result.reason) == ("not_met", "count")
    assert len(result.evidence) == 6


def test_rolling_52_week_window_boundary(mapping):
    # 3 cycles whose first and last are 363 days apart: within 52 weeks; 364 days: not
    inside = [med("a", LU, 1000), med("b", LU, 800), med("c", LU, 637)]
    outside = [med("a", LU, 1000), med("b", LU, 800), med("c", LU, 636)]
    assert run(mapping, "prior_prrt", *inside).outcome == "met"
    assert run(mapping, "prior_prrt", *outside).outcome == "not_met"


@pytest.mark.parametrize("doses, expected", [
    ([(11100, "MBq"), (11100, "MBq")], ("met", "dose")),
    ([(300, "mCi"), (300, "mCi")], ("met", "dose")),       # 600 mCi = 22,200 MBq
    ([(14800, "MBq"), (14800, "MBq")], ("met", "dose")),   # 29,600 MBq
    ([(9990, "MBq"), (9990, "MBq")], ("met", "dose")),     # 19,980 = 22,200 - 10 %
    ([(9989, "MBq"), (9990, "MBq")], ("not_met", "count")),
    ([(12210, "MBq"), (12210, "MBq")], ("met", "dose")),   # 24,420 = 22,200 + 10 %
    ([(12500, "MBq"), (12500, "MBq")], ("not_met", "count")),  # 25,000: between the two targets
    ([(11.1, "GBq"), (11.1, "GBq")], ("met", "dose")),
])
def test_cumulative_dose_within_ten_percent(mapping, doses, expected):
    items = [med(f"d{i}", LU, 300 - i * 56, dose=dose) for i, dose in enumerate(doses)]
    result = run(mapping, "prior_prrt", *items)
    assert (result.outcome, result.reason) == expected


def test_dose_outside_52_weeks_does_not_add_up(mapping):
    items = [med("d1", LU, 900, dose=(11100, "MBq")), med("d2", LU, 100, dose=(11100, "MBq"))]
    assert run(mapping, "prior_prrt", *items).outcome == "not_met"


def test_unconvertible_dose_that_could_decide_is_unknown_unit(mapping):
    items = [med("d1", LU, 300, dose=(11100, "MBq")), med("d2", LU, 250, dose=(5, "mL"))]
    result = run(mapping, "prior_prrt", *items)
    assert (result.outcome, result.reason) == ("unknown", "unit")
    assert result.evidence[0].reference == "MedicationAdministration/d2"


def test_statements_or_requests_count_when_no_administrations(mapping):
    requests = [med(f"rq{i}", "LUTETIUM LU-177 DOTATATE 370 MBQ/ML IV SOLN", 900 - i * 56, kind="request")
                for i in range(4)]
    result = run(mapping, "prior_prrt", *requests)
    assert (result.outcome, result.reason) == ("met", "count")


def test_administrations_preferred_and_one_cycle_per_day(mapping):
    admins = [med(f"a{i}", LU, 900 - i * 56) for i in range(4)]
    same_day_requests = [med(f"r{i}", LU, 900 - i * 56, kind="request") for i in range(4)]
    extra_requests = [med("r9", LU, 300, kind="request")]  # ignored: administrations are on record
    result = run(mapping, "prior_prrt", *admins, *same_day_requests, *extra_requests)
    assert (result.outcome, result.reason) == ("met", "count")
    assert all(e.reference.startswith("MedicationAdministration/") for e in result.evidence)


@pytest.mark.parametrize("status, kind", [
    ("not-taken", "statement"), ("entered-in-error", "request"), ("cancelled", "request"), ("not-done", "administration"),
])
def test_void_records_are_not_doses(mapping, status, kind):
    items = cycles(4) + [med("void", LU, 300, kind=kind, status=status)]
    assert run(mapping, "prior_prrt", *items).outcome == "met"  # 4, not 5


def test_doses_after_screening_date_are_ignored(mapping):
    items = cycles(4) + [med("future", LU, -30)]
    assert run(mapping, "prior_prrt", *items).outcome == "met"


@pytest.mark.parametrize("name, matches", [
    ("Lutathera 7.4 GBq", True),
    ("LUTETIUM LU 177 DOTATATE", True),
    ("177Lu-DOTATATE", True),
    ("lu-177-dotatate", True),
    ("[177Lu]Lu-DOTA-TATE", True),
    ("Lutetium (177Lu) oxodotreotide", True),
    ("lutetium Lu 177 vipivotide tetraxetan", False),  # Pluvicto (PSMA), not PRRT for NETs
    ("Octreotide LAR 30 mg", False),
    ("Ga-68 DOTATATE (NETSPOT) PET", False),  # imaging, not therapy
])
def test_lutetium_dotatate_name_matching(mapping, name, matches):
    result = run(mapping, "prior_prrt", *[med(f"m{i}", name, 900 - i * 56) for i in range(4)])
    assert (result.outcome == "met") is matches


@pytest.mark.parametrize("name", ["225Ac-DOTATATE", "Actinium-225 PSMA", "212Pb-DOTAMTATE", "[212Pb]VMT-alpha-NET",
                                  "Xofigo (radium Ra 223 dichloride)", "RADIUM-223", "bismuth-213 lintuzumab",
                                  "thorium-227 conjugate"])
def test_targeted_alpha_therapy_excludes(mapping, name):
    result = run(mapping, "no_targeted_alpha", med("alpha", name, 400, kind="statement"))
    assert (result.outcome, result.reason) == ("not_met", "record")
    assert result.evidence[0].reference == "MedicationStatement/alpha"


def test_no_alpha_therapy_on_record_is_met(mapping):
    result = run(mapping, "no_targeted_alpha", *cycles(4))
    assert (result.outcome, result.reason) == ("met", "no-record")


def test_not_taken_alpha_statement_does_not_exclude(mapping):
    result = run(mapping, "no_targeted_alpha", med("alpha", "225Ac-DOTATATE", 400, kind="statement", status="not-taken"))
    assert result.outcome == "met"


def test_rxnorm_code_matches_without_text(mapping):
    from connector.criteria import evaluate_rule

    rule = mapping.arms[1].options[0].unless[0].rule  # prior mTOR inhibitor
    facts = with_facts(patient(), med("e", None, 100, kind="request", code=(RXNORM, "141704")))
    assert evaluate_rule(rule, EvalContext(facts, AS_OF)).status == "met"
    other = with_facts(patient(), med("e", None, 100, kind="request", code=(RXNORM, "999999")))
    assert evaluate_rule(rule, EvalContext(other, AS_OF)).status == "not_met"
