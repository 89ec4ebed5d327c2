"""Click options shared by several commands, so every store-using command spells them the same.

    @click.command()
    @db_option
    @click.pass_context
    def results(ctx, db):
        with open_command_store(ctx, db) as store: ...
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from connector.config import Config, load_config, resolve_store_url
from connector.registry.ids import InvalidNctId, normalise_nct_id
from connector.store import Store, open_existing_store, open_store

if TYPE_CHECKING:  # the mapping loader (jsonschema, UCUM units) is imported only by commands that read mappings
    from connector.mapping.catalog import MappingSources

F = TypeVar("F", bound=Callable[..., Any])

db_option: Callable[[F], F] = click.option(
    "--db", "db", metavar="PATH_OR_URL", default=None,
    help="Store: a SQLite file or postgresql://... URL (default: env TRIAL_CONNECTOR_DB, "
         "else [store] url in the config, else ./trial-connector.db).",
)




ALL_TRIALS = "all"


def mapping_options(command: F) -> F:
    """`--mapping FILE` and `--mappings DIR` (both repeatable): where a command's mappings come from."""
    command = click.option(
        "--mappings", "mapping_dirs", multiple=True, metavar="DIR", type=click.Path(path_type=Path),
        help="Folder of mapping files, searched after --mapping (repeatable; then the config's "
             "[mappings] dir, then the bundled mappings; never the working directory).")(command)
    return click.option(
        "--mapping", "mapping_files", multiple=True, metavar="FILE", type=click.Path(path_type=Path),
        help="Mapping file to use (repeatable: one per trial).")(command)


def mapping_sources(ctx: click.Context, files: tuple[Path, ...], dirs: tuple[Path, ...]) -> MappingSources:
    """The mapping search order for this command: its options, then the config, then bundled."""
    from connector.mapping.catalog import MappingSources

    return MappingSources.of(files, dirs, command_config(ctx))


def trial_id(value: str) -> str:
    """A `--trial` value in the one canonical spelling (`nct5773274` -> `NCT05773274`), or a
    one-line error: the registry API's own id pattern, shared by every command."""
    try:
        return normalise_nct_id(value)
    except InvalidNctId:
        raise InvalidNctId(f"--trial {value!r} is not a ClinicalTrials.gov id (expected NCT followed by up to "
                           "8 digits, e.g. NCT05773274)") from None


def trial_option(required: bool = True, multiple: bool = False, portfolio: bool = False) -> Callable[[F], F]:
    """`--trial NCT...`, normalised by click's callback so every command applies the same rule.

    portfolio: the option may be left out or given as `all` (kept as ALL_TRIALS): every available
    mapping is screened (connector.commands.portfolio)."""
    def one(value: str) -> str:
        return ALL_TRIALS if portfolio and value.strip().lower() == ALL_TRIALS else trial_id(value)

    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        return tuple(dict.fromkeys(one(v) for v in value)) if multiple else one(value)

    text = "NCT id, e.g. NCT05773274" + (" (repeatable)" if multiple else "")
    if portfolio:
        text += "; leave it out or give 'all' to screen every available mapping (the portfolio)"
    return click.option("--trial", "trials" if multiple else "trial", required=required and not portfolio,
                        multiple=multiple, callback=convert, help=text + ".")


def command_config(ctx: click.Context) -> Config:
    """The AppContext's config, or the default config when a command runs without the root group."""
    config = getattr(ctx.obj, "config", None)
    return config if isinstance(config, Config) else load_config(None)


def store_url(ctx: click.Context, db: str | None) -> str:
    """Apply the location rule: --db > TRIAL_CONNECTOR_DB > [store] url > ./trial-connector.db."""
    return resolve_store_url(db or getattr(ctx.obj, "db", None), command_config(ctx))


def open_command_store(ctx: click.Context, db: str | None) -> Store:
    """Open (and migrate) the store a command should use; close it with `with` or `.close()`."""
    return open_store(store_url(ctx, db))


def open_existing_command_store(ctx: click.Context, db: str | None) -> Store:
    """For read-only commands: the store, which must already exist (never created by reading)."""
    return open_existing_store(store_url(ctx, db))
