"""Mapping discovery: explicit sources in order, bundled last, never the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import MappingError
from connector.mapping.catalog import (BUNDLED, CONFIG, DIR, FILE, MappingSources, available_mappings,
                                       check_explicit_files, file_sha256, load_resolved, resolve_mapping)

SEED = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"


def copy_seed(folder: Path, name: str = "NCT05773274.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_text(SEED.read_text(encoding="utf-8") + "\n# local copy\n", encoding="utf-8")
    return target


def test_bundled_mapping_is_found_last_and_named_with_its_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    entry = resolve_mapping("nct5773274")  # any accepted spelling of the id
    assert (entry.trial, entry.source, entry.path.resolve()) == ("NCT05773274", BUNDLED, SEED.resolve())
    assert entry.sha256 == file_sha256(SEED)


def test_the_working_directory_is_never_searched(tmp_path, monkeypatch):
    copy_seed(tmp_path / "mappings")
    monkeypatch.chdir(tmp_path)
    assert resolve_mapping("NCT05773274").source == BUNDLED


def test_precedence_file_then_dirs_then_config_then_bundled(tmp_path):
    first_dir, second_dir, config_dir = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    in_config = copy_seed(config_dir)
    assert resolve_mapping("NCT05773274", MappingSources(config_dir=config_dir)).path == in_config
    in_second = copy_seed(second_dir, "net-retreat.yml")  # found by its `trial` key, not its name
    sources = MappingSources(dirs=(first_dir, second_dir), config_dir=config_dir)
    first_dir.mkdir()
    assert (resolve_mapping("NCT05773274", sources).path, resolve_mapping("NCT05773274", sources).source) == \
        (in_second, DIR)
    explicit = copy_seed(tmp_path / "x", "mine.yaml")
    sources = MappingSources(files=(explicit,), dirs=(first_dir, second_dir), config_dir=config_dir)
    assert resolve_mapping("NCT05773274", sources).source == FILE
    kinds = [e.source for e in available_mappings(sources)]
    bundled = len(list(SEED.parent.glob("*.yaml")))  # the seed trial and the portfolio's others
    assert kinds == [FILE, DIR, CONFIG] + [BUNDLED] * bundled


def test_load_resolved_validates(tmp_path):
    entry, mapping = load_resolved("NCT05773274", MappingSources(dirs=(SEED.parent,)))
    assert mapping.trial == entry.trial == "NCT05773274"


def test_missing_sources_and_trials_are_errors_naming_where(tmp_path):
    with pytest.raises(MappingError, match=r"no mapping for NCT09999999 in .*bundled"):
        resolve_mapping("NCT09999999")
    with pytest.raises(MappingError, match="mapping file .*nope.yaml not found"):
        resolve_mapping("NCT05773274", MappingSources(files=(tmp_path / "nope.yaml",)))
    with pytest.raises(MappingError, match=r"mapping folder .*nothere \(--mappings\) not found"):
        resolve_mapping("NCT05773274", MappingSources(dirs=(tmp_path / "nothere",)))


def test_broken_file_in_a_folder_is_listed_not_fatal(tmp_path):
    copy_seed(tmp_path)
    (tmp_path / "broken.yaml").write_text("trial: [unclosed\n", encoding="utf-8")
    entries = available_mappings(MappingSources(dirs=(tmp_path,), bundled=False))
    problems = {e.path.name: e.problem for e in entries}
    assert problems["NCT05773274.yaml"] is None
    assert "broken.yaml: invalid YAML: line 2" in problems["broken.yaml"]
    assert resolve_mapping("NCT05773274", MappingSources(dirs=(tmp_path,))).path.name == "NCT05773274.yaml"


def test_an_explicit_file_for_another_trial_is_a_mistake(tmp_path):
    sources = MappingSources(files=(copy_seed(tmp_path),))
    check_explicit_files(["NCT05773274"], sources)
    with pytest.raises(MappingError, match="--mapping .* maps NCT05773274, not NCT01234567"):
        check_explicit_files(["NCT01234567"], sources)
