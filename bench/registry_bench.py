"""Registry sync benchmark (run by hand, not a test; needs the test extra for `responses`).

    .venv/bin/python bench/registry_bench.py [--records 300] [--trials 500] [--db URL]

Prints
1. records normalised + validated (API Study schema and trial.schema.json) + stored per second,
   over the real recorded studies in tests/fixtures/ctgov/studies/ re-numbered to N distinct ids,
   with the stdlib's `json.dumps` as before (connector.jsontext patched) and with orjson, side by
   side in one run (CPU seconds, the best of --repeat, as other processes share the machine);
2. the requests an incremental refresh (`--since auto`) makes when 1 of N stored trials changed,
   next to what a per-trial refresh would make, against a mocked API that honours filter.ids
   and filter.advanced (nothing leaves the machine).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def stdlib_json(active: bool) -> Iterator[None]:
    """Store and hash JSON with the stdlib, as before connector.jsontext used orjson."""
    import connector.registry.versions as versions
    import connector.store.dialect as dialect
    from connector import jsontext

    saved = versions.canonical, dialect.dumps_sorted, dialect.parse
    if active:
        versions.canonical = dialect.dumps_sorted = jsontext._stdlib
        dialect.parse = json.loads
    try:
        yield
    finally:
        versions.canonical, dialect.dumps_sorted, dialect.parse = saved


def ingest_cpu_seconds(db_url: str, studies: list[dict], repeat: int) -> tuple[float, float, Syncer]:
    """(new, unchanged) CPU seconds to ingest every study, the best of `repeat` fresh stores."""
    best_new = best_same = float("inf")
    for attempt in range(repeat):
        url = db_url if db_url.startswith("postgresql") else f"{db_url}.{attempt}"
        with open_store(url) as store:
            syncer = Syncer(store, report=lambda line: None)
            started = time.process_time()
            for study in studies:
                syncer.ingest(study, "bench")
            best_new = min(best_new, time.process_time() - started)
            again = time.process_time()
            for study in studies:
                syncer.ingest(study, "bench")
            best_same = min(best_same, time.process_time() - again)
    return best_new, best_same, syncer


def bench_store(db_url: str, count: int, repeat: int) -> None:
    studies = renumbered(count)
    size = sum(len(json.dumps(s)) for s in studies)
    print(f"store: {db_url.split('?')[0]}; {count} records ({size / 1e6:.1f} MB of API JSON), best of {repeat}")
    rates = {}
    for label, stdlib in (("json.dumps (before)", True), ("orjson", False)):
        with stdlib_json(stdlib):
            new_s, same_s, syncer = ingest_cpu_seconds(f"{db_url}-{'std' if stdlib else 'orjson'}", studies, repeat)
        rates[label] = count / new_s
        print(f"  {label:20} new: {count / new_s:7.0f} records/CPU-s; same again (unchanged): "
              f"{count / same_s:7.0f} records/CPU-s; outcomes {syncer.counts.summary()}")
    print(f"  orjson / json.dumps: x{rates['orjson'] / rates['json.dumps (before)']:.2f} records/s (goal >= 2x)")


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
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", help="store URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_store(args.db or str(Path(tmp) / "bench-store.db"), args.records, args.repeat)
        bench_incremental(args.db or str(Path(tmp) / "bench-incremental.db"), args.trials)


if __name__ == "__main__":
    main()
