"""Timestamps as the store keeps them: ISO-8601 UTC text, microsecond precision.

One fixed format on both backends means string order is time order, so `rescreen_after`
and run start times compare with plain `<` in SQL and Python alike.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def format_timestamp(moment: datetime) -> str:
    """`2025-01-02T03:04:05.000006+00:00`; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
