"""Retry timing shared by every HTTP client here (FHIR servers, Bulk status, ClinicalTrials.gov):
one reading of `Retry-After` and one backoff curve, so all clients behave alike."""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now` (epoch seconds): delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Delay before retry number `attempt` (1-based): exponential up to `cap`, the upper half
    spread by `jitter` in [0, 1) so that many clients do not retry in step."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return ceiling / 2 + jitter * ceiling / 2
