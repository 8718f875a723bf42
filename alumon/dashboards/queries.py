"""InfluxQL for the dashboards (measurements, tags and fields of ``alumon/schema.py``), and the template
variable substitution Grafana applies before a query reaches InfluxDB — used by the tests and by
``alumon grafana preview``, so both run exactly the text Grafana would.

Grafana's variables in these queries: ``$site``, ``$unit``, ``$device`` (inside ``/^...$/`` regexes: one value,
or ``(a|b|c)`` for several or All), ``$timeFilter`` (``time >= …ms and time <= …ms``), ``$__interval`` and
``$__interval_ms`` (time range / max data points, not below the panel's minimum interval).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alumon import schema

SITE = '"site" =~ /^$site$/'
UNIT = '"unit_process" =~ /^$unit$/'
DEVICE = '"device" =~ /^$device$/'
LIVE = '"window" =~ /^rolling_.*s$/'  # the live rolling window (rolling_60s, rolling_3600s, ...), not rolling_24h
PERIODS = ("rolling_24h", "shift", "day", "month", "year")


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def kpi_where(*conditions: str) -> str:
    return " AND ".join((SITE, *conditions, "$timeFilter"))


def _kpi(match: str) -> str:
    """A KPI name, or a /regex/ over names."""
    return f'"kpi" =~ {match}' if match.startswith("/") else f'"kpi" = {_q(match)}'


def _unit(unit: str | None, filtered: bool = True) -> list[str]:
    """The ``$unit`` selection, a fixed unit, or (``filtered`` False) every unit."""
    if unit is not None:
        return [f'"unit_process" = {_q(unit)}']
    return [UNIT] if filtered else []


def kpi_series(kpi: str, *, window: str | None = None, live: bool = False, unit: str | None = None,
               field: str = "value", group: str = '"unit_process"', valid_only: bool = False,
               aggregate: str = "mean", unit_filter: bool = True) -> str:
    """A KPI over time, ``aggregate`` per interval, one series per process unit (or ``group``)."""
    conds = [_kpi(kpi), *_unit(unit, unit_filter)]
    if valid_only:  # HJ 75: only valid minutes and hours count; the others are shown with their flag
        conds.append('"valid" = true')
    if live:
        conds.append(LIVE)
    if window is not None:
        conds.append(f'"window" = {_q(window)}')
    return (f'SELECT {aggregate}("{field}") FROM "{schema.KPI}" WHERE {kpi_where(*conds)} '
            f"GROUP BY time($__interval), {group} fill(none)")


def kpi_last(kpi_match: str, *, live: bool = False, windows: Sequence[str] = (), unit: str | None = None,
             group: str = '"unit_process"', field: str = "value") -> str:
    """The newest ``field`` in the range."""
    conds = [_kpi(kpi_match), *_unit(unit)]
    if live:
        conds.append(LIVE)
    if windows:
        conds.append(f'"window" =~ /^({"|".join(windows)})$/')
    return f'SELECT last("{field}") FROM "{schema.KPI}" WHERE {kpi_where(*conds)} GROUP BY {group}'


def kpi_fields(kpi_match: str, fields: Sequence[str], group: str, *, unit_filter: bool = True,
               first: str = "value") -> str:
    """The newest ``first`` with the other fields of the same point (an InfluxQL selector keeps its row)."""
    cols = ", ".join(f'"{f}"' for f in fields)
    where = kpi_where(_kpi(kpi_match), *_unit(None, unit_filter))
    return f'SELECT last("{first}") AS "{first}", {cols} FROM "{schema.KPI}" WHERE {where} GROUP BY {group}'


def kpi_points(kpi_match: str, fields: Sequence[str], group: str = '"unit_process", "kpi"') -> str:
    """Raw points (hourly means, minute values) of the selected units, no aggregation, for tables."""
    cols = ", ".join(f'"{f}"' for f in fields)
    return f'SELECT {cols} FROM "{schema.KPI}" WHERE {kpi_where(_kpi(kpi_match), UNIT)} GROUP BY {group}'


def reading_mean(path: str) -> str:
    """A gauge reading (``device.quantity`` of the site file) averaged per interval."""
    device, quantity = path.split(".", 1)
    return (f'SELECT mean("value") FROM "{schema.TELEMETRY}" WHERE {SITE} AND "device" = {_q(device)} '
            f'AND "quantity" = {_q(quantity)} AND $timeFilter GROUP BY time($__interval) fill(none)')


def counter_increase(path: str, factor: float, per_interval: bool = True) -> str:
    """A counter's increase × ``factor`` (e.g. kgce per unit): increments summed, steps backwards (a reset or an
    unflagged rollover) dropped as analytics drops them."""
    device, quantity = path.split(".", 1)
    inner = (f'SELECT non_negative_difference("value") AS "d" FROM "{schema.TELEMETRY}" WHERE {SITE} '
             f'AND "device" = {_q(device)} AND "quantity" = {_q(quantity)} AND $timeFilter')
    group = " GROUP BY time($__interval) fill(none)" if per_interval else ""
    return f'SELECT sum("d") * {factor:.6g} FROM ({inner}) WHERE $timeFilter{group}'


def alerts_annotation() -> str:
    return (f'SELECT "text", "state", "rule", "severity", "unit_process", "value", "limit" FROM "{schema.ALERTS}" '
            f"WHERE {SITE} AND $timeFilter")


def alerts_latest() -> str:
    """The newest state change of each rule and unit (the table keeps those still firing)."""
    return (f'SELECT last("state") AS "state", "text", "value", "limit", "limit_source", "incident" '
            f'FROM "{schema.ALERTS}" WHERE {SITE} AND {UNIT} AND $timeFilter GROUP BY "unit_process", "rule", '
            '"severity"')


def device_status() -> str:
    return (f'SELECT last("quality") AS "quality", "seq", "historical" FROM "{schema.TELEMETRY}" '
            f'WHERE {SITE} AND {DEVICE} AND $timeFilter GROUP BY "device"')


def poll_success() -> str:
    """Share of readings that carried a value: a failed poll sends its readings stale or bad, without one."""
    return (f'SELECT count("value") / count("seq") * 100 FROM "{schema.TELEMETRY}" WHERE {SITE} AND {DEVICE} '
            'AND $timeFilter GROUP BY time($__interval), "device" fill(none)')


def readings_rate() -> str:
    return (f'SELECT count("seq") * 1000 / $__interval_ms FROM "{schema.TELEMETRY}" WHERE {SITE} AND {DEVICE} '
            'AND $timeFilter GROUP BY time($__interval), "device" fill(none)')


def replayed_readings() -> str:
    """Readings the edge sent from its spool after an outage (``historical``): the backlog draining."""
    return (f'SELECT count("seq") FROM "{schema.TELEMETRY}" WHERE {SITE} AND {DEVICE} AND "historical" = true '
            'AND $timeFilter GROUP BY time($__interval), "device" fill(none)')


def dead_letters_rate() -> str:
    return (f'SELECT count("size") FROM "{schema.DEAD_LETTER}" WHERE {SITE} AND $timeFilter '
            'GROUP BY time($__interval), "reason" fill(none)')


def dead_letters_recent() -> str:
    return (f'SELECT "topic", "detail", "size" FROM "{schema.DEAD_LETTER}" WHERE {SITE} AND $timeFilter '
            'GROUP BY "reason" ORDER BY time DESC LIMIT 50')


# --- the services' self-metrics (measurement pipeline, analytics/pipeline.py) ----------------------------------

EDGE_AGENT = '"agent" = \'edge\''
INGEST_WORKERS = '"agent" =~ /^ingest-/'
_SCOPES = {"edge": ((EDGE_AGENT,), ""), "device": ((EDGE_AGENT, DEVICE), ', "device"'),
           "ingest": ((INGEST_WORKERS,), ', "agent"')}


def gauge(field: str, aggregate: str = "max", name: str | None = None) -> str:
    """A figure that is a level (spool depth, lag, cycle time), ``aggregate`` per interval, as column ``name``."""
    return f'{aggregate}("{field}") AS "{name or field}"'


def counter_rate(field: str, per: str = "1m", name: str | None = None) -> str:
    """A cumulative counter (polls_failed ...) as a rate per ``per``; a step backwards (the service restarted and
    counts from 0 again) is dropped rather than drawn as a negative rate."""
    return f'non_negative_derivative(max("{field}"), {per}) AS "{name or field}"'


def counter_steps(field: str, name: str | None = None) -> str:
    """A cumulative counter as its increase per interval (a restart's step backwards dropped)."""
    return f'non_negative_difference(max("{field}")) AS "{name or field}"'


def pipeline(scope: str, *columns: str) -> str:
    """Self-metrics per interval, one series per ``scope``: ``edge`` the edge agent (spool, MQTT), ``device`` each
    device of ``$device`` (the edge's poll figures), ``ingest`` each ingest worker (agent ``ingest-<worker>``).
    ``columns`` are ``gauge``, ``counter_rate`` or ``counter_steps`` selections (one kind per query)."""
    conds, group = _SCOPES[scope]
    return (f'SELECT {", ".join(columns)} FROM "{schema.PIPELINE}" WHERE {" AND ".join((SITE, *conds))} '
            f"AND $timeFilter GROUP BY time($__interval){group} fill(none)")


def edge_device_state() -> str:
    """Each device's newest poller state (ok, failing, breaker open) with its counters since the agent started."""
    return (f'SELECT last("state") AS "state", "polls_ok", "polls_failed", "polls_skipped", "missed_cycles", '
            f'"line_reconnects" FROM "{schema.PIPELINE}" WHERE {SITE} AND {EDGE_AGENT} AND {DEVICE} AND $timeFilter '
            'GROUP BY "device"')


def tag_values(measurement: str, key: str, where: str = "") -> str:
    """A template variable's options (SHOW TAG VALUES reads the index, not the points)."""
    cond = f" WHERE {where}" if where else ""
    return f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"{cond}'


# --- what Grafana does to a query before sending it ---------------------------------------------------------

_NICE_MS = (1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000,
            300_000, 600_000, 900_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
            43_200_000, 86_400_000, 604_800_000, 2_592_000_000, 31_536_000_000)


def parse_duration_ms(text: str) -> int:
    """Grafana's ``10s``, ``5m``, ``6h``, ``32d`` (also with a leading ``now-``)."""
    m = re.fullmatch(r"(?:now-)?(\d+)(ms|s|m|h|d|w|M|y)", text.strip())
    if m is None:
        raise ValueError(f"not a Grafana duration: {text!r}")
    unit_ms = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
               "M": 2_592_000_000, "y": 31_536_000_000}[m.group(2)]
    return int(m.group(1)) * unit_ms


