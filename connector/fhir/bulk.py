"""FHIR Bulk Data `$export` client: kick-off, status polling, resumable NDJSON download, delete.

A whole population is cheaper to pull as a few NDJSON files than patient by patient. The export
is asynchronous (kick-off -> 202 + status URL -> poll -> manifest), so a small state file in the
work dir remembers the job: a re-run after a crash continues the same job and skips the files
already downloaded, and a file cut off mid-way is resumed with `Range` (or fetched again whole
when the server ignores `Range`). Files are streamed to disk, never held in memory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connector.errors import ConfigError, SourceError
from connector.fhir.http import FhirRequestError, HttpClient, parse_retry_after, redact_url

log = logging.getLogger(__name__)

STATE_FILE = "bulk-job.state"  # not *.json: the folder is read as FHIR files afterwards
WORK_MARKER = ".trial-connector-work"  # marks a work dir as ours ("created" or "adopted" when empty)
EXPORT_FILE = re.compile(r"^\d{4}\.[A-Za-z]+\.ndjson(\.part)?$")  # the names download_all gives
CHUNK_BYTES = 1 << 16
DEFAULT_POLL_S = 2.0
MAX_POLL_S = 60.0


@dataclass(frozen=True)
class ExportRequest:
    """What to export. `level`: "system", "patient" or "group" (with `group_id`).

    `since` must be an instant in `Z` form (some servers compare it as text).
    """

    level: str = "patient"
    types: tuple[str, ...] = ()
    since: str | None = None
    group_id: str | None = None
    type_filters: tuple[str, ...] = ()

    def path(self) -> str:
        if self.level == "system":
            return "$export"
        if self.level == "patient":
            return "Patient/$export"
        if self.level == "group" and self.group_id:
            return f"Group/{self.group_id}/$export"
        raise SourceError(f"bulk export level {self.level!r} needs to be system, patient or group (with a group id)")

    def params(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        params.extend(("_typeFilter", f) for f in self.type_filters)
        return params

    def key(self) -> dict[str, Any]:
        """Identifies the request in the state file: a different request starts a new job."""
        return {"path": self.path(), "params": [list(p) for p in self.params()]}


class ExportExpired(SourceError):
    """The server no longer has the export's files (404/410): a new export is needed."""


@dataclass(frozen=True)
class ExportResult:
    files: list[Path]
    transaction_time: str | None
    errors: list[str]


