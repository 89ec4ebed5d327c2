"""The in-memory form of a trial mapping: one small frozen dataclass per rule kind.

The loader builds these from validated YAML; the criteria engine reads only these, so
mapping content is data all the way down (nothing in a mapping is ever executed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from connector.codes import CodeSet


@dataclass(frozen=True)
class Threshold:
    """A value to compare against: in `unit`, or (relative_to_uln) a multiple of the ULN."""

    value: float
    unit: str | None = None
    relative_to_uln: bool = False


@dataclass(frozen=True)
class AnswerValue:
    """A coded answer that stands for a number (e.g. LOINC LA9624-3 = ECOG 2)."""

    codes: tuple[CodeSet, ...]
    value: float


@dataclass(frozen=True)
class AgeRule:
    min_years: int | None = None
    max_years: int | None = None
    kind: str = "age"


@dataclass(frozen=True)
class SexRule:
    allowed: frozenset[str]
    kind: str = "sex"


@dataclass(frozen=True)
class SiteCountryRule:
    countries: frozenset[str]
    kind: str = "site_country"


@dataclass(frozen=True)
class ConditionRule:
    codes: tuple[CodeSet, ...]
    exclude_codes: tuple[CodeSet, ...] = ()
    clinical_status: str = "any"  # any | active
    body_sites: tuple[CodeSet, ...] = ()
    names: tuple[str, ...] = ()  # normalized; matched in the text of Conditions without a usable code
    kind: str = "condition"


@dataclass(frozen=True)
class ObservationRule:
    codes: tuple[CodeSet, ...]
    comparator: str  # < <= > >=
    threshold: Threshold
    window_days: int
    molar_mass: float | None = None  # g/mol, for mass <-> molar units
    answers: tuple[AnswerValue, ...] = ()
    kind: str = "observation"


@dataclass(frozen=True)
class CodedObservationRule:
    codes: tuple[CodeSet, ...]
    answers: tuple[CodeSet, ...]
    window_days: int
    texts: frozenset[str] = frozenset()  # normalized valueString answers that count
    when_missing: str = "unknown"  # unknown | absent (no record in the window = not found)
    kind: str = "coded_observation"


@dataclass(frozen=True)
class DoseTarget:
    """Cumulative dose that counts: any of `values` (in `unit`) within +/- `tolerance` (fraction)."""

    values: tuple[float, ...]
    unit: str
    tolerance: float = 0.0


@dataclass(frozen=True)
class Administrations:
    """Count (and dose) of administrations within a rolling period of `period_days`."""

    period_days: int
    counts: frozenset[int]
    max_total: int | None = None
    dose: DoseTarget | None = None


@dataclass(frozen=True)
class MedicationRule:
    codes: tuple[CodeSet, ...] = ()
    names: tuple[str, ...] = ()  # normalized with connector.codes.normalize_text
    administrations: Administrations | None = None
    kind: str = "medication"


@dataclass(frozen=True)
class CreatinineClearanceRule:
    """Measured 24-h clearance in the window, else Cockcroft-Gault from creatinine and weight."""

    comparator: str
    threshold: Threshold
    window_days: int
    measured_codes: tuple[CodeSet, ...]
    creatinine_codes: tuple[CodeSet, ...]
    weight_codes: tuple[CodeSet, ...]
    weight_window_days: int
    creatinine_molar_mass: float
    kind: str = "derived"


@dataclass(frozen=True)
class AllOf:
    rules: tuple["Rule", ...]
    kind: str = "all_of"


@dataclass(frozen=True)
class AnyOf:
    rules: tuple["Rule", ...]
    kind: str = "any_of"


@dataclass(frozen=True)
class Not:
    rule: "Rule"
    kind: str = "not"


@dataclass(frozen=True)
class ManualRule:
    kind: str = "manual"


Rule = Union[AgeRule, SexRule, SiteCountryRule, ConditionRule, ObservationRule, CodedObservationRule,
             MedicationRule, CreatinineClearanceRule, AllOf, AnyOf, Not, ManualRule]


@dataclass(frozen=True)
class DraftNote:
    """How `mappings draft` derived a criterion and what a reviewer must confirm."""

    how: str
    confidence: str  # high | medium | low
    confirm: str | None = None


@dataclass(frozen=True)
class Criterion:
    """One criterion of the trial.

    `type` exclusion: the rule describes what disqualifies, so its outcome is inverted (rule
    found -> not_met). `review_if_found`: a found exclusion goes to a person (unknown, manual)
    instead of excluding. `defer_if_not_met`: when the rule is not met and this rule is, a
    person decides (Gilbert's syndrome and bilirubin).
    """

    id: str
    type: str  # inclusion | exclusion
    texts: tuple[str, ...]
    rule: Rule
    review_if_found: bool = False
    defer_if_not_met: Rule | None = None
    draft: DraftNote | None = None


@dataclass(frozen=True)
class OptionRule:
    why: str
    rule: Rule


@dataclass(frozen=True)
class ArmOption:
    """A treatment option of an arm: allowed when all `requires` are met and no `unless` is."""

    name: str
    requires: tuple[OptionRule, ...] = ()
    unless: tuple[OptionRule, ...] = ()


@dataclass(frozen=True)
class Arm:
    label: str
    options: tuple[ArmOption, ...] = ()


@dataclass(frozen=True)
class Mapping:
    trial: str
    criteria_hash: str
    criteria: tuple[Criterion, ...]
    arms: tuple[Arm, ...] = ()
    title: str | None = None
    file: Path | None = field(default=None, compare=False)
    status: str = "reviewed"  # draft: screens only with --allow-draft

    @property
    def is_draft(self) -> bool:
        return self.status == "draft"

    def criterion(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(criterion_id)
