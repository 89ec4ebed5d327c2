"""Versioned schema migrations, discovered from this package and applied in order on open.

How to add one (issue 4: runs, patient results, status history, run lock):

1. Create `connector/store/migrations/mNNNN_short_name.py`, NNNN = the next number (no gaps,
   never renumber or edit a migration that has shipped: write a new one instead).
2. In it define `def upgrade(d: Dialect) -> list[str]`: the DDL statements, written once for
   both backends with `{pk}` (auto-increment integer primary key), `{json}` (JSON document
   column: TEXT on SQLite, JSONB on PostgreSQL) and `{bigint}` filled by `d.ddl(...)`; branch on
   `d.name` only where the two databases really differ. Keep timestamps as ISO-8601 UTC TEXT
   (`connector.store.utc_now()`), which sorts correctly and reads the same on both.
3. That is all: `open_store` applies every migration whose number is above the store's
   `schema_version`, each in its own transaction together with its `schema_version` row, under
   a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock per schema), so two processes
   opening a store at once apply each migration exactly once. A store whose version is newer
   than the code refuses to open rather than guessing.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass

from connector.store.dialect import Dialect

_NAME = re.compile(r"^m(\d{4})_(\w+)$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    upgrade: Callable[[Dialect], list[str]]


def discover() -> list[Migration]:
    """All migration modules of this package, by number; fails loudly on gaps or duplicates."""
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.match(info.name)
        if not match:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(version=int(match.group(1)), name=match.group(2), upgrade=module.upgrade))
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise RuntimeError(f"store migrations must be numbered 1..n without gaps, found {[m.version for m in found]}")
    return found
