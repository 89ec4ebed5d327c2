"""Draft mappings (written by `mappings draft`, not yet reviewed) screen only when asked to.

A draft's criteria were guessed from registry text; a result computed from one must never be
mistaken for a reviewed pre-screen, so commands refuse a draft unless `--allow-draft` is given,
and every result then carries `draft_mapping: true`.
"""

from __future__ import annotations

from connector.errors import MappingError
from connector.mapping.model import Mapping

ALLOW_DRAFT_HELP = ("Screen with a draft mapping (status: draft, written by `mappings draft`); every result "
                    "is marked as coming from an unreviewed draft.")


def check_draft(mapping: Mapping, name: str, allow_draft: bool) -> None:
    """Refuse a draft mapping unless the user allowed drafts."""
    if mapping.is_draft and not allow_draft:
        raise MappingError(f"{name} is a draft (status: draft): review it (`trial-connector mappings check {name}`) "
                           "and set `status: reviewed`, or pass --allow-draft to screen with it anyway")
