"""Assertion context (negated / historical / hypothetical) from medspaCy.

Why a library: "No prior chemotherapy", "must not have", "history of ... is allowed" and
"if ... then" are what the n2c2 systems got wrong most; medspaCy's ConText implements the
published NegEx/ConText trigger rules and PyRuSH the clinical sentence splitter, both offline.
The pipeline is built once, lazily (~1.5 s), and only for the phrases the drafter asks about.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_lock = threading.Lock()


@dataclass(frozen=True)
class Finding:
    """One phrase found in a text, with its ConText assertions."""

    label: str
    text: str
    start: int  # character offsets in the text given
    end: int
    negated: bool
    historical: bool
    hypothetical: bool
    sentence: str


def _load() -> Any:
    from loguru import logger

    logger.disable("PyRuSH")  # its per-token debug log is not ours to print
    # medspaCy's section/pre-processing matchers are empty here by design; spaCy warns on every call
    warnings.filterwarnings("ignore", message=r"\[W036\]", category=UserWarning)
    import medspacy

    return medspacy.load(medspacy_enable=["medspacy_pyrush", "medspacy_target_matcher", "medspacy_context"])


@lru_cache(maxsize=8)
def _nlp_for(rules: tuple[tuple[str, tuple[str, ...]], ...]) -> Any:
    """A pipeline whose target matcher knows exactly these (label, phrases) rules."""
    from medspacy.target_matcher import TargetRule

    nlp = _load()
    nlp.get_pipe("medspacy_target_matcher").add(
        [TargetRule(phrase, label) for label, phrases in rules for phrase in phrases])
    return nlp


def find(text: str, rules: dict[str, list[str]]) -> list[Finding]:
    """Every phrase of `rules` ({label: [phrases]}) in `text`, with its context."""
    lowered = text.lower()
    if not any(phrase.lower() in lowered for phrases in rules.values() for phrase in phrases):
        return []  # the sentence splitter is the slow part: run it only where a phrase occurs
    key = tuple(sorted((label, tuple(phrases)) for label, phrases in rules.items()))
    with _lock:
        nlp = _nlp_for(key)
        doc = nlp(text)
    return [Finding(ent.label_, ent.text, ent.start_char, ent.end_char, bool(ent._.is_negated),
                    bool(ent._.is_historical), bool(ent._.is_hypothetical), ent.sent.text)
            for ent in doc.ents]
