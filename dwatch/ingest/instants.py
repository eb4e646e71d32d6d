"""Instants: time-zone suffixes, Unix times, local times across DST, the plausible window,
and the warnings for local times in a repeated or skipped hour."""

from __future__ import annotations

import duckdb

from dwatch.ingest.base import TYPED, _FieldSQL, _lit
from dwatch.localtime import dst_class_sql, local_instant_sql
from dwatch.mapping import (
    SourceMapping,
)
from dwatch.schema import FieldSpec, load_schema

# US and territory zone abbreviations agency systems print after a local time
# ("2025-06-04 09:15:00 EDT"): each names one fixed offset, unlike a bare local time.
ZONE_ABBREVIATIONS = {
    "EST": "-05:00", "EDT": "-04:00", "CST": "-06:00", "CDT": "-05:00",
    "MST": "-07:00", "MDT": "-06:00", "PST": "-08:00", "PDT": "-07:00",
    "AKST": "-09:00", "AKDT": "-08:00", "HST": "-10:00", "HDT": "-09:00",
    "AST": "-04:00", "ADT": "-03:00", "CHST": "+10:00", "SST": "-11:00",
}  # fmt: skip
_ABBREVIATION = "|".join(ZONE_ABBREVIATIONS)
# timestamp_format values meaning Unix time, and their units per second.
EPOCH_FORMATS = {"epoch": 1, "epoch_ms": 1000, "epoch_us": 1_000_000}  # journald: epoch_us
# Zoned: an offset or Z, UTC/GMT, an abbreviation above, or an IANA name after a space
# ("2025-06-04 09:15:00 America/New_York", which DuckDB reads directly).
_TZ_SUFFIX = (
    r"(Z|z|[+-]\d{2}(:?\d{2})?|\s?UTC|\s?GMT|\s(?i:" + _ABBREVIATION + r")"
    r"|\s[A-Za-z]+/[A-Za-z_]+(/[A-Za-z_]+)?)$"
)


def _formats_sql(formats: tuple[str, ...], suffix: str = "") -> str:
    """strptime patterns as DuckDB takes them: one text, or a list tried in order."""
    if len(formats) == 1:
        return _lit(formats[0] + suffix)
    return "[" + ", ".join(_lit(f + suffix) for f in formats) + "]"


def _dst_checks(
    name: str, shown: str, dst: str, mapping: SourceMapping
) -> list[tuple[str, str, str]]:
    """Quarantine checks for the DST policies that say so (before the generic bad_timestamp)."""
    zone = mapping.timezone
    checks = []
    if mapping.ambiguous_time == "quarantine":
        checks.append(
            (
                f"{dst} = 'ambiguous'",
                "ambiguous_local_time",
                f"'{name}: ' || {shown} || ' falls in the hour repeated when clocks went back"
                f" in {zone} and names two instants; the mapping says ambiguous_time:"
                " quarantine (earlier or later picks one reading)'",
            )
        )
    if mapping.nonexistent_time == "quarantine":
        checks.append(
            (
                f"{dst} = 'nonexistent'",
                "nonexistent_local_time",
                f"'{name}: ' || {shown} || ' falls in the hour skipped when clocks went"
                f" forward in {zone} and never happened there; the mapping says"
                " nonexistent_time: quarantine (shift reads it with the earlier offset)'",
            )
        )
    return checks


# An offset written after a time whose hours pass 14 (no zone is further from UTC) or whose
# minutes pass 59: DuckDB would read '+25:00' as a day's shift.
_IMPOSSIBLE_OFFSET = (
    r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*[+-]((1[5-9]|[2-9]\d)(:?\d{2})?|\d{2}:?[6-9]\d)$"
)


def _instant_checks(f: FieldSpec, x: str, z: str, t: str, shown: str) -> list[tuple[str, str, str]]:
    """A zoned value with an impossible offset, a value that is no finite instant, and an
    instant outside the plausible window (schemas/canonical.yaml: instants)."""
    schema = load_schema()
    floor = schema.instants_not_before
    ahead = schema.instants_ahead_of_ingest
    ahead_text = f"{ahead.total_seconds() / 3600:g} hour(s)"
    return [
        (
            f"CASE WHEN {z} AND NOT ends_with({x}, 'Z') THEN"
            f" regexp_matches({x}, {_lit(_IMPOSSIBLE_OFFSET)}) ELSE false END",
            "bad_timestamp",
            f"'{f.name}: ' || {shown} || ' has an impossible UTC offset (offsets run from"
            " -12:00 to +14:00, minutes below 60); fix the value at the source'",
        ),
        (
            f"{t} IS NOT NULL AND NOT isfinite({t})",
            "bad_timestamp",
            f"'{f.name}: ' || {shown} || ' is not a point in time; write ISO 8601 such as"
            " 2025-08-07T14:03:00Z'",
        ),
        (
            f"{t} < {_lit(floor.isoformat())}::TIMESTAMPTZ"
            f" OR {t} > now() + INTERVAL {int(ahead.total_seconds())} SECOND",
            "out_of_range",
            f"'{f.name}: ' || {shown} || ' is outside the plausible window (not before"
            f" {floor.date().isoformat()}, at most {ahead_text} after the time of ingest);"
            " a date in the future is kept here as a finding: fix the clock or the value at"
            " the source (the window: instants in schemas/canonical.yaml)'",
        ),
    ]


