"""Instants that peers send (an agent's event `at`): RFC 3339 with an offset, near the server's clock.

An instant is part of the session store's key and sort order, and the report subtracts two of
them: a string with no zone beside one with a zone cannot be subtracted, and strings in different
zones do not sort in time order. So every instant is checked when it comes in and kept in one
form, UTC with milliseconds (`2026-11-27T20:00:05.000+00:00`, what the agent writes), in which
string order is time order. Rows an older version stored unchecked are read leniently
(`stored_instant`). Pure.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

MAX_CLOCK_SKEW_S = 86400.0
"""How far an instant may lie from the server's clock, either way: an agent's window is seconds
old when it is posted, a queued one minutes; a day leaves room for a wrong clock, not for a forgery
that would sort before or after a whole session."""

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?")
MAX_INSTANT_CHARS = 40


class InstantError(ValueError):
    """An instant refused; `reason` is a stable code (`not_a_string`, `not_a_date`, `no_time_zone`,
    `too_far_future`, `too_far_past`)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_instant(value: object) -> datetime:
    """An RFC 3339 date-time with an offset (Z or ±hh:mm) → an aware datetime in UTC."""
    if not isinstance(value, str):
        raise InstantError(f"must be an RFC 3339 date-time string, not {_type_name(value)}", "not_a_string")
    match = _RFC3339.fullmatch(value) if len(value) <= MAX_INSTANT_CHARS else None
    if match is None:
        raise InstantError("not an RFC 3339 date-time (e.g. 2026-11-27T20:00:05.000Z)", "not_a_date")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if not zulu and not sign:
        raise InstantError("has no time zone: add Z or an offset such as +01:00", "no_time_zone")
    try:
        offset = timedelta(0) if zulu else (1 if sign == "+" else -1) * timedelta(hours=int(off_h),
                                                                                   minutes=int(off_m))
        micros = int((fraction or "0").ljust(6, "0")[:6])
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros,
                         tzinfo=timezone(offset))
        return local.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # 2026-02-30, 25:00, a second 60, an offset of 24 hours
        raise InstantError("not an RFC 3339 date-time (no such day or time)", "not_a_date") from None


def utc_text(instant: datetime) -> str:
    """The one stored form: UTC, milliseconds, `+00:00` (string order is time order)."""
    return instant.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def checked_instant(value: object, now_s: float, max_skew_s: float = MAX_CLOCK_SKEW_S) -> str:
    """A peer's instant, checked (format, zone, within `max_skew_s` of `now_s`), in the stored form."""
    instant = parse_instant(value)
    skew_s = instant.timestamp() - now_s
    if not math.isfinite(skew_s) or skew_s > max_skew_s:
        raise InstantError(f"more than {max_skew_s:g} s ahead of the server's clock", "too_far_future")
    if skew_s < -max_skew_s:
        raise InstantError(f"more than {max_skew_s:g} s behind the server's clock", "too_far_past")
    return utc_text(instant)


def stored_instant(value: object) -> str | None:
    """An instant as a store may hold it (older versions kept any string) → the stored form, or None.

    A string with no zone is read as UTC: every netcheck that wrote one wrote UTC (the agent's
    clock is `datetime.now(timezone.utc)`); anything that is not a date is None (the row is skipped).
    """
    if not isinstance(value, str) or len(value) > MAX_INSTANT_CHARS:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    try:
        return utc_text(parse_instant(value if match.group(8) or match.group(9) else value + "Z"))
    except InstantError:
        return None


def has_zone(value: object) -> bool:
    """True for an RFC 3339 date-time with its offset (what `parse_instant` accepts)."""
    try:
        parse_instant(value)
    except InstantError:
        return False
    return True


def _type_name(value: object) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
