"""Nothing left behind (issue 13): spill folders of a run killed with -9 are removed by the next
run (end to end, with real kills: test_chaos.py); an existing store file readable by others is
made owner-only, with a warning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from connector.sources.files import SPILL_PREFIX, remove_stale_spills
from connector.store import open_store


def test_an_existing_world_readable_store_is_made_owner_only_with_a_warning(tmp_path, caplog):
    path = tmp_path / "old.db"
    open_store(str(path)).close()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING), open_store(str(path)):
        pass
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert f"store file {path} was readable by others (mode 644); made owner-only (600)" in caplog.text


def test_a_live_run_s_spill_is_never_touched(tmp_path):
    live = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=tmp_path))
    (live / "owner.pid").write_text(str(os.getppid()))  # a process that is alive
    dead = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (dead / "owner.pid").write_text(str(child.pid))
    assert remove_stale_spills(str(tmp_path)) == 1
    assert live.exists() and not dead.exists()