def _zoned_sql(x: str, mapping: SourceMapping) -> str:
    """The instant of a value that names its zone (offset, Z, UTC/GMT, an abbreviation, or
    the mapping's format with %z), NULL otherwise."""
    # Most zoned stamps cast as they are; only a glued suffix (...00UTC) needs the rewrite,
    # and coalesce evaluates it for those rows alone.
    # Then an offset written after a space ("09:15:00 -04:00") and an abbreviation
    # replaced by its offset: later arguments run only for rows the earlier ones missed.
    abbreviations = ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in ZONE_ABBREVIATIONS.items())
    zoned = (
        f"coalesce(TRY_CAST({x} AS TIMESTAMPTZ),"
        f" TRY_CAST(regexp_replace({x}, '\\s?(UTC|GMT)$', 'Z') AS TIMESTAMPTZ),"
        f" TRY_CAST(regexp_replace({x}, '\\s+([+-]\\d{{2}}(:?\\d{{2}})?)$', '\\1') AS TIMESTAMPTZ),"
        f" TRY_CAST(regexp_replace({x}, '\\s+[A-Za-z]+$', '')"
        f" || MAP {{{abbreviations}}}[upper(regexp_extract({x}, '[A-Za-z]+$'))] AS TIMESTAMPTZ))"
    )
    fmt = mapping.timestamp_format
    formats = mapping.timestamp_formats
    if formats and any("%z" in f or "%Z" in f for f in formats):
        # The mapping's format carries the offset itself ("%m/%d/%Y %H:%M %z").
        zoned = f"coalesce({zoned}, try_strptime({x}, {_formats_sql(formats)})::TIMESTAMPTZ)"
    elif fmt and fmt not in EPOCH_FORMATS:
        # The mapping's format followed by an offset or a zone abbreviation
        # ("06/04/2025 09:15:00 AM EDT"): the zone written wins over the mapping's.
        with_zone = _formats_sql(formats, " %z")
        zoned = (
            f"coalesce({zoned}, try_strptime({x}, {with_zone}),"
            f" try_strptime(regexp_replace({x}, '\\s+[A-Za-z]+$', '') || ' '"
            f" || MAP {{{abbreviations}, 'UTC': '+00:00', 'GMT': '+00:00'}}"
            f"[upper(regexp_extract({x}, '[A-Za-z]+$'))], {with_zone}))"
        )
    return zoned