def interval_ms(start_ms: int, end_ms: int, min_interval: str | None = None, max_points: int = 1000) -> int:
    """Grafana's $__interval: the range over the panel's data points, rounded to a readable step, not below
    the panel's minimum interval (the data source's default is 1 s)."""
    raw = max(1, (end_ms - start_ms) // max_points)
    nice = next((n for n in _NICE_MS if n >= raw), _NICE_MS[-1])
    return max(nice, parse_duration_ms(min_interval) if min_interval else 1000)


def _format_interval(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def regex_value(values: Sequence[str]) -> str:
    """A variable inside ``/^...$/``: Grafana escapes each value and joins several as ``(a|b)``."""
    escaped = [re.sub(r"([\\/^$.|?*+()\[\]{}])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(query: str, variables: Mapping[str, Sequence[str]], start_ms: int, end_ms: int,
                min_interval: str | None = None) -> str:
    step = interval_ms(start_ms, end_ms, min_interval)
    out = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    out = out.replace("$__interval_ms", str(step)).replace("$__interval", _format_interval(step))
    for name in sorted(variables, key=len, reverse=True):  # $unit before $u, should one ever exist
        value = regex_value(variables[name])
        out = out.replace(f"${{{name}}}", value).replace(f"${name}", value)
    if re.search(r"\$\{?[A-Za-z_]", out):  # a regex anchor ($/, $|, $)) is not a variable
        raise ValueError(f"unresolved variable in {out!r}")
    return out


def panel_range(panel: Mapping[str, Any], start_ms: int, end_ms: int) -> tuple[int, int]:
    """A panel's own relative time (``timeFrom``) replaces the dashboard's range, ending at the same time."""
    time_from = panel.get("timeFrom")
    return (end_ms - parse_duration_ms(time_from), end_ms) if time_from else (start_ms, end_ms)


def resolve_variables(board: Mapping[str, Any], run: Callable[[str], list[dict[str, Any]]], start_ms: int,
                      end_ms: int) -> dict[str, list[str]]:
    """Each variable's values as a viewer opening the dashboard gets them: its current value, or every
    option its query returns (All). Variables are resolved in order, so later ones may use earlier ones."""
    values: dict[str, list[str]] = {}
    for var in board.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        if current and current != "$__all" and current != ["$__all"]:
            values[var["name"]] = list(current) if isinstance(current, list) else [str(current)]
            continue
        query = interpolate(str(var["query"]), values, start_ms, end_ms)
        options = [str(row[1]) for series in run(query) for row in series.get("values", [])]
        values[var["name"]] = sorted(set(options)) or [""]
    return values
