"""Stored and hashed JSON through orjson: same meaning always, same bytes where a hash depends on it."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from connector.jsontext import canonical, dumps_sorted, parse
from connector.registry.normalise import normalise_study
from connector.registry.versions import content_sha256

STUDIES = sorted((Path(__file__).parent / "fixtures" / "ctgov" / "studies").glob("*.json"))


def stdlib(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def test_registry_hashes_are_those_the_stdlib_gave():
    assert STUDIES
    for path in STUDIES:
        record = normalise_study(json.loads(path.read_text(encoding="utf-8")))
        payload = {"protocolSection": record.get("protocol_section") or {},
                   "hasResults": bool(record.get("has_results"))}
        assert canonical(payload) == stdlib(payload), path.name
        assert canonical(record) == stdlib(record), path.name
        assert content_sha256(record) == __import__("hashlib").sha256(stdlib(payload).encode()).hexdigest()
        assert parse(dumps_sorted(record)) == record


def floats(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        value = rng.choice([1.0, rng.random() * 10, round(rng.random() * 10, 2)]) * 10.0 ** rng.randint(-320, 307)
        if math.isfinite(value):
            out.append(value * rng.choice([1, -1]))
    return out


def test_floats_of_every_magnitude_are_spelled_as_the_stdlib_does():
    values = floats(20_000, 7)
    for value in values:  # each alone: one exponent in a list would send the whole list to the stdlib
        assert canonical({"v": [value, "text 2e5"]}) == stdlib({"v": [value, "text 2e5"]}), value


@pytest.mark.parametrize("value", [
    {"b": 1, "a": {"d": [1, 2.5, None, True], "c": "é \u2028 \x01 \"q\""}},
    {"big": 2**70},             # beyond 64 bits: orjson refuses, the stdlib writes it
    {"x": 0.0001, "y": 1e-05, "z": 1e16},
    {10: "int keys sort as numbers", 2: "x"},
    [],
    "plain",
])
def test_awkward_values(value):
    assert canonical(value) == stdlib(value)
    assert parse(dumps_sorted(value)) == json.loads(stdlib(value))


def test_parse_reads_what_the_stdlib_wrote_before():
    assert parse('{"a": NaN}')["a"] != parse('{"a": NaN}')["a"]  # NaN: the stdlib's reading
    assert parse(b'{"a": [1, 2]}') == {"a": [1, 2]}
