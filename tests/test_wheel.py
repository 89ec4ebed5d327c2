"""The package as hospital IT deploys it: a wheel installed into a fresh virtual environment
outside the repository finds its schemas and bundled mappings and screens the example cohort.

Kept offline and fast (about 10 s): the wheel is built without build isolation, installed
without dependencies, and the new environment borrows this interpreter's installed packages
through a `.pth` file (a plain path entry: the editable install's finder is not activated, so
`connector` can only come from the wheel).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import cli

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["pyproject.toml", "setup.py", "README.md", "connector", "schemas", "mappings", "examples/ctgov"]


def run(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with the wheel installed."""
    pytest.importorskip("setuptools", minversion="77")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    for name in SHIPPED:  # a clean copy: no build/ or egg-info left in the repository
        target = source / name
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist",
        source, cwd=root)
    wheel = next((root / "dist").glob("trial_connector-*.whl"))
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).stdout.strip())
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "borrowed-deps.pth").write_text("\n".join(sorted(borrowed)) + "\n", encoding="utf-8")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=root)
    return venv / "bin"


def test_wheel_ships_schemas_and_mappings_and_screens_the_example_cohort(installed: Path, tmp_path: Path):
    shutil.copytree(REPO / "examples" / "patients", tmp_path / "patients")
    where = run(installed / "python", "-c", "import connector; print(connector.__file__)", cwd=tmp_path).stdout
    assert str(installed.parent) in where and str(REPO) not in where  # the wheel, not the checkout
    result = run(installed / "trial-connector", "screen", "--trial", "NCT05773274", "--source", "patients",
                 "--as-of", "2026-11-16", "--format", "json", cwd=tmp_path, check=False)
    report = json.loads(result.stdout)
    checkout = CliRunner().invoke(cli, ["screen", "--trial", "NCT05773274", "--source", str(tmp_path / "patients"),
                                        "--as-of", "2026-11-16", "--format", "json"], standalone_mode=False)
    assert report["patients"] == json.loads(checkout.stdout)["patients"]  # same results as from the checkout
    assert result.returncode == checkout.return_value  # 0, or 3 for the cohort's one malformed resource
    assert {p["status"] for p in report["patients"]} == {"candidate", "possible", "excluded"}
    assert "site-packages/connector/bundled_mappings/NCT05773274.yaml" in report["mapping"]["file"]
    assert "Traceback" not in result.stderr
    listed = run(installed / "trial-connector", "mappings", "list", cwd=tmp_path).stdout
    assert "bundled" in listed and "site-packages/connector/bundled_mappings/NCT05773274.yaml  (used)" in listed
    assert not (tmp_path / "trial-connector.db").exists()  # screening leaves no store behind