def timestamp_sql(f: FieldSpec, mapping: SourceMapping, spec: _FieldSQL, shown: str) -> None:
    """A TIMESTAMPTZ field: its typed value (zoned, Unix time, or local in the mapping's
    zone), its helpers and its checks, added to ``spec``."""
    x, t, checks = spec.x, spec.t, spec.checks
    z = f"z__{f.name}"
    spec.helpers.append((z, f"regexp_matches({x}, {_lit(_TZ_SUFFIX)})"))
    zoned = _zoned_sql(x, mapping)
    fmt = mapping.timestamp_format
    formats = mapping.timestamp_formats
    local = f"try_strptime({x}, {_formats_sql(formats)})" if fmt else f"TRY_CAST({x} AS TIMESTAMP)"
    if fmt in EPOCH_FORMATS:
        # Unix time is an instant: no zone to name. Zoned text still reads as written.
        per_second = EPOCH_FORMATS[fmt]
        spec.typed = (
            f"CASE WHEN {z} THEN {zoned}"
            f" ELSE try(to_timestamp(TRY_CAST({x} AS DOUBLE) / {per_second})) END"
        )
        checks.append(
            (
                f"{x} IS NOT NULL AND {t} IS NULL",
                "bad_timestamp",
                f"'{f.name}: ' || {shown} || ' is not a Unix time ({fmt}: "
                f"{ {1: 'seconds', 1000: 'milliseconds'}.get(per_second, 'microseconds') } since 1970-01-01 UTC);"
                " fix the value or timestamp_format in the source mapping'",
            )
        )
    elif mapping.timezone:
        # The local reading, and whether it falls in a repeated or skipped hour, are
        # helpers: computed once, used by the value and by the checks.
        lt, dst = f"l__{f.name}", f"d__{f.name}"
        spec.helpers.append((lt, f"CASE WHEN NOT {z} THEN {local}::TIMESTAMP END"))
        spec.helpers2.append((dst, dst_class_sql(lt, mapping.timezone)))
        reading = local_instant_sql(lt, dst, mapping.timezone, mapping.ambiguous_time)
        spec.typed = f"CASE WHEN {z} THEN {zoned} ELSE {reading} END"
        spec.dst = dst
        checks += _dst_checks(f.name, shown, dst, mapping)
        fmt_hint = (
            f" in the format {' or '.join(mapping.timestamp_formats)}"
            if mapping.timestamp_formats
            else ""
        )
        checks.append(
            (
                f"{x} IS NOT NULL AND {t} IS NULL",
                "bad_timestamp",
                f"'{f.name}: ' || {shown} || ' is not a timestamp{fmt_hint}; write ISO 8601"
                " (2025-08-07T14:03:00-04:00) or fix timestamp_format in the source mapping'",
            )
        )
    else:
        spec.typed = f"CASE WHEN {z} THEN {zoned} END"
        checks.append(
            (
                # Only a value shaped like a date (or Unix time) lacks just a zone:
                # 'garbage', 'NaT', '0', 'infinity' are bad timestamps. CASE keeps the
                # zoned rows, nearly all of them, from paying for the test.
                f"CASE WHEN {x} IS NULL OR {z} THEN false"
                f" ELSE regexp_full_match({x}, '\\d{{9,13}}(\\.\\d+)?')"
                f" OR regexp_matches({x}, '^\\d{{1,4}}[-/.]\\d{{1,2}}[-/.]\\d{{1,4}}') END",
                "timestamp_without_zone",
                # The message is built for refused rows only: recognising Unix time here
                # costs good rows nothing.
                f"CASE WHEN regexp_full_match({x}, '\\d{{9,13}}(\\.\\d+)?')"
                f" THEN '{f.name}: ' || {shown} || ' looks like a Unix time; name it in a"
                " source mapping (timestamp_format: epoch, or epoch_ms for milliseconds)'"
                f" ELSE '{f.name}: ' || {shown} || ' has no time zone; write an offset (Z, -05:00) or name the zone"
                " in a source mapping (timezone: America/New_York)' END",
            )
        )
        checks.append(
            (
                f"{x} IS NOT NULL AND {t} IS NULL",
                "bad_timestamp",
                f"'{f.name}: ' || {shown} || ' is not a valid timestamp; write ISO 8601 such as 2025-08-07T14:03:00Z'",
            )
        )
    checks += _instant_checks(f, x, z, t, shown)


def _dst_warnings(con: duckdb.DuckDBPyConnection, mapping: SourceMapping) -> list[str]:
    """Say how many zone-less times fell in a repeated or skipped hour and what was done,
    naming the policy and whether the mapping chose it or it is the default."""
    return _dst_messages(_dst_counts(con), mapping)


def _dst_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many zone-less times of TYPED fell in a repeated or a skipped hour."""
    rows = con.execute(f"SELECT _dst, count(*) FROM {TYPED} WHERE _dst IS NOT NULL GROUP BY 1")
    return {str(case): int(n) for case, n in rows.fetchall()}


def _dst_messages(counts: dict[str, int], mapping: SourceMapping) -> list[str]:
    """The DST warnings for these counts of ambiguous and nonexistent local times."""
    warnings = []
    for case, key, policy, done in (
        (
            "ambiguous",
            "ambiguous_time",
            mapping.ambiguous_time,
            {
                "earlier": "read as the first (earlier) of its two instants",
                "later": "read as the second (later) of its two instants",
                "quarantine": "quarantined (ambiguous_local_time)",
            },
        ),
        (
            "nonexistent",
            "nonexistent_time",
            mapping.nonexistent_time,
            {
                "shift": "read with the offset before the change (moved past the skipped hour)",
                "quarantine": "quarantined (nonexistent_local_time)",
            },
        ),
    ):
        n = counts.get(case, 0)
        if not n:
            continue
        hour = "repeated when clocks went back" if case == "ambiguous" else "skipped when"
        hour += "" if case == "ambiguous" else " clocks went forward"
        chosen = "set in the mapping" if key in mapping.explicit else "the default"
        warnings.append(
            f"{n} zone-less time(s) fall in the hour {hour} in {mapping.timezone}:"
            f" {done[policy]} ({key}: {policy}, {chosen}; set {key} in"
            f" {mapping.path or 'the source mapping'} to choose)"
        )
    return warnings
