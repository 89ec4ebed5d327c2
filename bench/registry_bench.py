"""Registry sync benchmark (run by hand, not a test; needs the test extra for `responses`).

    .venv/bin/python bench/registry_bench.py [--records 300] [--trials 500] [--db URL]

Prints
1. records normalised + validated (API Study schema and trial.schema.json) + stored per second,
   over the real recorded studies in tests/fixtures/ctgov/studies/ re-numbered to N distinct ids;
2. the requests an incremental refresh (`--since auto`) makes when 1 of N stored trials changed,
   next to what a per-trial refresh would make, against a mocked API that honours filter.ids
   and filter.advanced (nothing leaves the machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.registry.client import CtGovClient  # noqa: E402
from connector.registry.sync import Syncer  # noqa: E402
from connector.store import open_store  # noqa: E402

API = "http://127.0.0.1:8765/api/v2"
STUDIES = sorted((ROOT / "tests" / "fixtures" / "ctgov" / "studies").glob("*.json"))


def renumbered(count: int) -> list[dict]:
    """`count` real studies with distinct NCT ids (cycling over the fixture records)."""
    originals = [json.loads(p.read_text(encoding="utf-8")) for p in STUDIES]
    out = []
    for i in range(count):
        study = copy.deepcopy(originals[i % len(originals)])
        study["protocolSection"]["identificationModule"]["nctId"] = f"NCT9{i:07d}"
        out.append(study)
    return out


def bench_store(db_url: str, count: int) -> None:
    studies = renumbered(count)
    size = sum(len(json.dumps(s)) for s in studies)
    with open_store(db_url) as store:
        syncer = Syncer(store, report=lambda line: None)
        started = time.perf_counter()
        for study in studies:
            syncer.ingest(study, "bench")
        elapsed = time.perf_counter() - started
        again = time.perf_counter()
        for study in studies:
            syncer.ingest(study, "bench")
        unchanged_elapsed = time.perf_counter() - again
    print(f"store: {db_url.split('?')[0]}")
    print(f"  {count} records ({size / 1e6:.1f} MB of API JSON) normalised+validated+stored: "
          f"{elapsed:.2f} s = {count / elapsed:.1f} records/s (new)")
    print(f"  same records again (validated, found unchanged): {count / unchanged_elapsed:.1f} records/s")
    print(f"  outcomes: new {syncer.counts.new}, unchanged {syncer.counts.unchanged}, failed {syncer.counts.failed}")


def bench_incremental(db_url: str, trials: int) -> None:
    import responses

    studies = {s["protocolSection"]["identificationModule"]["nctId"]: s for s in renumbered(trials)}
    changed_id = sorted(studies)[trials // 2]

    def answer(request):
        params = parse_qs(urlsplit(request.url).query)
        ids = params.get("filter.ids", [""])[0].split("|")
        if "filter.advanced" in params:  # only what was updated since: the one changed trial
            ids = [i for i in ids if i == changed_id]
        return 200, {}, json.dumps({"studies": [studies[i] for i in ids if i in studies]})

    with responses.RequestsMock() as mock, open_store(db_url) as store:
        mock.add_callback(responses.GET, f"{API}/studies", callback=answer)
        client = CtGovClient(API, requests_per_minute=1e9)
        first = Syncer(store, report=lambda line: None)
        first.sync_ids(client, sorted(studies))
        initial = client.stats.requests
        status = studies[changed_id]["protocolSection"]["statusModule"]
        status["overallStatus"] = "COMPLETED" if status.get("overallStatus") != "COMPLETED" else "TERMINATED"
        refresh = Syncer(store, report=lambda line: None)
        refresh.sync_ids(client, sorted(studies), since="auto")
        incremental = client.stats.requests - initial
    budget_s = 60.0 / 50
    print(f"incremental refresh of {trials} stored trials, 1 changed:")
    print(f"  first sync: {initial} requests; refresh with --since auto: {incremental} request(s) "
          f"({refresh.counts.summary()})")
    print(f"  a per-trial refresh would make {trials} requests = {trials * budget_s / 60:.1f} min at 50 requests/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--db", help="store URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_store(args.db or str(Path(tmp) / "bench-store.db"), args.records)
        bench_incremental(args.db or str(Path(tmp) / "bench-incremental.db"), args.trials)


if __name__ == "__main__":
    main()
