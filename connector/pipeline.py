"""A scheduled run: source -> patient facts -> evaluation (every trial) -> store.

Which patients a run screens:
- full (no `--since`, first run, mapping changed, or the registry marked the trial for
  re-screening after the last run): everyone in the source;
- incremental (`--since auto` or an instant): patients with data changed since the last
  successful run (`_lastUpdated=gt` over REST, `_since` for Bulk, a different data version for
  local files), plus those whose last attempt failed and those whose stored result may have
  changed with time alone (`rescreen_on`, see connector.scheduled.freshness).

The run holds the store's run lock throughout. A run that was killed is found still marked
`running` by the next run with the same trials and source, which continues it with the same
as-of date and plan and skips the patients it already finished.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from connector.config import Config
from connector.errors import ConfigError, ConnectorError, SourceError, StoreError, short
from connector.facts import PatientFacts
from connector.mapping import data_needs
from connector.mapping.catalog import MappingSources, load_resolved
from connector.mapping.model import Mapping
from connector.needs import DataNeeds
from connector.scheduled import records
from connector.scheduled.fetching import changed_patient_ids, concurrent_facts, server_watermark
from connector.scheduled.lock import run_lock
from connector.scheduled.progress import Progress
from connector.scheduled.workers import PARALLEL_MIN_BYTES, Screener, ScreenJob, TrialJob, default_workers
from connector.sources.problems import ProblemLog
from connector.store import Store

log = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"
UNREACHABLE_AFTER = 10  # consecutive patients failing with server errors: the source is down


@dataclass(frozen=True)
class TrialSpec:
    """A trial to screen with its mapping and the hash of the mapping file's bytes."""

    trial: str
    mapping: Mapping
    mapping_name: str
    mapping_hash: str

    @classmethod
    def load(cls, trial: str, mapping_path: str | Path | None = None,
             sources: MappingSources | None = None) -> "TrialSpec":
        """The trial's mapping from `sources` (connector.mapping.catalog), or `mapping_path`."""
        if sources is None:
            sources = MappingSources(files=(Path(mapping_path),) if mapping_path else ())
        entry, mapping = load_resolved(trial, sources)
        return cls(entry.trial or trial, mapping, entry.name, entry.sha256)


@dataclass
class RunOptions:
    trials: list[TrialSpec]
    source: str
    as_of: date | None = None
    since: str | None = None  # None: full run; "auto": since the last successful run; else an instant
    bulk: bool = False
    group: str | None = None
    patient_ids: list[str] | None = None
    concurrency: int | None = None
    workers: int | None = None  # processes screening local files (default: the machine's cores)
    engine: str = "embedded"  # or "dask": local files screened on the cluster at `scheduler`
    scheduler: str | None = None
    work_dir: Path | None = None
    site_country: str = "US"


@dataclass
class RunOutcome:
    run: records.RunRow
    resumed: bool
    errors: list[tuple[str, str]] = field(default_factory=list)
    source_errors: ProblemLog = field(default_factory=ProblemLog)


