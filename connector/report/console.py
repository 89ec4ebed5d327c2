"""Where terminal output goes: its width, whether it takes colour, which characters it can encode.

A Windows console (cp1252), a cron mail (ascii) or `PYTHONIOENCODING=ascii` cannot encode
`✓`, `≥` or `10⁹/L`: writing them would crash the command after the work is done. `fit`
replaces only the characters the stream cannot encode, with the ASCII people would type
(`+`, `>=`, `10^9/L`, `u`), so UTF-8 terminals keep the nicer form. Colour only on a TTY,
and never with NO_COLOR set (https://no-color.org) or TERM=dumb.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any, TextIO

import click

DEFAULT_WIDTH = 100
MIN_WIDTH = 40
ASCII_FOR = {
    "✓": "+", "✗": "x", "≥": ">=", "≤": "<=", "×": "x", "→": "->", "…": "...", "µ": "u", "μ": "u",
    "°": "deg ", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "·": ".", "±": "+/-",
}
SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"
_SUPERSCRIPT_RUN = re.compile(f"[{SUPERSCRIPT_DIGITS}]+")
_FROM_SUPERSCRIPT = str.maketrans(SUPERSCRIPT_DIGITS, "0123456789-")


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def fit(text: str, encoding: str) -> str:
    """`text` with every character `encoding` cannot hold replaced by its ASCII spelling."""
    if _encodable(text, encoding):
        return text
    text = _SUPERSCRIPT_RUN.sub(
        lambda m: m.group(0) if _encodable(m.group(0), encoding) else "^" + m.group(0).translate(_FROM_SUPERSCRIPT),
        text)
    out = []
    for char in text:
        if _encodable(char, encoding):
            out.append(char)
            continue
        replacement = ASCII_FOR.get(char)
        if replacement is None:  # accents and compatibility forms: é -> e, ﬁ -> fi
            decomposed = unicodedata.normalize("NFKD", char)
            replacement = "".join(c for c in decomposed if not unicodedata.combining(c))
        out.append(replacement if replacement and _encodable(replacement, encoding) else "?")
    return "".join(out)


def stream_encoding(stream: Any) -> str:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return "ascii"


@dataclass(frozen=True)
class Console:
    """How to write for one output stream (stdout unless told otherwise)."""

    width: int = DEFAULT_WIDTH
    colour: bool = False
    encoding: str = "utf-8"

    @classmethod
    def detect(cls, stream: TextIO | None = None) -> "Console":
        stream = stream if stream is not None else sys.stdout
        return cls(max(MIN_WIDTH, terminal_width(stream)), wants_colour(stream), stream_encoding(stream))

    def style(self, text: str, **styles: Any) -> str:
        return click.style(text, **styles) if self.colour else text

    def fit(self, text: str) -> str:
        return fit(text, self.encoding)

    def can_encode(self, text: str) -> bool:
        return _encodable(text, self.encoding)

    def json(self, data: Any) -> str:
        """Indented JSON; `\\uXXXX` escapes (the same data) when the stream cannot encode the text."""
        text = json.dumps(data, indent=2, ensure_ascii=False)
        return text if self.can_encode(text) else json.dumps(data, indent=2)

    def echo(self, text: str, err: bool = False, nl: bool = True) -> None:
        click.echo(self.fit(text), err=err, nl=nl, color=self.colour)


def terminal_width(stream: Any) -> int:
    """COLUMNS when set; else the width of the terminal `stream` is; else (a pipe, a file) 100."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        pass
    return DEFAULT_WIDTH


def wants_colour(stream: Any) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
