"""The `trial-connector` command line: global options, logging, and lazy sub-command loading.

Each sub-command lives in `connector/commands/<name>.py`; loading them lazily keeps
`trial-connector --help` fast and lets one command's heavy imports not slow the others.
The global options (-v, --config, --db) are accepted before or after the sub-command.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from connector import __version__
from connector.errors import EXIT_DATA, ConnectorError

if TYPE_CHECKING:
    from connector.config import Config

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "fetch": "connector.commands.fetch:fetch",
    "servers": "connector.commands.servers:servers",
    "screen": "connector.commands.screen:screen",
    "run": "connector.commands.run:run",
    "results": "connector.commands.results:results",
    "history": "connector.commands.history:history",
    "report": "connector.commands.report:report",
    "registry": "connector.commands.registry:registry",
    "mappings": "connector.commands.mappings:mappings",
}

# command name -> its help text's first sentence, so `--help` lists the commands without
# importing them (each pulls in its own stack: HTTP, JSON Schema, the store...). A command
# missing here is imported for its help; tests/test_startup.py keeps these true.
COMMAND_HELP: dict[str, str] = {
    "fetch": "Fetch one patient's data and print its facts grouped by type, with counts.",
    "servers": "FHIR servers: list the configured ones, check what one supports and whether auth works.",
    "screen": "Pre-screen patients for one trial, or rank every available trial for them (the portfolio).",
    "run": "Screen a population against trials, store the results, report who is new.",
    "results": "Show stored results: table, JSON (as `screen --format json`), CSV, or FHIR ResearchSubjects.",
    "history": "How a patient's pre-screen status changed from run to run.",
    "registry": "Trial metadata from the ClinicalTrials.gov API v2: versioned, validated, change-aware.",
    "report": "A trial's feasibility report from stored results: funnel, work list, changes, trend.",
    "mappings": "Trial mappings: list the available ones, show one, check a file's validity and coverage, "
                "draft one from registry text, evaluate drafts.",
}


@dataclass
class AppContext:
    """Shared state handed to every sub-command through click's context."""

    config_path: Path | None = None
    verbosity: int = 0
    db: str | None = None  # the global --db; a command's own --db wins
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from connector.config import load_config  # not needed by `--help`

            self._config = load_config(self.config_path)
        return self._config


def _app(ctx: click.Context) -> AppContext:
    app = ctx.find_object(AppContext)
    if app is None:  # a command run without the root group (tests)
        app = ctx.ensure_object(AppContext)
    return app


def _set_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        app = _app(ctx)
        app.config_path, app._config = value, None


def _add_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        app = _app(ctx)
        app.verbosity += value
        setup_logging(app.verbosity)


def _set_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        _app(ctx).db = value


def _global_params(with_db: bool) -> list[click.Parameter]:
    """-v, --config (and --db) accepted after the sub-command too: `trial-connector run ... -v`."""
    params: list[click.Parameter] = [
        click.Option(["--config", "config_path"], type=click.Path(path_type=Path), default=None, expose_value=False,
                     callback=_set_config, is_eager=True,
                     help="TOML config file (default: ./trial-connector.toml if present)."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_add_verbosity,
                     help="More log output on stderr (-v info, -vv debug). Never PHI."),
    ]
    if with_db:
        params.append(click.Option(["--db"], metavar="PATH_OR_URL", default=None, expose_value=False,
                                   callback=_set_db, help="Store: a SQLite file or postgresql://... URL."))
    return params


def with_global_options(command: click.Command) -> click.Command:
    """Give a (lazily imported) command the global options, and check the config before its body
    runs, so a bad config file stops every command at start-up, never mid-run."""
    if getattr(command, "_has_global_options", False):
        return command
    names = {opt for p in command.params for opt in getattr(p, "opts", [])}
    command.params.extend(p for p in _global_params(with_db=True) if not set(p.opts) & names)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_global_options(sub)
    elif command.callback is not None:
        body = command.callback

        @functools.wraps(body)
        def checked(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            if isinstance(ctx.find_object(AppContext), AppContext):
                _ = ctx.find_object(AppContext).config  # type: ignore[union-attr]
            return body(*args, **kwargs)

        command.callback = checked
    command._has_global_options = True  # type: ignore[attr-defined]
    return command


class LazyGroup(click.Group):
    """A click group whose commands are imported only when used (or listed)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._available(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not self._available(cmd_name):
            return None
        module_name, attr = target.split(":")
        return with_global_options(getattr(importlib.import_module(module_name), attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from COMMAND_HELP: listing commands must not import them all."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in COMMAND_HELP:
                rows.append((name, click.Command(name, help=COMMAND_HELP[name]).get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    @staticmethod
    def _available(name: str) -> bool:
        return importlib.util.find_spec(COMMANDS[name].split(":")[0]) is not None


def setup_logging(verbosity: int) -> None:
    """Logs go to stderr so stdout stays machine-readable (json/csv output). Called again when
    -v follows the sub-command."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    if verbosity < 3:  # urllib3 logs full URLs with query strings; keep them for -vvv only
        logging.getLogger("urllib3").setLevel(max(level, logging.INFO))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config file (default: ./trial-connector.toml if present).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug). Never PHI.")
@click.option("--db", default=None, metavar="PATH_OR_URL",
              help="Store: a SQLite file or postgresql://... URL (also accepted after the sub-command).")
@click.version_option(__version__, prog_name="trial-connector")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, db: str | None) -> None:
    """Find and explain clinical-trial pre-screen candidates in FHIR R4 data.

    A pre-screen is not an enrolment decision: it lists candidates, with evidence,
    for a person to review.
    """
    setup_logging(verbose)
    ctx.obj = AppContext(config_path=config_path, verbosity=verbose, db=db)


def main() -> None:
    """Entry point: ConnectorErrors become one clear line on stderr and their exit code.

    A command may return an int: it becomes the process exit code (0 done, 3 partial, ...).
    """
    try:
        rc = cli.main(standalone_mode=False)
    except ConnectorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_DATA)
    sys.exit(rc if isinstance(rc, int) else 0)
