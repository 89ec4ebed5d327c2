"""Text the store must give back exactly, on SQLite and PostgreSQL: NUL (which PostgreSQL
refuses in text and jsonb) and the escape character used to store it there."""

from __future__ import annotations

import json

import pytest

from connector.scheduled import records
from connector.store.pgtext import ESC, escape_text, unescape_text
from test_hostile_files import run_folder
from test_run_files import TRIAL, statuses, write_cohort

AWKWARD = ["a\x00b", "\x00", ESC, ESC + "0", ESC + "1\x00", "\x00" + ESC + "0" + ESC, "plain", "", "é\x00ü"]


@pytest.mark.parametrize("text", AWKWARD)
def test_escaping_is_reversible_and_leaves_no_nul(text):
    assert "\x00" not in escape_text(text)
    assert unescape_text(escape_text(text)) == text


def test_nul_in_ids_and_evidence_round_trips_on_both_backends(store, tmp_path):
    clean_folder, folder = tmp_path / "clean", tmp_path / "nul"
    write_cohort(clean_folder)
    run_folder(store, clean_folder)
    clean = statuses(store)
    clean_results = {r["patient_id"]: r["result"] for r in records.latest_results(store, TRIAL)}

    prefix = "x\x00" + ESC + "0"  # a NUL, and what an escaped NUL looks like
    ids = [prefix + pid[3:] for pid in write_cohort(folder, prefix="QQQ")]
    for file in folder.iterdir():  # the prefix as JSON writes it: x\u0000\ue0000
        file.write_text(file.read_text().replace("QQQ", json.dumps(prefix)[1:-1]))
    outcome = run_folder(store, folder)
    assert outcome.run.status == "done"
    got = statuses(store)
    assert {pid: got[pid] for pid in ids} == {prefix + pid: status for pid, status in clean.items()}
    stored = {r["patient_id"]: r["result"] for r in records.latest_results(store, TRIAL) if r["patient_id"] in ids}
    assert "\x00" in stored[prefix + "net01"]["patient"]  # the result JSON holds the NUL too
    for pid, result in clean_results.items():  # the same text out: only the prefix differs
        assert json.dumps(stored[prefix + pid]).replace(json.dumps(prefix)[1:-1], "") == json.dumps(result)
    row = store.fetchone("SELECT patient_id FROM patient_results WHERE patient_id = ?", (prefix + "net04",))
    assert row == {"patient_id": prefix + "net04"}
