"""One resource seen more than once counts once: its current version, or a conflict.

The same resource (type + id) can arrive several times: versions in a Bundle or a history,
overlapping pages of a search, the same record in two files. The copy with the latest
`meta.lastUpdated` is the current one (versionIds are opaque strings and are never sorted).
Copies that differ and cannot be ordered (no or equal `meta.lastUpdated`) are a conflict: no
copy is picked. All of them are kept and marked, so every criterion that one of them would
decide comes out `unknown` / `conflict` and the patient's result lists the conflict: a
reviewer, not file order, decides.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from connector.fhirtime import BadDate, parse_fhir_time

Resource = dict[str, Any]
_NEVER = datetime(1, 1, 1, tzinfo=timezone.utc)


def last_updated(resource: Resource) -> datetime | None:
    """`meta.lastUpdated` as an instant (None when absent or unreadable)."""
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(stamp, str):
        return None
    try:
        return parse_fhir_time(stamp)[2].earliest
    except BadDate:
        return None


def same_content(a: Resource, b: Resource) -> bool:
    """Equal apart from `meta` (servers and exporters rewrite meta on their own)."""
    def body(r: Resource) -> str:
        return json.dumps({k: v for k, v in r.items() if k != "meta"}, sort_keys=True)
    return a is b or body(a) == body(b)


def current_copy(copies: list[Resource]) -> Resource | None:
    """The current version among copies of one resource; None when they conflict."""
    first = copies[0]
    if all(same_content(first, other) for other in copies[1:]):
        return max(copies, key=lambda r: last_updated(r) or _NEVER)
    stamps = [last_updated(r) for r in copies]
    if any(s is None for s in stamps):
        return None
    newest = max(stamps)  # type: ignore[type-var]
    at_newest = [r for r, s in zip(copies, stamps, strict=True) if s == newest]
    if all(same_content(at_newest[0], other) for other in at_newest[1:]):
        return at_newest[0]
    return None


def newer_copy(kept: Resource, other: Resource) -> Resource:
    """Of two copies of one resource, the later-updated one (`kept` when that cannot be told)."""
    a, b = last_updated(kept), last_updated(other)
    return other if a is not None and b is not None and b > a else kept


def current_versions(resources: list[Any]) -> tuple[list[Any], dict[tuple[str, str], str]]:
    """Every resource once at its current version (all copies of a conflicting one), and the
    conflicts by (type, id), each with the message the patient's result gives."""
    groups: dict[tuple[str, str], list[Resource]] = {}
    order: list[Any] = []
    for resource in resources:
        key = _key(resource)
        if key is None:
            order.append(resource)
            continue
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(resource)
    result, conflicts = [], {}
    for item in order:
        if not isinstance(item, tuple):
            result.append(item)
            continue
        copies = groups[item]
        chosen = copies[0] if len(copies) == 1 else current_copy(copies)
        if chosen is None:
            conflicts[item] = (f"{item[0]}/{item[1]}: {len(copies)} different copies and no meta.lastUpdated to "
                               "tell which is current (conflict); criteria it would decide are left unknown")
            result.extend(copies)
        else:
            result.append(chosen)
    return result, conflicts


def _key(resource: Any) -> tuple[str, str] | None:
    if not isinstance(resource, dict):
        return None
    rtype, rid = resource.get("resourceType"), resource.get("id")
    return (rtype, rid) if isinstance(rtype, str) and isinstance(rid, str) else None
