"""Warnings that would otherwise repeat for every worker, patient or client of one process
(TLS verification off, a server without a CapabilityStatement, batch refused): said once."""

from __future__ import annotations

import logging
import threading

_said: set[tuple[str, str]] = set()
_lock = threading.Lock()


def warn_once(logger: logging.Logger, message: str, *args: object) -> None:
    """logger.warning(message, *args), unless this process has already said exactly that."""
    key = (logger.name, message % args if args else message)
    with _lock:
        if key in _said:
            return
        _said.add(key)
    logger.warning(message, *args)
