"""Error types and the CLI exit codes they map to (cron jobs read these)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1  # bad input: usage, mapping, config, malformed data
EXIT_SOURCE = 2  # server or network unreachable after retries
EXIT_PARTIAL = 3  # run finished, some patients failed
EXIT_LOCKED = 4  # another run holds the lock
MAX_MESSAGE_CHARS = 500


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters: a message never carries a whole (possibly huge) bad value."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConnectorError(Exception):
    """Base class: its message is shown to the user as one line, with no PHI or secrets."""

    exit_code = EXIT_DATA


class ConfigError(ConnectorError):
    """The configuration file or environment is wrong."""


class MappingError(ConnectorError):
    """A mapping file is invalid: the message names the file, criterion id and JSON path."""


class ResourceError(ConnectorError):
    """A FHIR resource could not be read: the message names its reference, not its content."""


class SourceError(ConnectorError):
    """A server or network failure that retries did not cure."""

    exit_code = EXIT_SOURCE


class LockedError(ConnectorError):
    """Another scheduled run holds the lock."""

    exit_code = EXIT_LOCKED


class StoreError(ConnectorError):
    """The results store cannot be opened or used (bad path, newer schema, SQL failure)."""
