"""Checks every way a ticket comes in shares: addresses and times from outside."""

from __future__ import annotations

from datetime import datetime

from crisisdesk.kit.errors import InvalidInput
from crisisdesk.kit.time import as_utc
from crisisdesk.notify.addresses import normalize_email

# As incident ETAs and on-call times: a year outside these is a typo or a probe, and near the
# ends of the calendar an offset can push the UTC instant out of Python's range.
MIN_YEAR, MAX_YEAR = 1970, 9000
MAX_EMAIL = 320


def check_email(value: str | None, *, field: str = "requester_email") -> str | None:
    """A requester's address, lower-cased, or None when blank; a value that is not one names ``field``."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_EMAIL:
        raise InvalidInput(
            f"{text[:40]!r}… is longer than an email address can be ({MAX_EMAIL} characters)", field=field
        )
    return normalize_email(text, field=field)


def utc_time(value: datetime) -> datetime | None:
    """``value`` in UTC (naive taken as UTC), or None when it falls outside the years 1970 to 9000."""
    # Checked before converting: 9999-12-31T23:59-05:00 has no UTC instant.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        return None
    try:
        converted = as_utc(value)
    except OverflowError:
        return None
    return converted if MIN_YEAR <= converted.year <= MAX_YEAR else None


def check_time(value: datetime, *, field: str) -> datetime:
    """``value`` in UTC, or a 422 naming ``field`` when it falls outside the years 1970 to 9000."""
    converted = utc_time(value)
    if converted is None:
        raise InvalidInput(f"{field} must be a time between the years {MIN_YEAR} and {MAX_YEAR}", field=field)
    return converted
