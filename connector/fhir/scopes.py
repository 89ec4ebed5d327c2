"""SMART system scopes: which ones the connector needs, and whether a token's scopes grant them.

Needs follow the mappings: each FHIR type a mapping reads needs search and read (`system/T.rs`
in SMART v2), Medication comes with any medication type (medicationReference), and a server
that receives `results --post` also needs to create and update ResearchStudy and
ResearchSubject. Granted scopes are read in both SMART v1 (`system/T.read`, `.write`, `.*`) and
v2 (`system/T.cruds` subsets) syntax, with `*` for every type.
"""

from __future__ import annotations

from collections.abc import Iterable

from connector.needs import ALL_TYPES

READ, WRITE = "rs", "cu"
MEDICATION_TYPES = frozenset({"MedicationStatement", "MedicationRequest", "MedicationAdministration"})
WRITE_TYPES = ("ResearchStudy", "ResearchSubject")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


def needed_scopes(resource_types: Iterable[str], post_results: bool = False) -> list[str]:
    """The SMART v2 system scopes for reading `resource_types` (and writing results)."""
    types = set(resource_types) | {"Patient"}
    if types & MEDICATION_TYPES:
        types.add("Medication")
    scopes = [f"system/{t}.{READ}" for t in sorted(types)]
    if post_results:
        scopes += [f"system/{t}.{WRITE}" for t in WRITE_TYPES]
    return scopes


def default_read_scope() -> str:
    """What a SMART client asks for when the config names no scope: reads of every type we read."""
    return " ".join(needed_scopes(ALL_TYPES))


def missing_scopes(needed: Iterable[str], granted: str) -> list[str]:
    """The needed scopes that the granted scope string does not cover."""
    grants = [_parse(s) for s in granted.split()]
    missing = []
    for scope in needed:
        parsed = _parse(scope)
        if parsed is None:
            continue
        rtype, permissions = parsed
        allowed = set().union(*(perms for gtype, perms in filter(None, grants) if gtype in ("*", rtype)))
        if not set(permissions) <= allowed:
            missing.append(scope)
    return missing


def _parse(scope: str) -> tuple[str, str] | None:
    """`system/Patient.rs` -> ("Patient", "rs"); v1 `.read` -> "rs"; non-system scopes -> None."""
    context, _, rest = scope.partition("/")
    if context != "system" or "." not in rest:
        return None
    rtype, _, permissions = rest.partition(".")
    permissions = permissions.split("?", 1)[0]  # v2 scopes may carry search restrictions
    return rtype, _V1.get(permissions, permissions)