class BulkExportClient:
    """Runs one export into `work_dir` (mode 0700); `sleep` and `now` are injectable for tests."""

    def __init__(self, http: HttpClient, work_dir: Path, *, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], float] = time.time, max_wait_s: float = 3600.0):
        self.http = http
        self.work_dir = Path(work_dir)
        self._sleep = sleep
        self._now = now
        self.max_wait_s = max_wait_s

    # ---- state -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.work_dir / STATE_FILE

    def _load_state(self, request: ExportRequest) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict) or state.get("request") != request.key():
            return {}
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def _prepare_dir(self) -> None:
        """Make (or adopt) the work dir. It must be new, empty, or one of ours (it holds our marker):
        cleaning up deletes only what this client wrote, never a user's folder."""
        marker = self.work_dir / WORK_MARKER
        if self.work_dir.exists() or self.work_dir.is_symlink():
            if not self.work_dir.is_dir() or self.work_dir.is_symlink():
                raise ConfigError(f"work dir {self.work_dir} is not a folder")
            if not marker.exists():
                if any(self.work_dir.iterdir()) and not self.state_path.exists():  # (state: an older version's)
                    raise ConfigError(f"work dir {self.work_dir} is not empty and was not made by trial-connector; "
                                      "give a new or empty folder (its files would be mixed with the export)")
                marker.write_text("adopted\n")
        else:
            self.work_dir.mkdir(parents=True, mode=0o700)
            marker.write_text("created\n")
        os.chmod(self.work_dir, 0o700)  # exports are PHI

    def remove_files(self) -> None:
        """Delete what this client wrote in the work dir (exports, partial files, state), and the
        folder itself when this client created it and nothing else is left in it."""
        marker = self.work_dir / WORK_MARKER
        if not marker.is_file():
            return
        created = marker.read_text().strip() == "created"
        for path in self.work_dir.iterdir():
            ours = path.name in (STATE_FILE, STATE_FILE.rsplit(".", 1)[0] + ".tmp", WORK_MARKER)
            if (ours or EXPORT_FILE.match(path.name)) and (path.is_file() or path.is_symlink()):
                path.unlink()
        if created and not any(self.work_dir.iterdir()):
            self.work_dir.rmdir()

    # ---- the whole export ------------------------------------------------------------------

    def export(self, request: ExportRequest, *, delete_when_done: bool = True) -> ExportResult:
        """Kick off (or continue) the export, wait for it, download every file, then delete the job.

        Files the server has expired (404/410 on a download after a crash) start a new export, once.
        """
        self._prepare_dir()
        state = self._load_state(request)
        try:
            return self._export(request, state, delete_when_done)
        except ExportExpired as exc:
            log.warning("%s; starting a new export", exc)
            self.state_path.unlink(missing_ok=True)
            return self._export(request, {}, delete_when_done)

    def _export(self, request: ExportRequest, state: dict[str, Any], delete_when_done: bool) -> ExportResult:
        if not state:
            self._clear_files()
            state = {"request": request.key(), "status_url": None, "manifest": None, "done": []}
        if state.get("manifest") is None:
            if state.get("status_url"):
                manifest = self._poll_or_none(state["status_url"])
            else:
                manifest = None
            if manifest is None:
                state["status_url"] = self.kick_off(request)
                state["done"] = []
                self._save_state(state)
                manifest = self.poll(state["status_url"])
            if not manifest["output"] and not manifest.get("error") and request.since is None:
                self.remove_files()  # nothing to resume: the next run asks again instead of trusting it
                raise SourceError(f"bulk export {redact_url(state['status_url'])} finished with no files at all; "
                                  "a whole population cannot be empty (check the server)")
            state["manifest"] = manifest
            self._save_state(state)
        manifest = state["manifest"]
        files = self.download_all(manifest, state)
        errors = self._error_files(manifest)
        if delete_when_done and state.get("status_url") and not state.get("deleted"):
            self.delete(state["status_url"])
        state["deleted"] = True
        self._save_state(state)
        return ExportResult(files, manifest.get("transactionTime"), errors)

    def _clear_files(self) -> None:
        for path in self.work_dir.iterdir():
            if EXPORT_FILE.match(path.name):
                path.unlink()

    # ---- steps -----------------------------------------------------------------------------

    def kick_off(self, request: ExportRequest) -> str:
        """Start the export; returns the status URL (`Content-Location`)."""
        response = self.http.request("GET", request.path(), params=request.params(),
                                     headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        response.close()
        location = response.headers.get("Content-Location")
        if response.status_code != 202 or not location:
            raise SourceError(f"bulk export kick-off {redact_url(response.url)}: expected 202 with Content-Location, "
                              f"got HTTP {response.status_code}")
        self._check_same_server(location, "bulk status URL")
        log.info("bulk export started: %s", redact_url(location))
        return location

    def poll(self, status_url: str) -> dict[str, Any]:
        """Poll until the manifest arrives, sleeping as `Retry-After` says (else a growing delay)."""
        manifest = self._poll(status_url, allow_missing=False)
        assert manifest is not None
        return manifest

    def _poll_or_none(self, status_url: str) -> dict[str, Any] | None:
        """Continue a job from the state file; None when the server forgot it (restarted, expired)."""
        return self._poll(status_url, allow_missing=True)

    def _poll(self, status_url: str, allow_missing: bool) -> dict[str, Any] | None:
        started = self._now()
        delay = DEFAULT_POLL_S
        while True:
            try:
                response = self.http.request("GET", status_url, headers={"Accept": "application/json"})
            except FhirRequestError as exc:
                if allow_missing and exc.status in (404, 410):
                    log.info("bulk job %s is gone (HTTP %d); starting a new one", redact_url(status_url), exc.status)
                    return None
                raise
            if response.status_code == 200:
                manifest = self.http.json(response)
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise SourceError(f"bulk status {redact_url(status_url)}: the manifest has no output list")
                return manifest
            if response.status_code != 202:
                raise SourceError(f"bulk status {redact_url(status_url)}: unexpected HTTP {response.status_code}")
            progress = response.headers.get("X-Progress")
            asked = parse_retry_after(response.headers.get("Retry-After"), self._now())
            wait = min(asked if asked is not None else delay, MAX_POLL_S)
            delay = min(delay * 1.5, MAX_POLL_S)
            if self._now() - started + wait > self.max_wait_s:
                raise SourceError(f"bulk export {redact_url(status_url)} not finished after {self.max_wait_s:.0f} s")
            log.info("bulk export in progress%s; next check in %.1f s", f" ({progress})" if progress else "", wait)
            self._sleep(wait)

    def download_all(self, manifest: dict[str, Any], state: dict[str, Any]) -> list[Path]:
        """Download each output file not yet done; the state records each finished file."""
        requires_token = bool(manifest.get("requiresAccessToken"))
        paths: list[Path] = []
        for i, item in enumerate(manifest.get("output") or []):
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                raise SourceError(f"bulk manifest output[{i}] has no url")
            rtype = item.get("type") if isinstance(item.get("type"), str) else "Resource"
            path = self.work_dir / f"{i:04d}.{rtype}.ndjson"
            if item["url"] not in state.get("done", []):
                self.download(item["url"], path, requires_token)
                state.setdefault("done", []).append(item["url"])
                self._save_state(state)
            paths.append(path)
        return paths

    def download(self, url: str, path: Path, requires_token: bool) -> Path:
        """Stream one file to `path`, resuming from `path.part` with `Range` when the server allows."""
        if requires_token:
            self._check_same_server(url, "bulk file URL")
        part = path.with_name(path.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept": "application/fhir+ndjson"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self.http.request("GET", url, headers=headers, stream=True, authenticate=requires_token)
        except FhirRequestError as exc:
            if exc.status in (404, 410):
                part.unlink(missing_ok=True)
                raise ExportExpired(f"bulk file {redact_url(url)} is gone (HTTP {exc.status}): the server expired "
                                    "the export") from None
            raise
        try:
            if offset and response.status_code != 206:
                log.info("%s: server ignored Range; downloading the whole file again", redact_url(url))
                offset = 0
            mode = "ab" if offset else "wb"
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC), 0o600)
            with os.fdopen(fd, mode) as out:
                try:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        out.write(chunk)
                except Exception as exc:  # noqa: BLE001 - the .part file stays for the next attempt
                    raise SourceError(f"bulk file {redact_url(url)}: download interrupted "
                                      f"({exc.__class__.__name__}); re-run to resume") from None
        finally:
            response.close()
        os.replace(part, path)
        return path

    def delete(self, status_url: str) -> None:
        """Tell the server it may drop the job's files (errors here lose nothing: logged only)."""
        try:
            self.http.request("DELETE", status_url, max_retries=1).close()
        except SourceError as exc:
            log.warning("could not delete bulk job %s: %s", redact_url(status_url), exc)

    def _error_files(self, manifest: dict[str, Any]) -> list[str]:
        """Where the server reported per-resource errors (OperationOutcome NDJSON files)."""
        return [item["url"] for item in manifest.get("error") or [] if isinstance(item, dict) and item.get("url")]

    def _check_same_server(self, url: str, label: str) -> None:
        """Never send our bearer token to another host than the FHIR server's."""
        mine, theirs = urlsplit(self.http.base_url), urlsplit(url)
        if (mine.scheme, mine.hostname, mine.port) != (theirs.scheme, theirs.hostname, theirs.port):
            raise SourceError(f"{label} {theirs.scheme}://{theirs.netloc} is not on the FHIR server "
                              f"{mine.scheme}://{mine.netloc}; refusing to follow it")


def instant_z(timestamp: str) -> str:
    """An ISO timestamp as `YYYY-MM-DDTHH:MM:SS.fffZ` (servers like sekmet compare `_since` as text)."""
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def export_types(resource_types: Iterable[str]) -> tuple[str, ...]:
    """The `_type` list: the needed types plus Medication (medicationReference targets)."""
    types = set(resource_types) | {"Patient"}
    if types & {"MedicationStatement", "MedicationRequest", "MedicationAdministration"}:
        types.add("Medication")
    return tuple(sorted(types))
