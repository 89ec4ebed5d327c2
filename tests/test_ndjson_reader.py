"""The block NDJSON line reader gives what reading line by line gives, size cap included."""

from __future__ import annotations

import io
import random

import pytest

from connector.sources import files


def line_by_line(data: bytes, max_bytes: int) -> list[tuple[int, bytes, bool]]:
    """The reference: readline, a line longer than max_bytes cut to its head."""
    out = []
    for lineno, line in enumerate(io.BytesIO(data), start=1):
        body = line[:-1] if line.endswith(b"\n") else line
        out.append((lineno, body if len(body) <= max_bytes else body[:files._HINT_BYTES], len(body) <= max_bytes))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_blocks_split_like_lines(seed, monkeypatch):
    rng = random.Random(seed)
    monkeypatch.setattr(files, "_READ_BLOCK", rng.choice([1, 7, 64, 1000]))
    monkeypatch.setattr(files, "_HINT_BYTES", 2)  # the head kept of a long line (<= max_bytes)
    max_bytes = rng.choice([3, 20, 50])
    lines = [bytes(rng.choice(b'ab{}"\r ') for _ in range(rng.choice([0, 1, max_bytes - 1, max_bytes, max_bytes + 1,
                                                                       rng.randint(0, 3 * max_bytes)])))
             for _ in range(rng.randint(0, 40))]
    data = b"\n".join(lines) + rng.choice([b"", b"\n"])
    assert list(files.ndjson_lines(io.BytesIO(data), max_bytes)) == line_by_line(data, max_bytes)
