"""Start-up cost, side by side (run by hand, not a test).

    python bench/startup_bench.py [--baseline main] [--repeat 7]

Times, each in fresh processes, median of --repeat runs:
- `python -c 'import click'` (the floor for any click CLI) vs `trial-connector --help`;
- a one-patient screen from a file (examples/patients/01-clear-candidate.json) with this tree
  vs the --baseline git ref (extracted with `git archive` into a temporary folder), once with
  a cold unit-answer cache (first run ever) and once warm (every later run).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATIENT = ROOT / "examples" / "patients" / "01-clear-candidate.json"
SCREEN = ["-m", "connector", "screen", "--trial", "NCT05773274", "--source", str(PATIENT), "--as-of", "2026-01-01"]


def timed(args: list[str], env: dict[str, str], repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git ref to compare the screen with")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f}); median of {args.repeat} runs")
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        cache = Path(tmp) / "cache"
        env = {**os.environ, "TRIAL_CONNECTOR_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        base_env = {**env, "PYTHONPATH": str(base)}

        def clear_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        click_s = timed(["-c", "import click"], env, args.repeat)
        help_s = timed(["-m", "connector", "--help"], env, args.repeat)
        base_help_s = timed(["-m", "connector", "--help"], base_env, args.repeat)
        base_screen = timed(SCREEN, base_env, args.repeat)
        cold = timed(SCREEN, env, args.repeat, before=clear_cache)
        warm = timed(SCREEN, env, args.repeat)
    print(f"{'':34} {'s':>7} {'ratio':>8}")
    print(f"{'import click':34} {click_s:7.3f} {'1.00x':>8}")
    print(f"{'--help (this tree)':34} {help_s:7.3f} {help_s / click_s:7.2f}x  of import click (goal <= 2x)")
    print(f"{'--help (' + args.baseline + ')':34} {base_help_s:7.3f} {base_help_s / click_s:7.2f}x  of import click")
    print(f"{'one-patient screen (' + args.baseline + ')':34} {base_screen:7.3f} {'1.00x':>8}")
    print(f"{'one-patient screen, cold cache':34} {cold:7.3f} {cold / base_screen:7.2f}x  of {args.baseline}")
    print(f"{'one-patient screen, warm cache':34} {warm:7.3f} {warm / base_screen:7.2f}x  of {args.baseline} "
          "(goal <= 0.33x)")


if __name__ == "__main__":
    main()
