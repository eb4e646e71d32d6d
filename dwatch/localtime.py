"""Wall-clock times without a zone, read in a named zone: the two DST edge cases.

A local time in the hour repeated when clocks go back names two instants (the first,
daylight reading and the second, standard one); a local time in the hour skipped when
clocks go forward names none. DuckDB's ``timezone(zone, local)`` picks the later of the
two and moves a skipped time past the change, silently. Here both cases are found set-wise
and resolved by the mapping's ``ambiguous_time`` / ``nonexistent_time`` policy.

Finding them costs good rows almost nothing: the zone's transitions are read once from
the tz database (Python's zoneinfo), giving the months and local hours in which they fall;
only rows in those hours pay the exact test (converting back and forth with DuckDB).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

# Years whose transitions shape the cheap pre-filter; the exact test holds for any year.
_FIRST_YEAR, _LAST_YEAR = 1990, 2060


@dataclass(frozen=True)
class ZoneShape:
    months: tuple[int, ...]  # months in which the zone changes offset
    hours: tuple[int, ...]  # local hours (0-23) touched by a repeated or skipped hour
    shifts: tuple[int, ...]  # sizes of the offset changes, in seconds


@lru_cache(maxsize=32)
def zone_shape(zone: str) -> ZoneShape:
    """Where the zone's repeated and skipped local hours fall, from the tz database."""
    tz = ZoneInfo(zone)
    months: set[int] = set()
    hours: set[int] = set()
    shifts: set[int] = set()
    instant = datetime(_FIRST_YEAR, 1, 1, tzinfo=UTC)
    end = datetime(_LAST_YEAR, 12, 31, tzinfo=UTC)
    step = timedelta(days=1)
    offset = instant.astimezone(tz).utcoffset()
    while instant < end:
        later = instant + step
        new_offset = later.astimezone(tz).utcoffset()
        if new_offset != offset and offset is not None and new_offset is not None:
            change = _find_change(instant, later, tz)
            size = abs(int((new_offset - offset).total_seconds()))
            shifts.add(size)
            # Local wall times on either side of the change, widened to whole hours.
            for moment in (change - timedelta(seconds=size), change + timedelta(seconds=size)):
                local = moment.astimezone(tz)
                months.add(local.month)
            before = (change - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
            after = change.astimezone(tz).replace(tzinfo=None)
            low, high = min(before, after), max(before, after)
            hour = low.replace(minute=0, second=0, microsecond=0)
            while hour <= high:
                hours.add(hour.hour)
                hour += timedelta(hours=1)
        offset = new_offset
        instant = later
    return ZoneShape(tuple(sorted(months)), tuple(sorted(hours)), tuple(sorted(shifts)))


def _find_change(start: datetime, end: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (start, end] with the offset of ``end`` (to the second)."""
    target = end.astimezone(tz).utcoffset()
    low, high = int(start.timestamp()), int(end.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dst_class_sql(local: str, zone: str) -> str:
    """SQL: 'ambiguous', 'nonexistent' or NULL for the local TIMESTAMP ``local`` in ``zone``."""
    shape = zone_shape(zone)
    if not shape.shifts:
        return "CAST(NULL AS VARCHAR)"
    z = _lit(zone)
    instant = f"timezone({z}, {local})"
    repeated = " OR ".join(
        f"timezone({z}, {instant} {sign} INTERVAL {size} SECOND) = {local}"
        for size in shape.shifts
        for sign in ("-", "+")
    )
    months = ", ".join(str(m) for m in shape.months)
    hours = ", ".join(str(h) for h in shape.hours)
    return (
        f"CASE WHEN list_contains([{months}], month({local}))"
        f" AND list_contains([{hours}], hour({local})) THEN"
        f" CASE WHEN timezone({z}, {instant}) <> {local} THEN 'nonexistent'"
        f" WHEN {repeated} THEN 'ambiguous' END END"
    )


def local_instant_sql(local: str, dst_class: str, zone: str, ambiguous: str) -> str:
    """SQL: the instant of the local TIMESTAMP ``local`` in ``zone``.

    A repeated time takes the reading the policy names (NULL under ``quarantine``, for the
    caller's check); a skipped time is read with the offset in force before the change
    (DuckDB's own reading, 02:30 -> 03:30 daylight time), which is the ``shift`` policy."""
    z = _lit(zone)
    instant = f"timezone({z}, {local})"
    if ambiguous == "quarantine":
        pick = "NULL"
    else:
        sign = "-" if ambiguous == "earlier" else "+"
        pick = instant
        for size in zone_shape(zone).shifts:
            other = f"{instant} {sign} INTERVAL {size} SECOND"
            pick = f"CASE WHEN timezone({z}, {other}) = {local} THEN {other} ELSE {pick} END"
    return f"CASE WHEN {dst_class} = 'ambiguous' THEN {pick} ELSE {instant} END"
