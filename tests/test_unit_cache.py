"""Unit answers persisted between processes: pint is loaded only for a question never asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector import unit_cache
from connector.units import UnitError, _computed_factor, conversion_factor, convert, is_known_unit

PROBE = """
import json, sys
from connector.units import UnitError, convert, is_known_unit
out = {}
try:
    out["value"] = convert(float(sys.argv[1]), sys.argv[2], sys.argv[3])
except UnitError as exc:
    out["refused"] = str(exc)
out["known"] = is_known_unit(sys.argv[2])
out["pint_loaded"] = "pint" in sys.modules
print(json.dumps(out))
"""


def probe(cache: Path, value: float, source: str, target: str) -> dict:
    env = {**os.environ, "TRIAL_CONNECTOR_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(value), source, target], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def test_a_second_process_answers_from_the_file_without_pint(tmp_path):
    first = probe(tmp_path, 17.1, "umol/L", "mg/dL")
    second = probe(tmp_path, 17.1, "umol/L", "mg/dL")
    assert first["pint_loaded"] and not second["pint_loaded"]
    assert second == {**first, "pint_loaded": False}
    assert second["known"] is True
    new_pair = probe(tmp_path, 8.0, "g/dL", "g/L")
    assert new_pair["value"] == 80.0 and new_pair["pint_loaded"]  # a pair never seen loads pint once


def test_refusals_are_remembered_with_their_message(tmp_path):
    first = probe(tmp_path, 1.0, "mg/dL", "kg")
    second = probe(tmp_path, 1.0, "mg/dL", "kg")
    assert "cannot convert" in first["refused"] and second["refused"] == first["refused"]
    assert not second["pint_loaded"]
    unknown = probe(tmp_path, 1.0, "furlongs-ish", "kg")
    again = probe(tmp_path, 1.0, "furlongs-ish", "kg")
    assert unknown["known"] is False and again["known"] is False and not again["pint_loaded"]


@pytest.mark.parametrize("source, target, molar_mass", [
    ("g/dL", "g/L", None), ("/uL", "10*9/L", None), ("umol/L", "mg/dL", 584.66), ("mmol/L", "mg/dL", 113.12),
    ("mCi", "MBq", None), ("[lb_av]", "kg", None),
])
def test_cached_factor_equals_the_computed_one(source, target, molar_mass):
    assert conversion_factor(source, target, molar_mass) == _computed_factor(source, target, molar_mass)


def test_a_corrupt_or_unwritable_cache_never_changes_an_answer(tmp_path, monkeypatch):
    path = tmp_path / "answers.json"
    path.write_text("{not json", encoding="utf-8")
    cache = unit_cache.AnswerCache(path)
    assert cache.answer(("factor", "g/dL", "g/L", None), lambda: _computed_factor("g/dL", "g/L", None),
                        UnitError) == 10.0
    assert json.loads(path.read_text())  # rewritten whole
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    cache = unit_cache.AnswerCache(blocked / "answers.json")
    assert cache.answer(("k",), lambda: 2.5, UnitError) == 2.5
    with pytest.raises(UnitError, match="nope"):
        cache.answer(("bad",), lambda: (_ for _ in ()).throw(UnitError("nope")), UnitError)
    with pytest.raises(UnitError, match="nope"):  # the refusal is remembered in memory
        cache.answer(("bad",), lambda: 1.0, UnitError)


def test_answers_of_other_conversion_rules_are_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAL_CONNECTOR_CACHE_DIR", str(tmp_path))
    today = unit_cache.AnswerCache().path
    rules = tmp_path / "units.py"
    rules.write_text("# other rules\n")
    monkeypatch.setattr(unit_cache, "_RULES_FILE", rules)
    assert unit_cache.AnswerCache().path != today and unit_cache.AnswerCache().path.parent == tmp_path


def test_public_behaviour_is_unchanged():
    assert convert(1000, "/uL", "10*9/L") == 1.0
    assert is_known_unit("mL/min/{1.73_m2}") and not is_known_unit("not a unit")
    with pytest.raises(UnitError):
        convert(1.0, "mL/min/{1.73_m2}", "mL/min")
