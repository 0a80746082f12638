"""What Grafana does to a SQL panel's text before PostgreSQL sees it, so tests can run the
exact queries the dashboards send.

Two steps, in Grafana's order: the frontend interpolates template variables (``$user``,
``${user}``, ``$__interval``), quoting the values of multi-value or include-all variables
(``'a','b'``) and leaving a single value bare; then the PostgreSQL datasource expands its
macros (``$__timeFilter(col)`` and friends) with the panel's time range in RFC 3339 UTC.
Anything left looking like a variable or macro is an error here, where Grafana would send
it to the database as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)(?!\w*\()|\[\[(\w+)\]\]")
_MACRO = re.compile(r"\$(__\w+)\(([^)]*)\)")


class ExpansionError(ValueError):
    pass


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware")


def _rfc3339(at: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: '2026-11-25T16:50:33.123Z'."""
    utc = at.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def interpolate_variables(
    sql: str,
    variables: Mapping[str, str | list[str]],
    *,
    multi: frozenset[str] = frozenset(),
    interval: timedelta = timedelta(minutes=1),
) -> str:
    """Replace template variables the way Grafana's SQL datasources do.

    A list value (several chosen, or "All") becomes quoted, comma-separated literals; a
    single value of a variable in ``multi`` (multi-value or include-all) is quoted too;
    any other single value is inserted bare.
    """
    seconds = int(interval.total_seconds())
    builtins = {"__interval": f"{seconds}s", "__interval_ms": str(seconds * 1000)}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise ExpansionError(f"undefined template variable ${name}")
        value = variables[name]
        if isinstance(value, list):
            if not value:
                raise ExpansionError(f"${name} has no value")
            return ",".join(_quote(v) for v in value)
        return _quote(value) if name in multi else value

    return _VARIABLE.sub(replace, sql)


def _interval_seconds(text: str) -> int:
    match = re.fullmatch(r"'?(\d+)([smhdw])'?", text.strip())
    if not match:
        raise ExpansionError(f"not an interval: {text!r}")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return int(match.group(1)) * unit


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """Expand the PostgreSQL datasource's macros (the ones in Grafana's Go source)."""
    start, end = _rfc3339(time_range.start), _rfc3339(time_range.end)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")] if match.group(2).strip() else []
        if name == "__time" and len(args) == 1:
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch" and len(args) == 1:
            return f'extract(epoch from {args[0]}) AS "time"'
        if name == "__timeFilter" and len(args) == 1:
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom" and not args:
            return f"'{start}'"
        if name == "__timeTo" and not args:
            return f"'{end}'"
        if name in ("__timeGroup", "__timeGroupAlias") and len(args) >= 2:
            seconds = _interval_seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter" and len(args) == 1:
            return (
                f"{args[0]} >= {int(time_range.start.timestamp())} AND "
                f"{args[0]} <= {int(time_range.end.timestamp())}"
            )
        raise ExpansionError(f"undefined macro ${name}({match.group(2)})")

    expanded = _MACRO.sub(replace, sql)
    if "$__" in expanded:
        raise ExpansionError(f"unexpanded macro left in: {expanded}")
    return expanded


def grafana_sql(
    sql: str,
    time_range: TimeRange,
    variables: Mapping[str, str | list[str]] | None = None,
    *,
    multi: frozenset[str] = frozenset(),
) -> str:
    """The text Grafana sends to PostgreSQL for a panel's ``rawSql``."""
    return expand_macros(interpolate_variables(sql, variables or {}, multi=multi), time_range)
