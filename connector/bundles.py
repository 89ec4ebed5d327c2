"""References inside a Bundle: `urn:uuid:` fullUrls resolved to the resources they name.

Hospital feeds (interface engines, transaction Bundles) often identify entries only by a
`urn:uuid:` fullUrl and point at each other with it (`subject: {reference: "urn:uuid:..."}`).
Each such reference is rewritten to `Type/id` of the entry it names (an entry without an id gets
the uuid as its id), so the rest of the connector reads plain references. A `urn:uuid:` /
`urn:oid:` reference that names no entry of the Bundle cannot be resolved anywhere: it is
reported, and the resource holding it is not placed by it.
"""

from __future__ import annotations

from typing import Any

_LOCAL_PREFIXES = ("urn:uuid:", "urn:oid:")


def resolve_bundle(bundle: dict[str, Any]) -> tuple[list[tuple[int, Any]], dict[int, list[str]]]:
    """(entry index, resource) for each entry with references rewritten, and per entry index
    the references that name nothing in the Bundle (`subject.reference` and the like)."""
    entries = bundle.get("entry") or []
    targets: dict[str, str] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(full_url, str) or not full_url.startswith(_LOCAL_PREFIXES):
            continue
        if not resource.get("id") and full_url.startswith("urn:uuid:"):
            resource["id"] = full_url[len("urn:uuid:"):]
        if isinstance(resource.get("resourceType"), str) and isinstance(resource.get("id"), str):
            targets[full_url] = f"{resource['resourceType']}/{resource['id']}"
    resolved, unresolved = [], {}
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        dangling: list[str] = []
        if isinstance(resource, dict):
            _rewrite(resource, targets, dangling)
        if dangling:
            unresolved[i] = dangling
        resolved.append((i, resource))
    return resolved, unresolved


def _rewrite(node: Any, targets: dict[str, str], dangling: list[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith(_LOCAL_PREFIXES):
            if ref in targets:
                node["reference"] = targets[ref]
            else:
                dangling.append(ref)
        for key, value in node.items():
            if key != "contained":  # contained resources refer to each other with #id
                _rewrite(value, targets, dangling)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, targets, dangling)
