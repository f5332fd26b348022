"""Time helpers: everything is stored and compared in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Treat a naive datetime as UTC; convert an aware one to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# A year outside these is a typo or a probe, and near the ends of the calendar an offset can push
# the UTC instant out of Python's range.
MIN_YEAR, MAX_YEAR = 1970, 9000


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


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with offset and millisecond precision, as Statuspage writes it."""
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
