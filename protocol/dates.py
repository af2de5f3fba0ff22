"""What a typed date or time means, as ms since the Unix epoch (UTC).

One rule for every front end (the CLI's ``--closes``/``--opens``/``--until``, the web's
forms), so the same text typed in either gives the same instant:

- A bare date (``2027-03-01``) names a whole day in UTC. Where the time *ends* something
  (a proposal's or petition's ``closes``, a survey's ``closes``, a role's ``until``) it
  means the END of that day: its last millisecond, 23:59:59.999 UTC, so the whole day
  counts. Where it *starts* something (a survey's ``opens``) it means the START of that
  day, 00:00:00.000 UTC.
- A date and time (``2027-03-01T18:00``, with ``T`` or one space) is that instant: with
  ``Z`` or an offset (``+01:00``, ``+0100``) in that zone, without one in UTC. Seconds and
  up to six decimals of a second are optional.

Anything else (``20270301``, week dates, words, a time before 1970) is a :class:`BadTime`.
Pure: nothing here reads the clock, so "in the past" is the caller's check.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["DAY_MS", "BadTime", "closing_time", "opening_time", "parse_time"]

DAY_MS = 86_400_000
_MS_MAX = (1 << 63) - 1
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ]"
    r"(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


class BadTime(ValueError):
    """The text is not a date or a time in one of the accepted forms."""

    def __init__(self, text: str) -> None:
        super().__init__(f"not a date: {text!r} (use 2027-03-01 or 2027-03-01T18:00Z)")
        self.text = text


def parse_time(text: str, *, end_of_day: bool) -> int:
    """``text`` as ms since the epoch; a bare date is the first millisecond of that UTC
    day, or its last one when ``end_of_day`` (see the module's rule)."""
    stripped = text.strip()
    try:
        if _DATE.fullmatch(stripped):
            start = _ms(dt.datetime.fromisoformat(stripped).replace(tzinfo=dt.UTC))
            ms = start + DAY_MS - 1 if end_of_day else start
        else:
            match = _DATE_TIME.fullmatch(stripped)
            if match is None:
                raise BadTime(text)
            zone = (match["zone"] or "").upper()
            if zone and zone != "Z" and ":" not in zone:
                zone = f"{zone[:3]}:{zone[3:]}"
            when = dt.datetime.fromisoformat(f"{match['date']}T{match['time']}{zone}")
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            ms = _ms(when)
    except (ValueError, OverflowError):
        raise BadTime(text) from None
    if not 0 <= ms <= _MS_MAX:
        raise BadTime(text)
    return ms


def closing_time(text: str) -> int:
    """A time that ends something (``closes``, ``until``): a bare date is its last ms."""
    return parse_time(text, end_of_day=True)


def opening_time(text: str) -> int:
    """A time that starts something (``opens``): a bare date is its first ms."""
    return parse_time(text, end_of_day=False)


def _ms(when: dt.datetime) -> int:
    """Exact ms (no float rounding) of an aware datetime."""
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
