"""NCT ids: the registry's own pattern, and one canonical spelling (`NCT` + 8 digits).

Checking every id before the first request means a typo in a cron job's id list fails fast
and names the bad id, instead of costing requests and surfacing as "not found".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from connector.errors import ConnectorError

NCT_PATTERN = re.compile(r"^[Nn][Cc][Tt]0*[1-9]\d{0,7}$")  # as in the API's OpenAPI description


class InvalidNctId(ConnectorError):
    """An id that cannot be a ClinicalTrials.gov identifier."""


def normalise_nct_id(value: str) -> str:
    """`nct5773274` -> `NCT05773274`; raises InvalidNctId naming the value."""
    text = value.strip()
    if not NCT_PATTERN.match(text):
        raise InvalidNctId(f"{value!r} is not a ClinicalTrials.gov id (expected NCT followed by up to 8 digits)")
    return f"NCT{int(text[3:]):08d}"


def normalise_all(values: Iterable[str]) -> list[str]:
    """Every id normalised, duplicates dropped (order kept); raises naming every bad one."""
    seen: dict[str, None] = {}
    bad: list[str] = []
    for value in values:
        try:
            seen.setdefault(normalise_nct_id(value), None)
        except InvalidNctId:
            bad.append(repr(value))
    if bad:
        noun = "is not a ClinicalTrials.gov id" if len(bad) == 1 else "are not ClinicalTrials.gov ids"
        raise InvalidNctId(f"{', '.join(bad)} {noun} (expected NCT followed by up to 8 digits, e.g. NCT05773274)")
    return list(seen)
