"""Which bullets of a trial's registry eligibility text a mapping accounts for.

A criterion accounts for a bullet when one of its `text` quotes appears in the bullet (registry
markdown escapes such as `\\>` removed, whitespace folded, case kept). Quotes of structured
registry fields (`minimumAge: 18 Years`) stand for no bullet. A mapping that leaves bullets
unaccounted for screens only part of the trial: every screen says so (see `mappings check`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connector.mapping.model import Mapping
from connector.registry.eligibility import split_criteria

_STRUCTURED_FIELD = re.compile(r"^[a-z][A-Za-z]+: ")  # minimumAge:, maximumAge:, sex:, healthyVolunteers:


def unescape(text: str) -> str:
    """Registry markdown escapes (`\\>`, `=\\<`, `10\\^9`) removed, whitespace folded."""
    return re.sub(r"\s+", " ", text.replace("\\", "")).strip()


@dataclass(frozen=True)
class Bullet:
    section: str  # inclusion | exclusion
    text: str


@dataclass
class Coverage:
    bullets: list[Bullet] = field(default_factory=list)
    uncovered: list[Bullet] = field(default_factory=list)
    not_in_text: list[str] = field(default_factory=list)  # criterion ids whose quotes the text does not hold

    @property
    def complete(self) -> bool:
        return not self.uncovered

    def summary(self) -> str:
        covered = len(self.bullets) - len(self.uncovered)
        return f"{covered} of {len(self.bullets)} registry bullets accounted for"


def mapping_coverage(mapping: Mapping, criteria_text: str) -> Coverage:
    """The coverage of `mapping` over the registry eligibility text it should implement."""
    split = split_criteria(criteria_text)
    bullets = [Bullet("inclusion", unescape(t)) for t in split.inclusion] + \
              [Bullet("exclusion", unescape(t)) for t in split.exclusion]
    registry = unescape(criteria_text)
    quotes: list[str] = []
    not_in_text: list[str] = []
    for criterion in mapping.criteria:
        for text in criterion.texts:
            if _STRUCTURED_FIELD.match(text):
                continue
            quote = unescape(text)
            quotes.append(quote)
            if quote not in registry and criterion.id not in not_in_text:
                not_in_text.append(criterion.id)
    uncovered = [b for b in bullets if not any(q and q in b.text for q in quotes)]
    return Coverage(bullets, uncovered, not_in_text)
