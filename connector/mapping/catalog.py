"""Which mapping file screens a trial: explicit sources first, the bundled mappings last.

Order (the first file that maps the trial wins):
1. `--mapping FILE` (repeatable),
2. `--mappings DIR` (repeatable, in the order given),
3. the config file's `[mappings] dir` (relative to the config file, not the working directory),
4. the mappings shipped with trial-connector.

The working directory is never searched implicitly: a cron job started from another directory
must not silently pick up another mapping. Every entry carries the SHA-256 of the file's bytes,
which runs store with each result and print in their summaries.

    sources = MappingSources(dirs=(Path("/etc/trial-connector/mappings"),))
    entry, mapping = load_resolved("NCT05773274", sources)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.errors import MappingError
from connector.mapping.loader import display_name, load_mapping, read_mapping_document
from connector.mapping.model import Mapping
from connector.registry.ids import InvalidNctId, normalise_nct_id
from connector.resources import data_dir

FILE, DIR, CONFIG, BUNDLED = "--mapping", "--mappings", "config", "bundled"
MAPPING_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class MappingEntry:
    """One mapping file and where it was found. `problem` says why it cannot be used (else None)."""

    trial: str | None
    path: Path
    source: str  # FILE | DIR | CONFIG | BUNDLED
    sha256: str
    problem: str | None = None

    @property
    def name(self) -> str:
        return display_name(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.trial, "file": self.name, "source": self.source, "sha256": self.sha256,
                "problem": self.problem}


@dataclass(frozen=True)
class MappingSources:
    """The places to look for mappings, in precedence order (see the module docstring)."""

    files: tuple[Path, ...] = ()
    dirs: tuple[Path, ...] = ()
    config_dir: Path | None = None
    bundled: bool = True

    @classmethod
    def of(cls, files: Iterable[str | Path] = (), dirs: Iterable[str | Path] = (),
           config: Any = None) -> "MappingSources":
        """Sources from command-line values and a connector.config.Config (its `mappings_dir`)."""
        return cls(tuple(Path(f) for f in files), tuple(Path(d) for d in dirs),
                   getattr(config, "mappings_dir", None))

    def places(self) -> Iterator[tuple[str, Path]]:
        """(source kind, folder) for every folder to list, in order."""
        for folder in self.dirs:
            yield DIR, folder
        if self.config_dir is not None:
            yield CONFIG, self.config_dir
        if self.bundled:
            yield BUNDLED, data_dir("mappings")


def available_mappings(sources: MappingSources | None = None) -> list[MappingEntry]:
    """Every mapping file the sources hold, in precedence order (an earlier one shadows a later
    one for the same trial). Unreadable files are listed with their problem, not raised."""
    sources = sources or MappingSources()
    entries = [mapping_entry(path, FILE) for path in sources.files]
    for kind, folder in sources.places():
        if not folder.is_dir():
            if kind != BUNDLED:
                raise MappingError(f"mapping folder {folder} ({kind}) not found")
            continue
        entries.extend(mapping_entry(path, kind) for path in sorted(folder.iterdir())
                       if path.suffix in MAPPING_SUFFIXES and path.is_file())
    return entries


def resolve_mapping(trial: str, sources: MappingSources | None = None) -> MappingEntry:
    """The mapping file that screens `trial` (an NCT id in any accepted spelling)."""
    trial = normalise_nct_id(trial)
    sources = sources or MappingSources()
    entries = available_mappings(sources)
    for entry in entries:
        if entry.source == FILE and entry.problem:
            raise MappingError(entry.problem)
        if entry.trial == trial:
            if entry.problem:
                raise MappingError(entry.problem)
            return entry
    searched = [f"--mapping {p}" for p in sources.files] + [f"{folder} ({kind})" for kind, folder in sources.places()]
    raise MappingError(f"no mapping for {trial} in {', '.join(searched) or 'no mapping source'} "
                       "(give --mapping FILE or --mappings DIR, or set [mappings] dir in the config)")


def load_resolved(trial: str, sources: MappingSources | None = None) -> tuple[MappingEntry, Mapping]:
    """The resolved entry and its validated mapping."""
    entry = resolve_mapping(trial, sources)
    mapping = load_mapping(entry.path)
    if mapping.trial != entry.trial:  # pragma: no cover - the entry's trial is read from the same file
        raise MappingError(f"{entry.name}: maps {mapping.trial}, not {entry.trial}")
    return entry, mapping


def load_trial_mapping(trial: str, mapping_path: str | Path | None = None) -> tuple[Path, Mapping]:
    """The trial's mapping file and content: `mapping_path` when given, else the bundled one."""
    entry, mapping = load_resolved(trial, MappingSources(files=(Path(mapping_path),) if mapping_path else ()))
    return entry.path, mapping


def find_mapping(trial: str, mapping_path: str | Path | None = None) -> Path:
    """The path load_trial_mapping would read."""
    return resolve_mapping(trial, MappingSources(files=(Path(mapping_path),) if mapping_path else ())).path


def check_explicit_files(trials: Iterable[str], sources: MappingSources) -> None:
    """A `--mapping FILE` that maps none of the trials asked for is a mistake, not something to skip."""
    wanted = {normalise_nct_id(t) for t in trials}
    for path in sources.files:
        entry = mapping_entry(path, FILE)
        if entry.problem:
            raise MappingError(entry.problem)
        if entry.trial not in wanted:
            raise MappingError(f"--mapping {entry.name} maps {entry.trial}, not {', '.join(sorted(wanted))}")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mapping_entry(path: Path, kind: str = FILE) -> MappingEntry:
    """An entry for one file; the trial id is read from the file's `trial` key."""
    if not path.is_file():
        return MappingEntry(None, path, kind, "", f"mapping file {display_name(path)} not found")
    digest = file_sha256(path)
    try:
        document = read_mapping_document(path)
    except MappingError as exc:
        return MappingEntry(None, path, kind, digest, str(exc))
    raw = document.get("trial") if isinstance(document, dict) else None
    try:
        trial = normalise_nct_id(raw) if isinstance(raw, str) else None
    except InvalidNctId:
        trial = None
    if trial is None:
        return MappingEntry(None, path, kind, digest, f"{display_name(path)}: $.trial: no NCT id (got {raw!r})")
    return MappingEntry(trial, path, kind, digest)
