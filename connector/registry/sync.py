"""Registry refresh: fetch studies (by id, by search, or from saved files) and store versions.

One bad study never sinks a refresh: a record failing a schema or an id the registry does not
have is reported, counted as failed, and the rest are still stored. Infrastructure failures
(API unreachable after retries, store errors) stop the refresh and propagate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.errors import StoreError
from connector.registry.client import CtGovClient, SearchQuery, StudyNotFound
from connector.registry.ids import normalise_all
from connector.registry.normalise import InvalidStudy, study_label
from connector.registry.versions import SaveOutcome, save_study, trial_state
from connector.store import Store, utc_now

log = logging.getLogger(__name__)

# top-level sections of an API v2 study record: a saved file with any of them is one study
STUDY_SECTIONS = frozenset({"protocolSection", "resultsSection", "annotationSection", "documentSection",
                            "derivedSection", "hasResults"})
IDS_PER_REQUEST = 200  # filter.ids values per search request (keeps URLs well under 4 kB)
Report = Callable[[str], None]


@dataclass
class SyncCounts:
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0

    def summary(self) -> str:
        return (f"fetched: {self.fetched}, new: {self.new}, changed: {self.changed}, "
                f"unchanged: {self.unchanged}, failed: {self.failed}")


class Syncer:
    """Stores what it is given and keeps the counts; `report` receives one progress line each."""

    def __init__(self, store: Store, report: Report = log.info, now: Callable[[], str] = utc_now):
        self.store = store
        self.report = report
        self.now = now
        self.counts = SyncCounts()

    # -- one study ------------------------------------------------------------------------------

    def ingest(self, study: Any, source: str, *, where: str = "", aliases: Iterable[str] = ()) -> SaveOutcome | None:
        """Validate, normalise and store one API study; None (counted failed) when it is invalid."""
        prefix = f"{where}: " if where else ""
        try:
            outcome = save_study(self.store, study, source=source, aliases=aliases, now=self.now())
        except InvalidStudy as exc:
            self.counts.failed += 1
            self.report(f"{prefix}{exc}")
            return None
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad record is that record's failure, not the command's
            self.counts.failed += 1
            self.report(f"{prefix}cannot read the study: unexpected {exc.__class__.__name__}")
            return None
        setattr(self.counts, outcome.status, getattr(self.counts, outcome.status) + 1)
        self.report(prefix + _describe(outcome))
        return outcome

    def fail(self, message: str) -> None:
        self.counts.failed += 1
        self.report(message)

    # -- by id ------------------------------------------------------------------------------------

    def sync_ids(self, client: CtGovClient, ids: Iterable[str], since: str | None = None) -> SyncCounts:
        """Refresh the given trials. `since` (YYYY-MM-DD or "auto") asks only for studies updated
        since then: a stored trial the API does not return was not updated and counts unchanged."""
        wanted = normalise_all(ids)
        source = client.api_url
        if since is None:
            self._fetch_ids(client, wanted, source, advanced=None)
            return self.counts
        known = [i for i in wanted if trial_state(self.store, i) is not None]
        unknown = [i for i in wanted if i not in known]
        if unknown:
            self._fetch_ids(client, unknown, source, advanced=None)
        if known:
            since_date = self._auto_since_ids(known) if since == "auto" else since
            if since_date is None:
                self._fetch_ids(client, known, source, advanced=None)
            else:
                advanced = last_update_filter(since_date)
                returned = self._fetch_ids(client, known, source, advanced=advanced, absent_is_missing=False)
                checked = self.now()
                for nct_id in known:
                    if nct_id not in returned:
                        self.counts.unchanged += 1
                        self.store.execute("UPDATE trials SET last_checked_at = ? WHERE nct_id = ?", (checked, nct_id))
                        self.report(f"{nct_id}: unchanged (not updated since {since_date})")
        return self.counts

    def _fetch_ids(self, client: CtGovClient, ids: list[str], source: str, advanced: str | None,
                   absent_is_missing: bool = True) -> set[str]:
        """Fetch and store; returns the requested ids that were answered (directly or via alias)."""
        if len(ids) == 1 and advanced is None:
            try:
                fetched = client.get_study(ids[0])
            except StudyNotFound:
                self.fail(f"{ids[0]}: not found")
                return set()
            self.counts.fetched += 1
            aliases = [ids[0]] if fetched.alias_of else []
            if fetched.alias_of:
                self.report(f"{ids[0]}: alias of {fetched.alias_of}")
            self.ingest(fetched.study, source, aliases=aliases)
            return {ids[0]}
        answered: set[str] = set()
        for start in range(0, len(ids), IDS_PER_REQUEST):
            batch = ids[start:start + IDS_PER_REQUEST]
            query = SearchQuery(ids=batch, advanced=advanced)
            for study in client.studies(query, page_size=len(batch)):
                self.counts.fetched += 1
                matched = _requested_ids(study, batch)
                answered.update(matched)
                nct = study_label(study)
                aliases = [m for m in matched if m != nct]
                for alias in aliases:
                    self.report(f"{alias}: alias of {nct}")
                self.ingest(study, source, aliases=aliases)
            if absent_is_missing:
                for nct_id in batch:
                    if nct_id not in answered:
                        self.fail(f"{nct_id}: not found")
        return answered

    def _auto_since_ids(self, ids: list[str]) -> str | None:
        checked = [s.last_checked_at for s in (trial_state(self.store, i) for i in ids) if s is not None]
        return _day_before(min(checked)) if checked else None

    # -- by search ------------------------------------------------------------------------------

    def sync_query(self, client: CtGovClient, query: SearchQuery, since: str | None = None,
                   page_size: int = 1000) -> SyncCounts:
        """Every study a search returns, paging to the end. `since="auto"` continues from the last
        successful run of the same search (recorded in registry_sync_state)."""
        key = _sync_key(client.api_url, query)
        started = self.now()
        since_date = self._auto_since_query(key) if since == "auto" else since
        if since_date:
            extra = last_update_filter(since_date)
            query = SearchQuery(ids=query.ids, cond=query.cond, term=query.term, statuses=query.statuses,
                                advanced=f"({query.advanced}) AND {extra}" if query.advanced else extra)
        for page in client.pages(query, page_size=page_size):
            total = f" of {page.total_count}" if page.total_count is not None else ""
            self.report(f"page {page.number}: {len(page.studies)} studies{total}")
            for index, study in enumerate(page.studies):
                self.counts.fetched += 1
                labelled = study_label(study).startswith("NCT")
                self.ingest(study, client.api_url, where="" if labelled else f"page {page.number}: $.studies[{index}]")
        with self.store.transaction():
            self.store.execute(self.store.dialect.upsert("registry_sync_state", ["sync_key", "last_success_at"],
                                                         key=["sync_key"]), (key, started))
        return self.counts

    def _auto_since_query(self, key: str) -> str | None:
        last = self.store.scalar("SELECT last_success_at FROM registry_sync_state WHERE sync_key = ?", (key,))
        return _day_before(last) if last else None

    # -- from files -------------------------------------------------------------------------------

    def import_files(self, paths: Iterable[Path]) -> SyncCounts:
        """Saved API JSON: one study, a search page `{"studies": [...]}`, or a list of studies."""
        for path in paths:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                self.fail(f"{path}: cannot read: {exc.strerror}")
                continue
            except UnicodeDecodeError:
                self.fail(f"{path}: not UTF-8 text")
                continue
            except json.JSONDecodeError as exc:
                self.fail(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
                continue
            except RecursionError:
                self.fail(f"{path}: JSON nested too deeply")
                continue
            for where, study in _studies_in(data, str(path)):
                if study is None:
                    self.fail(f"{where}: not a study, a search page or a list of studies")
                    continue
                self.counts.fetched += 1
                self.ingest(study, f"import:{Path(path).name}", where=where)
        return self.counts


def last_update_filter(since: str) -> str:
    """The API's incremental filter: studies whose last update was posted on or after `since`."""
    return f"AREA[LastUpdatePostDate]RANGE[{since},MAX]"


