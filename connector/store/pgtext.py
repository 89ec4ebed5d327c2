"""Text that PostgreSQL cannot store as it is: the NUL character.

PostgreSQL refuses U+0000 in `text` and in `jsonb` (SQLite stores it), so a `\\u0000` in a
patient id or in evidence copied from a FHIR resource would fail every run at that patient.
On PostgreSQL connections every string is therefore escaped on the way in and unescaped on the
way out, reversibly: NUL becomes ESC+"0" and ESC itself (a private-use character) ESC+"1".
Strings holding neither, nearly all of them, pass unchanged, so the same text comes back on
both backends and plain SQL comparisons keep working.
"""

from __future__ import annotations

import json
import re
from typing import Any

ESC = "\ue000"
_ESC_BYTES = ESC.encode("utf-8")
_ESCAPED = re.compile(ESC + "([01])")
_UNESCAPE = {"0": "\x00", "1": ESC}


def escape_text(text: str) -> str:
    """`text` as PostgreSQL can hold it (unchanged unless it holds NUL or ESC)."""
    if "\x00" not in text and ESC not in text:
        return text
    return text.replace(ESC, ESC + "1").replace("\x00", ESC + "0")


def unescape_text(text: str) -> str:
    """The original of an `escape_text` result."""
    if ESC not in text:
        return text
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1)], text)


def map_strings(value: Any, change: Any) -> Any:
    """`value` (decoded JSON) with `change` applied to every string, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {change(k) if isinstance(k, str) else k: map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, change) for v in value]
    return value


def json_text(value: Any) -> str:
    """JSON for a jsonb column: NUL and ESC in any string escaped (see the module docstring)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if "\\u0000" in text or ESC in text:
        text = json.dumps(map_strings(value, escape_text), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text


def load_json(data: bytes | str) -> Any:
    """A jsonb value read back, unescaped."""
    value = json.loads(data)
    has_escape = (_ESC_BYTES in data) if isinstance(data, bytes) else (ESC in data)
    return map_strings(value, unescape_text) if has_escape else value


def install(connection: Any) -> None:
    """Make a psycopg connection escape strings sent and unescape text and jsonb received."""
    from psycopg.types.json import set_json_loads
    from psycopg.types.string import StrBinaryDumper, StrDumper, StrDumperUnknown, TextBinaryLoader, TextLoader

    class EscapingDumper(StrDumperUnknown):
        def dump(self, obj: str) -> bytes:
            return super().dump(escape_text(obj))

    class EscapingTextDumper(StrDumper):
        def dump(self, obj: str) -> bytes:
            return super().dump(escape_text(obj))

    class EscapingBinaryDumper(StrBinaryDumper):
        def dump(self, obj: str) -> bytes:
            return super().dump(escape_text(obj))

    class UnescapingLoader(TextLoader):
        def load(self, data: Any) -> str:
            return unescape_text(super().load(data))

    class UnescapingBinaryLoader(TextBinaryLoader):
        def load(self, data: Any) -> str:
            return unescape_text(super().load(data))

    adapters = connection.adapters
    adapters.register_dumper(str, EscapingDumper)
    adapters.register_dumper(str, EscapingTextDumper)
    adapters.register_dumper(str, EscapingBinaryDumper)
    adapters.register_dumper(str, EscapingDumper)  # the last registered is the default for `%s`
    for name in ("text", "varchar", "bpchar", "name"):
        adapters.register_loader(name, UnescapingLoader)
        adapters.register_loader(name, UnescapingBinaryLoader)
    set_json_loads(load_json, context=connection)
