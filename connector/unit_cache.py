"""Unit answers remembered across runs, so pint/ucumvert is loaded only for a question never asked.

Building the ucumvert/pint registry takes ~0.6 s and was most of a one-patient screen. The
answers a screen needs are few and fixed (a conversion factor per unit pair, "is this a UCUM
unit" per mapping unit), so each one is computed once and kept in a small JSON file:

- where: `$TRIAL_CONNECTOR_CACHE_DIR`, else `$XDG_CACHE_HOME/trial-connector`, else
  `~/.cache/trial-connector`; an unwritable place just means answers live for one process;
- invalidation: the file name carries a digest of connector/units.py, so any change to the
  conversion rules (a new alias, a new analyte) starts a fresh file;
- refusals (UnitError) are remembered too, with their message, and raised again as UnitError;
- writes replace the file atomically after merging what another process added meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 1
_RULES_FILE = Path(__file__).with_name("units.py")


def cache_dir() -> Path:
    """Where persisted caches go (see the module docstring)."""
    explicit = os.environ.get("TRIAL_CONNECTOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trial-connector"


def _rules_digest() -> str:
    try:
        rules = _RULES_FILE.read_bytes()
    except OSError:
        rules = b""
    return hashlib.sha256(rules + f"format {FORMAT}".encode()).hexdigest()[:16]


class AnswerCache:
    """Answers (a float, or a refusal message) keyed by a tuple of strings/numbers/None."""

    def __init__(self, path: Path | None = None):
        self._path = path
        self._answers: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = cache_dir() / f"unit-answers-{_rules_digest()}.json"
        return self._path

    def answer(self, key: tuple[Any, ...], compute: Callable[[], float], refusal: type[Exception]) -> float:
        """The remembered answer for `key`, else `compute()`'s (a `refusal` it raises is remembered)."""
        text = json.dumps(key)
        found = self._loaded().get(text)
        if found is None:
            try:
                found = {"value": compute()}
            except refusal as exc:
                found = {"refused": str(exc)}
            self._remember(text, found)
        if "refused" in found:
            raise refusal(found["refused"])
        return float(found["value"])

    def _loaded(self) -> dict[str, dict[str, Any]]:
        if self._answers is None:
            with self._lock:
                if self._answers is None:
                    self._answers = self._read()
        return self._answers

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict) and ("value" in v or "refused" in v)}

    def _remember(self, key: str, found: dict[str, Any]) -> None:
        with self._lock:
            answers = self._loaded()
            answers[key] = found
            merged = {**self._read(), **answers}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".unit-answers-")
            except OSError as exc:
                log.debug("unit answers not persisted (%s): kept for this process only", exc.__class__.__name__)
                return
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump(merged, out, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as exc:
                os.unlink(tmp)
                log.debug("unit answers not persisted (%s): kept for this process only", exc.__class__.__name__)


answers = AnswerCache()