def parse_since(value: str | None) -> str | None:
    """`auto`, a YYYY-MM-DD date, or None; raises ValueError for anything else."""
    if value is None or value == "auto":
        return value
    return date.fromisoformat(value).isoformat()


def _studies_in(data: Any, name: str) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    if isinstance(data, dict) and isinstance(data.get("studies"), list):
        for i, study in enumerate(data["studies"]):
            yield f"{name}: $.studies[{i}]", study
    elif isinstance(data, dict) and STUDY_SECTIONS & set(data):
        yield name, data  # a study record (validation names what is missing, e.g. protocolSection)
    elif isinstance(data, list):
        for i, study in enumerate(data):
            yield f"{name}: $[{i}]", study
    else:
        yield name, None


def _requested_ids(study: Mapping[str, Any], batch: list[str]) -> list[str]:
    """Which requested ids a returned study answers: its own id and any alias of it."""
    if not isinstance(study, Mapping):
        return []
    ident = (study.get("protocolSection") or {}).get("identificationModule") or {}
    names = {ident.get("nctId"), *(ident.get("nctIdAliases") or [])}
    return [i for i in batch if i in names]


def _sync_key(api_url: str, query: SearchQuery) -> str:
    return json.dumps({"api": api_url, **query.params()}, sort_keys=True)


def _day_before(timestamp: str) -> str:
    """The date before a stored timestamp: LastUpdatePostDate is a US date, our clock UTC."""
    return (datetime.fromisoformat(timestamp).date() - timedelta(days=1)).isoformat()


def _describe(outcome: SaveOutcome) -> str:
    if outcome.status == "unchanged":
        return f"{outcome.nct_id}: unchanged (version {outcome.version})"
    if outcome.status == "new":
        return f"{outcome.nct_id}: new (version {outcome.version})"
    fields = ", ".join(change["field"] for change in outcome.diff)
    note = ""
    if outcome.criteria_changed:
        note = "; eligibility criteria changed: earlier pre-screens marked for re-screening"
    return f"{outcome.nct_id}: changed (version {outcome.version}: {fields}){note}"
