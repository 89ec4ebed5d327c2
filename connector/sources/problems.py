"""A bounded record of problems met while reading a source.

A hostile or broken export can hold millions of bad lines; keeping every message would take
gigabytes. `ProblemLog` keeps an exact count but only the first `keep` messages, and behaves
enough like a list (`append`, `extend`, `len`, iteration, slicing, `in`) for the callers that
used one before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import overload

from connector.errors import short

DEFAULT_KEEP = 200


class ProblemLog:
    """Counts every problem; keeps the first `keep` messages (each cut to a short length)."""

    def __init__(self, keep: int = DEFAULT_KEEP):
        self.keep = keep
        self.count = 0
        self._messages: list[str] = []

    def append(self, message: str) -> None:
        self.count += 1
        if len(self._messages) < self.keep:
            self._messages.append(short(message))

    def extend(self, messages: Iterable[str]) -> None:
        for message in messages:
            self.append(message)

    @property
    def dropped(self) -> int:
        """Problems counted but whose message was not kept."""
        return self.count - len(self._messages)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._messages))

    def __contains__(self, message: object) -> bool:
        return message in self._messages

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._messages[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.dropped == 0 and self._messages == other
        return NotImplemented

    def __repr__(self) -> str:
        return f"ProblemLog(count={self.count}, kept={len(self._messages)})"
