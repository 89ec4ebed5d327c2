"""JSON text for what is stored and hashed, with orjson (~10x the stdlib's encoder).

Results and registry records are written to the store as compact JSON with sorted keys
(encoding was 57% of registry ingest), and registry records are hashed to tell a changed
version from an unchanged one, so the hash must not change with the encoder:

- `dumps_sorted`: orjson with OPT_SORT_KEYS, for stored JSON. Same meaning as the stdlib's
  output; the bytes differ only in how some floats are spelled (1.5e-7 vs 1.5e-07).
- `canonical`: exactly `json.dumps(value, ensure_ascii=False, sort_keys=True,
  separators=(",", ":"))`, byte for byte, for hashing: orjson's output unless it may hold a
  float spelled otherwise (or orjson refuses the value: integers beyond 64 bits, lone
  surrogates, keys that are not strings), which go through the stdlib. (NaN and infinities, which orjson writes as
  null, are not JSON and never come from a parsed API response or FHIR resource.) A hash stored before orjson was used still matches, so no
  registry record is re-versioned after an upgrade.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS  # non-str keys make orjson raise: the stdlib then sorts them its way
# Where orjson may spell a float otherwise than the stdlib: with an exponent (orjson always
# writes `e-` or `e+` after a digit: 1.5e-7 vs 1.5e-07), or as a decimal below 1e-4 (the stdlib
# writes an exponent). A match inside a string sends that value to the stdlib: only slower.
# (Searched from the literal `e`: 4x faster than a pattern starting with a digit class.)
_EXPONENT = re.compile(rb"e[-+]\d")
_SMALL_DECIMAL = re.compile(rb"[:,\[]-?0\.0000")
_DIGITS = frozenset(b"0123456789")


def _may_differ(data: bytes) -> bool:
    if any(data[m.start() - 1] in _DIGITS for m in _EXPONENT.finditer(data)):
        return True
    return b"0.0000" in data and _SMALL_DECIMAL.search(data) is not None


def _stdlib(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def dumps_sorted(value: Any) -> str:
    """Compact JSON with sorted keys (see the module docstring)."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return _stdlib(value)


def canonical(value: Any) -> str:
    """What `json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))` returns."""
    try:
        data = orjson.dumps(value, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return _stdlib(value)
    if _may_differ(data):
        return _stdlib(value)
    return data.decode("utf-8")


def parse(text: str | bytes) -> Any:
    """JSON text -> Python (orjson; the stdlib for what orjson refuses, such as NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
