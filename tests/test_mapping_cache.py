"""Validated mappings are remembered by their bytes: the same file is not parsed and validated twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector.errors import MappingError
from connector.mapping import loader, load_mapping

SEED = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAL_CONNECTOR_CACHE_DIR", str(tmp_path / "cache"))
    loader.validated_cache._folder.cache_clear()
    yield tmp_path / "cache"
    loader.validated_cache._folder.cache_clear()


def forbid_validation(monkeypatch):
    def refuse():
        raise AssertionError("validated again")
    monkeypatch.setattr(loader, "_validator", refuse)


def test_second_load_of_the_same_bytes_skips_yaml_and_schema(cache, tmp_path, monkeypatch):
    path = tmp_path / "NCT05773274.yaml"
    shutil.copy(SEED, path)
    first = load_mapping(path)
    assert list(cache.rglob("*.json"))
    forbid_validation(monkeypatch)
    monkeypatch.setattr(loader.yaml, "load", lambda *a, **k: pytest.fail("YAML parsed again"))
    second = load_mapping(path)
    assert second == first


def test_changed_bytes_are_validated_again(cache, tmp_path, monkeypatch):
    path = tmp_path / "NCT05773274.yaml"
    shutil.copy(SEED, path)
    load_mapping(path)
    text = path.read_text()
    path.write_text(text.replace("criteria:", "criteria:", 1) + "\nunknown_key: 1\n")
    with pytest.raises(MappingError):
        load_mapping(path)
    with pytest.raises(MappingError):  # an invalid mapping is never remembered
        load_mapping(path)
    path.write_text(text + "\n# a comment changes the bytes\n")
    forbid_validation(monkeypatch)
    with pytest.raises(AssertionError, match="validated again"):
        load_mapping(path)


def test_a_damaged_cache_entry_is_ignored(cache, tmp_path):
    path = tmp_path / "NCT05773274.yaml"
    shutil.copy(SEED, path)
    first = load_mapping(path)
    for entry in cache.rglob("*.json"):
        entry.write_text("{truncated")
    assert load_mapping(path) == first
