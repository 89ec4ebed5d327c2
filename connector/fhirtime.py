"""FHIR date, dateTime and instant values -> the calendar date as written and the instants meant.

Two questions need two answers: "is it in the window?" is asked in calendar dates as the
resource records them (its own offset), while "which is the latest?" compares full instants,
so `2026-11-10T23:30-05:00` is later than `2026-11-11T03:00+00:00` though written a day earlier.
A value without a time is a span (a day, a month, a year); a time without an offset, which
FHIR forbids but feeds send, is read as UTC.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from connector.facts import Moment

_VALUE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


class BadDate(ValueError):
    """Not a FHIR date, dateTime or instant."""


def parse_fhir_time(value: str) -> tuple[date, date, Moment]:
    """(first day, last day, moment) of a FHIR date/dateTime/instant; raises BadDate."""
    match = _VALUE_RE.match(value.strip())
    if not match:
        raise BadDate(value)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        y = int(year)
        if month is None:
            first, last = date(y, 1, 1), date(y, 12, 31)
        elif day is None:
            m = int(month)
            first, last = date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])
        else:
            first = last = date(y, int(month), int(day))
        if hour is None:
            start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
            end = datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1, microseconds=-1)
            return first, last, Moment(start, end)
        micro = int(round(float(fraction) * 1_000_000)) if fraction else 0
        tz = timezone.utc if offset in (None, "Z") else _offset(offset)
        # kept in its own offset: aware datetimes compare as instants whatever their offsets
        instant = datetime(y, int(month), int(day), int(hour), int(minute), int(second or 0), min(micro, 999_999),
                           tzinfo=tz)
    except ValueError:
        raise BadDate(value) from None
    return first, last, Moment(instant, instant)


@lru_cache(maxsize=64)  # a feed uses a handful of offsets: one timezone object each
def _offset(text: str) -> timezone:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def latest_group(items: list, moment_of) -> list:
    """The items that may be the latest: every one whose span reaches the latest start.

    Exact instants give the items at the newest instant (a tie only when they are equal); a
    date-only value ties with a timed value on the same day, because which came first is not
    recorded. Order among them is never decided by id or by the order they arrived in.
    """
    dated = [(moment_of(item), item) for item in items]
    dated = [(m, item) for m, item in dated if m is not None]
    if not dated:
        return []
    newest_start = max(m.earliest for m, _ in dated)
    return [item for m, item in dated if m.latest >= newest_start]
