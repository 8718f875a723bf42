"""A panel's data as Grafana would hold it: each target's InfluxQL, interpolated and run, turned into named
series (time series panels) or rows (tables), with the aliases and the table transformations the dashboards
use. ``alumon grafana preview`` draws these; the tests check every one of them returns data."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alumon.dashboards import queries as q

Run = Callable[[str], list[dict[str, Any]]]


@dataclass
class Series:
    name: str
    times_ms: list[int]
    values: list[float | None]

    def last(self) -> float | None:
        return next((v for v in reversed(self.values) if v is not None), None)


@dataclass
class PanelData:
    series: list[Series] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # tables: tags first, then the selected fields
    records: list[dict[str, Any]] = field(default_factory=list)


def alias_name(alias: str | None, measurement: str, column: str, tags: Mapping[str, str]) -> str:
    """Grafana's InfluxQL alias patterns ($tag_<key>, $col, $m); without one, ``measurement.column {tags}``."""
    if not alias:
        tag_text = ", ".join(f"{k}: {v}" for k, v in sorted(tags.items()))
        return f"{measurement}.{column}" + (f" {{{tag_text}}}" if tag_text else "")
    out = alias
    for key in sorted(tags, key=len, reverse=True):
        out = out.replace(f"$tag_{key}", tags[key])
    return out.replace("$col", column).replace("$measurement", measurement).replace("$m", measurement)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def to_series(result: list[dict[str, Any]], alias: str | None) -> list[Series]:
    out = []
    for s in result:
        cols = s.get("columns", [])
        for j, col in enumerate(cols[1:], start=1):
            values = [_number(row[j]) for row in s.get("values", [])]
            name = alias_name(alias, s.get("name", ""), col, s.get("tags") or {})
            if len(cols) > 2 and alias and "$col" not in alias:
                name = f"{name} {col}"
            out.append(Series(name, [int(row[0]) for row in s.get("values", [])], values))
    return out


def to_records(result: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Grafana's table format: one row per point, the series' tags as leading columns."""
    columns: list[str] = []
    records: list[dict[str, Any]] = []
    for s in result:
        tags = s.get("tags") or {}
        for c in [*tags, *s.get("columns", [])]:
            if c not in columns:
                columns.append(c)
        records += [{**tags, **dict(zip(s.get("columns", []), values, strict=True))} for values in s.get("values", [])]
    return columns, records


def filter_records(records: list[dict[str, Any]], transformations: Sequence[Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The ``filterByValue`` transformation with ``equal`` matchers (the only kind the dashboards use)."""
    for t in transformations:
        if t.get("id") != "filterByValue":
            continue
        opts = t.get("options", {})
        tests = [(f["fieldName"], f["config"]["options"]["value"]) for f in opts.get("filters", [])
                 if f.get("config", {}).get("id") == "equal"]
        keep = opts.get("type", "include") == "include"
        if tests:
            records = [r for r in records if any(r.get(n) == v for n, v in tests) == keep]
    return records


def panel_data(panel: Mapping[str, Any], variables: Mapping[str, Sequence[str]], start_ms: int, end_ms: int,
               run: Run) -> PanelData:
    data = PanelData()
    s, e = q.panel_range(panel, start_ms, end_ms)
    for target in panel.get("targets", []):
        result = run(q.interpolate(str(target["query"]), variables, s, e, panel.get("interval")))
        if target.get("resultFormat") == "table":
            cols, records = to_records(result)
            data.columns += [c for c in cols if c not in data.columns]
            data.records += records
        else:
            data.series += to_series(result, target.get("alias"))
    data.records = filter_records(data.records, panel.get("transformations") or [])
    return data
