"""Summary counts that say what they count: patients, per status, and every kind of error.

Three kinds of error, counted apart because each asks for a different fix:
- resource errors: a screened patient had a record that could not be read (or a criterion
  that could not be evaluated); the rest of the patient was screened, see its `errors`;
- patients not screened: the patient's data could not be read at all;
- source problems: a file, line or export part that belongs to no known patient.
Any of them makes the command exit 3 (done, with errors).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from connector.results import CANDIDATE, STATUSES, PatientResult

STATUS_PLURAL = {CANDIDATE: "candidates"}


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 patient`, `2 patients`."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def statuses(by_status: Mapping[str, int]) -> str:
    """`6 candidates, 4 possible, 8 excluded` (every status, zeros included)."""
    return ", ".join(f"{by_status.get(s, 0)} {s if by_status.get(s, 0) == 1 else STATUS_PLURAL.get(s, s)}"
                     for s in STATUSES)


@dataclass
class Tally:
    patients: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    resource_errors: int = 0
    patients_with_errors: int = 0
    not_screened: int = 0
    source_problems: int = 0

    @classmethod
    def of(cls, patients: Iterable[PatientResult], not_screened: int = 0, source_problems: int = 0) -> "Tally":
        tally = cls(not_screened=not_screened, source_problems=source_problems)
        for patient in patients:
            tally.patients += 1
            tally.by_status[patient.status] += 1
            if patient.errors:
                tally.patients_with_errors += 1
                tally.resource_errors += len(patient.errors)
        return tally

    @property
    def has_errors(self) -> bool:
        return bool(self.resource_errors or self.not_screened or self.source_problems)

    def statuses(self) -> str:
        return statuses(self.by_status)

    def errors(self) -> str:
        """`errors: 1 resource error in 1 screened patient, ...` or `no errors`."""
        parts = []
        if self.resource_errors:
            parts.append(f"{count(self.resource_errors, 'resource error')} in "
                         f"{count(self.patients_with_errors, 'screened patient')} (see its errors)"
                         .replace("its errors", "their errors" if self.patients_with_errors > 1 else "its errors"))
        if self.not_screened:
            parts.append(f"{count(self.not_screened, 'patient')} not screened (data could not be read)")
        if self.source_problems:
            parts.append(f"{count(self.source_problems, 'source problem')} (data in them was not screened)")
        return "errors: " + "; ".join(parts) if parts else "no errors"

    def lines(self) -> list[str]:
        return [f"{count(self.patients, 'patient')} screened: {self.statuses()}", self.errors()]
