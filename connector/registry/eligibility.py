"""Split a registry eligibility text (markdown) into inclusion and exclusion items.

The text itself stays verbatim in the record; the items are a reading aid and a checklist for
mappings ("is every bullet accounted for?"). Rules, from the shapes real records use:

- A non-bullet line ending in `:` that mentions exclusion/inclusion switches section
  ("Inclusion Criteria:", "Key Exclusion Criteria:", "Exclusion criteria:"). Anything before
  an exclusion heading is inclusion (e.g. "DISEASE CHARACTERISTICS:").
- Other non-bullet lines ending in `:` are group labels ("For parent participants:"); they
  are not items.
- A top-level bullet (`*`, `-`, `+`, `1.`, `1)`) starts an item; indented bullets and
  continuation lines belong to the item above (joined with newlines, indentation removed),
  so "provided that: 1. ... 2. ..." stays one criterion.
- A plain paragraph outside a bullet is an item of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_BULLET = re.compile(r"^(?:[*+-]|\d{1,3}[.)])\s+")
_EXCLUSION = re.compile(r"\bexclu", re.IGNORECASE)
_INCLUSION = re.compile(r"\binclu|\beligib|characteristics", re.IGNORECASE)


@dataclass
class SplitCriteria:
    inclusion: list[str] = field(default_factory=list)
    exclusion: list[str] = field(default_factory=list)


def split_criteria(text: str | None) -> SplitCriteria:
    """Inclusion and exclusion items of an eligibility text (empty lists for no text)."""
    result = SplitCriteria()
    if not text:
        return result
    section = result.inclusion
    current: list[str] | None = None  # lines of the item being built

    def close() -> None:
        nonlocal current
        if current:
            section.append("\n".join(current).strip())
        current = None

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        indented = line[:1].isspace()
        if indented and current is not None:
            current.append(stripped)
            continue
        bullet = _BULLET.match(stripped)
        if bullet:
            close()
            current = [stripped[bullet.end():]]
            continue
        if stripped.endswith(":") and len(stripped) < 120:
            close()
            if _EXCLUSION.search(stripped):
                section = result.exclusion
            elif _INCLUSION.search(stripped) and section is not result.exclusion:
                section = result.inclusion
            continue
        close()
        current = [stripped]
    close()
    return result
