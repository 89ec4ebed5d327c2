"""Hostile mapping files (issue 13): a YAML alias bomb, self-referring aliases, deep nesting and
huge bad values are refused quickly with one short line."""

from __future__ import annotations

import time

import pytest

from test_bad_input import seed_with
from test_screen_cli import AS_OF, EXAMPLES, run_cli

LAUGHS = "\n".join(
    ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]) + "\n"


def screen_with(monkeypatch, capsys, tmp_path, text: str):  # noqa: ANN001, ANN202
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    started = time.monotonic()
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                             "--as-of", AS_OF, "--mapping", str(bad))
    return code, out, err, time.monotonic() - started, bad


@pytest.mark.parametrize("where", ["top", "criterion"])
def test_a_yaml_alias_bomb_is_refused_with_one_short_line(monkeypatch, capsys, tmp_path, where):
    if where == "top":
        text = LAUGHS + seed_with("criteria:\n", "bomb: *l9\ncriteria:\n")
    else:  # inside a criterion's text, where the schema would print the value it rejects
        text = seed_with("\ncriteria:\n", "\n" + LAUGHS + "criteria:\n")
        text = text.replace("    kind: age\n", "    kind: age\n    bogus: *l9\n", 1)
    code, out, err, took, bad = screen_with(monkeypatch, capsys, tmp_path, text)
    assert code == 1 and out == ""
    assert err == f"error: {bad}: invalid YAML: aliases expand to more than 100000 values; refused\n"
    assert took < 5  # seconds, not minutes: nothing walked the expansion


def test_a_self_referring_alias_and_deep_nesting_are_refused(monkeypatch, capsys, tmp_path):
    code, _, err, _, bad = screen_with(monkeypatch, capsys, tmp_path, "loop: &a [*a]\n")
    assert code == 1 and err == f"error: {bad}: invalid YAML: a YAML alias refers to itself\n"
    code, _, err, _, bad = screen_with(monkeypatch, capsys, tmp_path, "x: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert code == 1 and err == f"error: {bad}: invalid YAML: nested deeper than 100 levels; refused\n"


def test_a_huge_bad_value_is_shown_as_a_short_excerpt(monkeypatch, capsys, tmp_path):
    huge = "x" * 100_000
    code, _, err, _, bad = screen_with(monkeypatch, capsys, tmp_path,
                                       seed_with("    window_days: 28\n", f"    window_days: {huge}\n"))
    assert code == 1 and err.startswith(f"error: {bad}: criterion 'hemoglobin': ")
    assert len(err) < 600 and err.rstrip().endswith("...")
