"""Registry markdown -> plain text the patterns can read.

The registry escapes markdown (`\\>`, `=\\<`, `\\[`), writes comparators as symbols (`≥`, `≤`,
`=<`) and units with superscripts (`mm³`, `10⁹/L`); the drafter's patterns are written once
against a plain ASCII form. The verbatim bullet is kept elsewhere for the mapping's `text`.
"""

from __future__ import annotations

import re
import unicodedata

_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>=^|~])")
_REPLACEMENTS = (
    ("≥", ">="), ("≤", "<="), ("⩾", ">="), ("⩽", "<="), ("＞", ">"), ("＜", "<"),
    ("=<", "<="), ("=>", ">="), ("<=/", "<="), ("µ", "u"), ("μ", "u"), ("×", "x"),
    ("³", "3"), ("²", "2"), ("⁹", "9"), ("¹", "1"), ("⁰", "0"), ("–", "-"), ("—", "-"), ("−", "-"),
    ("\u00a0", " "), ("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'),
)
_SPACES = re.compile(r"[ \t]+")


def clean(text: str) -> str:
    """Unescape markdown and fold symbols to ASCII (`\\>=` -> `>=`, `≤` -> `<=`, `mm³` -> `mm3`)."""
    text = _ESCAPE.sub(r"\1", text)
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    text = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" ", text).strip()


def ascii_share(text: str) -> float:
    """Share of letters that are ASCII: a low share means a language the patterns were not written for."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    return sum(1 for c in letters if c.isascii()) / len(letters)
