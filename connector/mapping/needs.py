"""What a mapping needs fetched for one screening date (connector.needs.DataNeeds).

Observations are narrowed to the LOINC codes the criteria read and to dates from
`as_of - (largest window) - LOOKBACK_DAYS`: values just before a window are still fetched so
the engine can say `stale` (with the value) rather than `no-data`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

from connector.codes import CodeSet
from connector.mapping.model import (
    AllOf,
    AnyOf,
    CodedObservationRule,
    ConditionRule,
    CreatinineClearanceRule,
    Mapping,
    MedicationRule,
    Not,
    ObservationRule,
    Rule,
)
from connector.needs import DataNeeds

LOOKBACK_DAYS = 365
MEDICATION_TYPES = frozenset({"MedicationStatement", "MedicationRequest", "MedicationAdministration"})


def all_rules(mapping: Mapping) -> Iterator[Rule]:
    """Every rule of the mapping: criteria, deferrals and arm options, combinations flattened."""
    roots: list[Rule] = []
    for criterion in mapping.criteria:
        roots.append(criterion.rule)
        if criterion.defer_if_not_met is not None:
            roots.append(criterion.defer_if_not_met)
    for arm in mapping.arms:
        for option in arm.options:
            roots.extend(r.rule for r in option.requires + option.unless)
    return rules_within(*roots)


def rules_within(*roots: Rule) -> Iterator[Rule]:
    """Each root and the rules it combines, depth first in written order."""
    stack = list(reversed(roots))
    while stack:
        rule = stack.pop()
        yield rule
        if isinstance(rule, (AllOf, AnyOf)):
            stack.extend(reversed(rule.rules))
        elif isinstance(rule, Not):
            stack.append(rule.rule)


def data_needs(mapping: Mapping, as_of: date) -> DataNeeds:
    types = {"Patient"}
    code_sets: list[CodeSet] = []
    windows = [0]
    for rule in all_rules(mapping):
        if isinstance(rule, (ObservationRule, CodedObservationRule)):
            types.add("Observation")
            code_sets.extend(rule.codes)
            windows.append(rule.window_days)
        elif isinstance(rule, CreatinineClearanceRule):
            types.add("Observation")
            code_sets.extend(rule.measured_codes + rule.creatinine_codes + rule.weight_codes)
            windows.extend([rule.window_days, rule.weight_window_days])
        elif isinstance(rule, ConditionRule):
            types.add("Condition")
        elif isinstance(rule, MedicationRule):
            types.update(MEDICATION_TYPES)
    codes: frozenset[tuple[str, str]] = frozenset()
    if "Observation" in types and not any(cs.prefix for cs in code_sets):
        codes = frozenset().union(*(cs.pairs() for cs in code_sets))
    since = as_of - timedelta(days=max(windows) + LOOKBACK_DAYS) if "Observation" in types else None
    return DataNeeds(frozenset(types), codes, since)
