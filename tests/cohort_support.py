"""A few example patients whose records hold no malformed resource: a run over them exits 0."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "patients"
CLEAN = ("01-clear-candidate.json", "02-possible-missing-labs.json", "04-excluded-low-hemoglobin.json")


def clean_cohort(folder: Path) -> Path:
    folder.mkdir()
    for name in CLEAN:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder
