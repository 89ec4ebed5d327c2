"""Click options shared by several commands, so every store-using command spells them the same.

    @click.command()
    @db_option
    @click.pass_context
    def results(ctx, db):
        with open_command_store(ctx, db) as store: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import re

import click

from connector.config import Config, load_config, resolve_store_url
from connector.errors import ConfigError
from connector.store import Store, open_store

F = TypeVar("F", bound=Callable[..., Any])

db_option: Callable[[F], F] = click.option(
    "--db", "db", metavar="PATH_OR_URL", default=None,
    help="Store: a SQLite file or postgresql://... URL (default: env TRIAL_CONNECTOR_DB, "
         "else [store] url in the config, else ./trial-connector.db).",
)


NCT_ID = re.compile(r"^NCT\d{8}$")


def trial_id(value: str) -> str:
    """A `--trial` value as the mapping files name it (NCT + 8 digits), or a one-line error."""
    trial = value.strip().upper()
    if not NCT_ID.match(trial):
        raise ConfigError(f"--trial {trial!r} is not an NCT id (NCT followed by 8 digits)")
    return trial


def command_config(ctx: click.Context) -> Config:
    """The AppContext's config, or the default config when a command runs without the root group."""
    config = getattr(ctx.obj, "config", None)
    return config if isinstance(config, Config) else load_config(None)


def store_url(ctx: click.Context, db: str | None) -> str:
    """Apply the location rule: --db > TRIAL_CONNECTOR_DB > [store] url > ./trial-connector.db."""
    return resolve_store_url(db, command_config(ctx))


def open_command_store(ctx: click.Context, db: str | None) -> Store:
    """Open (and migrate) the store a command should use; close it with `with` or `.close()`."""
    return open_store(store_url(ctx, db))
