"""Start-up cost: `--help` lists every command without importing them, and the list stays true."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from connector.cli import COMMAND_HELP, COMMANDS, cli

IMPORTS_OF = """
import sys
from connector.cli import main
sys.argv = ["trial-connector", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
import json
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_after(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", IMPORTS_OF, *args], capture_output=True, text=True, check=True)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_no_command_and_no_heavy_stack():
    loaded = modules_after("--help")
    assert not {m for m in loaded if m.startswith("connector.commands.")}
    for heavy in ("requests", "jsonschema", "yaml", "pint", "connector.config", "connector.store", "sqlite3"):
        assert heavy not in loaded, heavy


def test_a_command_imports_only_its_own_module():
    loaded = modules_after("history", "--help")
    assert {m for m in loaded if m.startswith("connector.commands.")} <= {"connector.commands.history",
                                                                           "connector.commands.options"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_help_is_the_commands_own(name):
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    if name in COMMAND_HELP:
        assert click.Command(name, help=COMMAND_HELP[name]).get_short_help_str(300) == command.get_short_help_str(300)


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "connector", "--help"], capture_output=True, text=True,
                            check=True)
    for name in COMMANDS:
        assert f"  {name} " in result.stdout