class ScheduledRun:
    """One `trial-connector run`; `execute()` returns the finished run's record."""

    def __init__(self, store: Store, config: Config, options: RunOptions, progress: Progress | None = None):
        if not options.trials:
            raise ConfigError("give at least one --trial")
        self.store = store
        self.config = config
        self.options = options
        self.trials = [t.trial for t in options.trials]
        self.progress = progress or Progress(tty=False, interval_s=10.0)
        self.is_local = Path(options.source).exists()
        self.source_id = self._source_identity()
        self.server: Any = None  # connector.config.ServerConfig for server sources
        self.client: Any = None  # connector.fhir.client.FhirClient
        self.source_errors = ProblemLog()
        self._source_gave = 0  # patients the source gave this run (finished ones included)

    # ---- set-up ------------------------------------------------------------------------------

    def _source_identity(self) -> str:
        """How runs of the same data are recognised: an absolute path, or the server's base URL."""
        if self.is_local:
            return str(Path(self.options.source).resolve())
        return self.config.server(self.options.source).url.rstrip("/")

    def _client(self) -> Any:
        if self.client is None:
            from connector.fhir.client import FhirClient

            self.server = self.config.server(self.options.source)
            self.client = FhirClient(self.server)
        return self.client

    def needs(self, as_of: date) -> DataNeeds:
        needs = data_needs(self.options.trials[0].mapping, as_of)
        for spec in self.options.trials[1:]:
            needs = needs.merge(data_needs(spec.mapping, as_of))
        return needs

    # ---- the run -----------------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        with run_lock(self.store):
            try:
                run, resumed = self._resume_or_start()
            except BaseException:
                if self.client is not None:
                    self.client.close()
                raise
            # any error fails the run (exit 2 for a source that stopped answering) so that no rerun
            # resumes it into the same error; only a kill (Ctrl-C, SIGTERM, -9) leaves it `running`
            # for the next run to resume
            try:
                self._process(run)
            except ConnectorError as exc:
                records.finish_run(self.store, run.id, records.FAILED, short(str(exc)))
                raise
            except Exception as exc:
                log.debug("run %d failed", run.id, exc_info=True)
                records.finish_run(self.store, run.id, records.FAILED, f"unexpected {exc.__class__.__name__}")
                raise
            finally:
                self.progress.close()
                if self.client is not None:
                    self.client.close()
            current = records.get_run(self.store, run.id)
            assert current is not None
            status = records.PARTIAL if current.errors or self.source_errors else records.DONE
            error = f"{len(self.source_errors)} problem(s) reading the source" if self.source_errors else None
            final = records.finish_run(self.store, run.id, status, error)
            return RunOutcome(final, resumed, records.run_errors(self.store, run.id), self.source_errors)

    def _resume_or_start(self) -> tuple[records.RunRow, bool]:
        wanted = self._run_options()
        for old in records.interrupted_runs(self.store):
            differs = self._differences(old, wanted)
            if not differs:
                log.info("resuming run %d (interrupted) from where it stopped", old.id)
                return old, True
            log.warning("run %d was interrupted, but with other options (%s); it is abandoned and a new run "
                        "starts", old.id, ", ".join(differs))
            records.finish_run(self.store, old.id, records.ABANDONED,
                               f"interrupted; a later run with other options ({', '.join(differs)}) started anew")
        as_of = self.options.as_of or date.today()
        mode, since, reason = self._decide(as_of)
        plan: dict[str, Any] = {"bulk": self.options.bulk, "group": self.options.group, "reason": reason,
                                "ids": self.options.patient_ids, "options": wanted,
                                "mappings": {t.trial: {"file": t.mapping_name, "sha256": t.mapping_hash}
                                             for t in self.options.trials}}
        data_since = None
        if mode == INCREMENTAL and not self.is_local and since is not None:
            data_since, ids = self._changed_ids(as_of, since)
            plan["ids"] = sorted(ids if self.options.patient_ids is None else ids & set(self.options.patient_ids))
        run_id = records.start_run(self.store, self.trials, self.source_id, mode, as_of.isoformat(), since, plan)
        if data_since:
            records.set_data_since(self.store, run_id, data_since)
        log.info("run %d: %s (%s)", run_id, mode, reason)
        run = records.get_run(self.store, run_id)
        assert run is not None
        return run, False

    def _run_options(self) -> dict[str, Any]:
        """What makes two runs the same run: a killed run is resumed only by the same command."""
        o = self.options
        return {"trials": sorted(self.trials), "source": self.source_id,
                "as_of": o.as_of.isoformat() if o.as_of else None, "since": o.since, "bulk": o.bulk,
                "group": o.group, "patients": sorted(set(o.patient_ids)) if o.patient_ids else None,
                "site_country": o.site_country, "mappings": {t.trial: t.mapping_hash for t in o.trials}}

    @staticmethod
    def _differences(old: records.RunRow, wanted: dict[str, Any]) -> list[str]:
        """The options in which an interrupted run differs from this one (none: resume it)."""
        if sorted(old.trials) != wanted["trials"]:
            return ["--trial"]
        if old.source != wanted["source"]:
            return ["--source"]
        before = (old.plan or {}).get("options")
        if not isinstance(before, dict):  # a run from a version that did not record its options
            return []
        names = {"as_of": "--as-of", "since": "--since", "bulk": "--bulk", "group": "--group",
                 "patients": "--patient", "site_country": "--site-country", "mappings": "a changed mapping file"}
        # a run recorded before mapping hashes were part of its options is compared without them
        return [flag for key, flag in names.items() if key in before and before.get(key) != wanted[key]]

    def _decide(self, as_of: date) -> tuple[str, str | None, str]:
        """(mode, since, why): see the module docstring."""
        option = self.options.since
        if option is None:
            return FULL, None, "no --since: everyone"
        if option != "auto":
            return INCREMENTAL, option, f"changes since {option}"
        since_values: list[str | None] = []
        for spec in self.options.trials:
            last = records.last_successful_run(self.store, self.source_id, spec.trial)
            if last is None:
                return FULL, None, f"first run of {spec.trial} on this source"
            if records.stale_mapping(self.store, spec.trial, spec.mapping_hash):
                return FULL, None, f"mapping of {spec.trial} changed"
            marker = self._registry_rescreen_after(spec.trial)
            if marker and marker > last.started_at:
                return FULL, None, f"registry record of {spec.trial} changed"
            since_values.append(last.data_since)
        if self.is_local:
            return INCREMENTAL, None, "changed data versions since the last run"
        if any(v is None for v in since_values):
            return FULL, None, "last run has no data timestamp"
        since = min(v for v in since_values if v is not None)
        return INCREMENTAL, since, f"changes since {since}"

    def _registry_rescreen_after(self, trial: str) -> str | None:
        from connector.registry.versions import trial_state

        state = trial_state(self.store, trial)
        return state.rescreen_after if state else None

    def _changed_ids(self, as_of: date, since: str) -> tuple[str, set[str]]:
        """(the server's time now, ids to screen): data changed since `since`, earlier errors,
        and results due for re-screening."""
        from connector.fhir.bulk import instant_z

        needs = self.needs(as_of)
        client = self._client()
        if self.options.bulk:
            bulk = self._bulk_source(since=since)
            touched = set(bulk.touched_patient_ids(needs))
            now = (bulk.result.transaction_time if bulk.result and bulk.result.transaction_time
                   else server_watermark(client, needs))
            self.source_errors.extend(bulk.errors)
            bulk.cleanup()
        else:
            now = server_watermark(client, needs)
            touched = changed_patient_ids(client, needs, instant_z(since))
        ids = set(touched)
        for trial in self.trials:
            ids |= records.errored_patients(self.store, trial, self.source_id)
            ids |= records.due_patients(self.store, trial, as_of.isoformat(), self.source_id)
        if self.options.group:
            ids &= set(self._all_ids(client, self.options.group))
        log.info("%d patient(s) changed since %s; %d to screen in all", len(touched), since, len(ids))
        return now, ids

    def _bulk_source(self, since: str | None = None, group: str | None = None) -> Any:
        """Exports go to --work-dir, else `./.trial-connector-bulk-<hash of the server URL>`."""
        from connector.fhir.bulk import BulkExportClient
        from connector.sources.bulk import BulkSource

        client = self._client()
        digest = hashlib.sha256(self.source_id.encode()).hexdigest()[:12]
        work_dir = self.options.work_dir or Path(f".trial-connector-bulk-{digest}")
        return BulkSource(BulkExportClient(client.http, work_dir), self.server.name,
                          group_id=group or self.options.group, since=since,
                          max_resource_bytes=self.config.max_resource_bytes)

    # ---- screening ---------------------------------------------------------------------------

    def _process(self, run: records.RunRow) -> None:
        as_of = date.fromisoformat(run.as_of)
        needs = self.needs(as_of)
        done = records.done_patients(self.store, run.id)
        self.progress.done = len(done)
        plan = run.plan or {}
        ids: list[str] | None = plan.get("ids")
        if ids is not None:
            self.progress.set_total(len(ids))
        job = ScreenJob(tuple(TrialJob(s.trial, s.mapping, s.mapping_hash, data_needs(s.mapping, as_of))
                              for s in self.options.trials), as_of, self.options.site_country)
        with Screener(job, self._workers()) as screener:
            if self.options.engine == "dask":
                results = self._dask_results(run, needs, job, ids, done)
            else:
                results = screener.screen(self._to_screen(run, self._facts(run, needs, ids, done, screener), done))
            failures_in_a_row = 0
            for pid, outcome in results:
                if isinstance(outcome, ConnectorError):
                    records.save_patient_error(self.store, run.id, pid, self.trials, short(str(outcome)))
                    log.warning("Patient/%s: %s", pid, outcome)
                    failures_in_a_row = failures_in_a_row + 1 if isinstance(outcome, SourceError) else 0
                    if failures_in_a_row >= UNREACHABLE_AFTER:
                        raise SourceError(f"{self.options.source}: {failures_in_a_row} patients in a row failed "
                                          f"with server errors; giving up (last: {outcome})")
                else:
                    failures_in_a_row = 0
                    self._screen(run, pid, outcome)
                self.progress.advance()
        if not self._source_gave and run.mode == FULL and ids is None:
            self._check_not_vanished()

    def _dask_results(self, run: records.RunRow, needs: DataNeeds, job: ScreenJob, ids: list[str] | None,
                      done: set[str]) -> Iterator[tuple[str, Any]]:
        """Outcomes computed on a Dask cluster (connector.scheduled.dask_engine), filtered as
        `_to_screen` filters what this process screens."""
        from connector.scheduled.dask_engine import DaskRun

        if not self.is_local or not self.options.scheduler:
            raise ConfigError("--engine dask screens local files (a path the workers can read) and needs --scheduler")
        cluster = DaskRun(self.options.scheduler, Path(self.options.source), needs, job,
                          self.config.max_resource_bytes)
        wanted = None if ids is None else set(ids)
        screened = ((pid, outcome) for pid, outcome in cluster.results(done)
                    if wanted is None or pid in wanted)
        yield from self._to_screen(run, screened, done)
        self.source_errors.extend(cluster.errors)

    def _workers(self) -> int:
        """Processes for this run: --workers (default: the cores) for local files big enough to gain."""
        if not self.is_local:
            return 1
        wanted = self.options.workers or default_workers()
        if wanted > 1 and self.options.workers is None:
            from connector.sources.files import fhir_files

            size = sum(f.stat().st_size for f in fhir_files(Path(self.options.source)))
            if size < PARALLEL_MIN_BYTES:
                return 1
        return wanted

    def _to_screen(self, run: records.RunRow, items: Iterable[tuple[str, Any]],
                   done: set[str]) -> Iterator[tuple[str, Any]]:
        """The items still to screen: not done by this run already, not unchanged since the last one."""
        skip_unchanged = run.mode == INCREMENTAL and self.is_local
        versions = {t: records.stored_versions(self.store, t) for t in self.trials} if skip_unchanged else {}
        hashes = {s.trial: s.mapping_hash for s in self.options.trials}
        errored: set[str] = set()
        if skip_unchanged:
            errored = set().union(*(records.errored_patients(self.store, t) for t in self.trials))
        seen: set[str] = set(done)
        for pid, item in items:
            if pid in seen:
                continue
            seen.add(pid)
            if skip_unchanged and not isinstance(item, ConnectorError) and pid not in errored and self._unchanged(
                    pid, _data_version(item), versions, hashes, run.as_of):
                continue
            yield pid, item
        self._source_gave = len(seen)

    def _check_not_vanished(self) -> None:
        """A full run that found nobody where the last one found many read a broken source (an
        empty answer, an empty export): fail it, so it never becomes the base of `--since auto`."""
        before = records.last_population(self.store, self.source_id, self.trials)
        if before:
            raise SourceError(f"{self.options.source}: the source gave no patients at all, but the last full run "
                              f"read {before}; not accepting an empty population (check the server or export)")

    def _unchanged(self, pid: str, data_version: str | None, versions: dict[str, dict[str, Any]],
                   hashes: dict[str, str], as_of: str) -> bool:
        for trial in self.trials:
            stored = versions[trial].get(pid)
            if stored is None or stored[0] is None or stored[0] != data_version or stored[1] != hashes[trial]:
                return False
            if stored[2] is not None and stored[2] <= as_of:
                return False
        return True

    def _screen(self, run: records.RunRow, pid: str, outcomes: list[records.TrialOutcome]) -> None:
        """Store one patient's screening outcomes; a value the store refuses is that patient's error."""
        try:
            records.save_patient(self.store, run.id, pid, outcomes)
        except Exception as exc:  # noqa: BLE001 - one patient never sinks the run
            if isinstance(exc, StoreError):
                raise
            log.debug("Patient/%s: storing failed", pid, exc_info=True)
            message = str(exc) if isinstance(exc, ConnectorError) else f"unexpected {exc.__class__.__name__}"
            records.save_patient_error(self.store, run.id, pid, self.trials, short(message))

    def _facts(self, run: records.RunRow, needs: DataNeeds, ids: list[str] | None, done: set[str],
               screener: Screener) -> Iterator[tuple[str, Any]]:
        """(patient id, facts | kept resources (local files) | its error), for the screener."""
        plan = run.plan or {}
        todo = None if ids is None else [i for i in ids if i not in done]
        if self.is_local:
            from connector.sources.files import FileSource

            source = FileSource(Path(self.options.source), self.config.max_resource_bytes)
            source.errors = self.source_errors
            yield from self._with_total(source.iter_records(needs, todo, screener.map), source)
            return
        client = self._client()
        workers = self.options.concurrency or self.server.concurrency
        if run.mode == FULL and plan.get("bulk") and todo is None:
            bulk = self._bulk_source(group=plan.get("group"))
            bulk.export(needs)  # a resumed run finds the finished (or half-downloaded) export in the work dir
            stamp = bulk.result.transaction_time if bulk.result else None
            records.set_data_since(self.store, run.id, stamp or server_watermark(client, needs))
            yield from bulk.iter_facts(needs, None)
            self.source_errors.extend(e for e in bulk.errors if e not in self.source_errors)
            bulk.cleanup()
            return
        records.set_data_since(self.store, run.id, server_watermark(client, needs))  # kept when resuming
        if todo is None:
            todo = [i for i in self._all_ids(client, plan.get("group")) if i not in done]
            records.set_planned(self.store, run.id, len(todo) + len(done))
            self.progress.set_total(len(todo) + len(done))
        from connector.sources.fhir_rest import RestSource

        yield from concurrent_facts(RestSource(client), needs, todo, workers)

    def _with_total(self, items: Iterable[tuple[str, Any]], source: Any) -> Iterator[tuple[str, Any]]:
        first = True
        for item in items:
            if first:
                first = False
                count = getattr(source, "patient_count", None)
                if count:
                    self.progress.set_total(count)
            yield item

    @staticmethod
    def _all_ids(client: Any, group: str | None) -> list[str]:
        """Every patient id on the server, or the members of a Group (ids de-duplicated, in order)."""
        if group:
            from connector.parse import reference_id

            members = client.read("Group", group).get("member") or []
            refs = (reference_id(m.get("entity"), "Patient") for m in members if isinstance(m, dict))
            return list(dict.fromkeys(r for r in refs if r))
        from connector.sources.fhir_rest import RestSource

        return list(dict.fromkeys(RestSource(client).patient_ids()))


def _data_version(item: Any) -> str | None:
    """What the patient's data was: facts carry it, kept resources read from files are digested."""
    if isinstance(item, list):  # outcomes computed elsewhere (dask): each carries the data version
        return item[0].data_version if item else None
    return item.data_version if isinstance(item, PatientFacts) else getattr(item, "digest", None)
