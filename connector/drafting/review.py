"""What a reviewer must confirm in a mapping: every drafted criterion with how it was derived,
how sure the drafter was, and the specific points to check, least sure first."""

from __future__ import annotations

from connector.mapping.model import ManualRule, Mapping

_ORDER = {"low": 0, "medium": 1, "high": 2}


def review_lines(mapping: Mapping) -> list[str]:
    """One block per criterion to confirm (all of them for a draft), least confident first."""
    if not mapping.is_draft:
        return [f"{mapping.trial}: status reviewed; nothing drafted is left to confirm"]
    drafted = [c for c in mapping.criteria if c.draft is not None]
    drafted.sort(key=lambda c: (_ORDER.get(c.draft.confidence, 0), isinstance(c.rule, ManualRule)))
    computable = sum(1 for c in mapping.criteria if not isinstance(c.rule, ManualRule))
    lines = [f"{mapping.trial}: DRAFT with {len(mapping.criteria)} criteria ({computable} computable, "
             f"{len(mapping.criteria) - computable} manual). Confirm each, then set `status: reviewed`."]
    for criterion in drafted:
        note = criterion.draft
        kind = "manual" if isinstance(criterion.rule, ManualRule) else criterion.rule.kind
        lines.append(f"[{note.confidence:<6}] {criterion.id} ({criterion.type}, {kind}): {note.how}")
        if note.confirm:
            lines.append(f"           confirm: {note.confirm}")
    undrafted = [c.id for c in mapping.criteria if c.draft is None]
    if undrafted:
        lines.append(f"edited by hand (no draft note): {', '.join(undrafted)}")
    return lines
