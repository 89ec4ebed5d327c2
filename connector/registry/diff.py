"""Field-level differences between two trial records, and their one-line rendering.

Diffs use the record's own field names (`overall_status: RECRUITING -> COMPLETED`). The raw
`protocol_section` is only consulted when no record field changed, so a change the record does
not surface (say, in the description) still shows as `protocol_section.descriptionModule: changed`.
"""

from __future__ import annotations

import json
from typing import Any

RAW_FIELD = "protocol_section"
_INLINE = 70  # longest value shown whole
_CONTEXT = 24  # characters kept around the first difference of long texts


def record_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """`[{"field", "old", "new"}]` for every record field that differs (schema order)."""
    changes = [
        {"field": name, "old": old.get(name), "new": new.get(name)}
        for name in new
        if name != RAW_FIELD and old.get(name) != new.get(name)
    ]
    if changes:
        return changes
    old_ps, new_ps = old.get(RAW_FIELD) or {}, new.get(RAW_FIELD) or {}
    return [
        {"field": f"{RAW_FIELD}.{module}", "old": None, "new": None, "note": "changed"}
        for module in sorted(set(old_ps) | set(new_ps))
        if old_ps.get(module) != new_ps.get(module)
    ]


def render_change(change: dict[str, Any]) -> str:
    """`field: old -> new`, values shortened so each change stays one readable line."""
    if change.get("note"):
        return f"{change['field']}: {change['note']}"
    old, new = change.get("old"), change.get("new")
    if isinstance(old, str) and isinstance(new, str) and max(len(old), len(new)) > _INLINE:
        before, after = _text_difference(old, new)
        return f"{change['field']}: {before} -> {after}"
    if isinstance(old, list) and isinstance(new, list) and not (_fits(old) and _fits(new)):
        added = sum(1 for item in new if item not in old)
        removed = sum(1 for item in old if item not in new)
        return f"{change['field']}: {len(old)} items -> {len(new)} items (+{added} -{removed})"
    return f"{change['field']}: {render_value(old)} -> {render_value(new)}"


def render_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value if len(value) <= _INLINE else value[: _INLINE - 1] + "…"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= _INLINE else text[: _INLINE - 1] + "…"


def _fits(value: list[Any]) -> bool:
    return len(render_value(value)) < _INLINE and not render_value(value).endswith("…")


def _text_difference(old: str, new: str) -> tuple[str, str]:
    """The differing middle of two long texts with a little context, as quoted snippets."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    return _snippet(old, start, len(old) - end), _snippet(new, start, len(new) - end)


def _snippet(text: str, start: int, stop: int) -> str:
    left = max(0, start - _CONTEXT)
    right = min(len(text), stop + _CONTEXT)
    middle = text[left:right]
    if len(middle) > 3 * _INLINE:
        middle = middle[: 3 * _INLINE - 1] + "…"
    shown = json.dumps(middle, ensure_ascii=False)
    return ("…" if left > 0 else "") + shown + ("…" if right < len(text) else "")
