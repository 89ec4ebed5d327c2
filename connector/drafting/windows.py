"""Look-back windows stated in the text ("within 14 days prior to registration")."""

from __future__ import annotations

import re

_WITHIN = re.compile(r"\bwithin\s+(?:the\s+)?(?:last\s+|past\s+)?(\d{1,3})\s*(day|week|month)s?\b"
                     r"|\b(\d{1,3})\s*(day|week|month)s?\s+(?:prior to|before)\b"
                     r"|=?<=?\s*(\d{1,3})\s*(day|week|month)s?\s+(?:prior to|before)", re.IGNORECASE)
_DAYS = {"day": 1, "week": 7, "month": 30}
_LAB_CONTEXT = re.compile(r"\blab(?:orator(?:y|ies))?\b|\bhematolog|\bblood (?:tests?|counts?)|\borgan function",
                          re.IGNORECASE)


def window_days(text: str) -> int | None:
    """The first stated window in `text`, in days (weeks x 7, months x 30), else None."""
    match = _WITHIN.search(text)
    if not match:
        return None
    groups = [g for g in match.groups() if g]
    return int(groups[0]) * _DAYS[groups[1].lower()]


def global_lab_window(bullets: list[str]) -> int | None:
    """A window stated once for all labs ("Laboratory values obtained within 14 days ...")."""
    for text in bullets:
        if _LAB_CONTEXT.search(text):
            days = window_days(text)
            if days:
                return days
    return None
