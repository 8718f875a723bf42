"""``alumon grafana preview``: a PNG per dashboard, drawn headless with matplotlib (Agg) from the same
dashboard JSON and the same InfluxQL Grafana runs (``frames.panel_data``), laid out on Grafana's 24-column grid.

It is a review aid where no Grafana runs (CI, an engineer's laptop without one): the data and the limit
bands are those of the dashboard; the styling is only an approximation of Grafana's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from alumon.dashboards import queries as q
from alumon.dashboards.frames import PanelData, Run, panel_data

COLOURS = {"green": "#73BF69", "dark-green": "#37872D", "yellow": "#FADE2A", "orange": "#FF9830",
           "red": "#F2495C", "dark-red": "#C4162A", "purple": "#B877D9", "blue": "#5794F2"}
UNITS = {"percentunit": ("%", 100.0), "percent": ("%", 1.0), "conmgNm3": (" mg/Nm³", 1.0), "masst": (" t", 1.0),
         "kamp": (" kA", 1.0), "volt": (" V", 1.0), "ms": (" ms", 1.0), "s": (" s", 1.0)}
CJK_FONTS = ("Noto Sans CJK", "Noto Sans SC", "Source Han Sans", "WenQuanYi", "SimHei", "Microsoft YaHei",
             "PingFang", "AR PL")
GRID_W_IN, GRID_H_IN = 0.85, 0.36  # one Grafana column / row unit, in inches


@dataclass
class Preview:
    path: Path
    drawn: dict[str, int] = field(default_factory=dict)  # panel title -> series or rows drawn


def _cjk_font() -> str | None:
    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in sorted(names) if any(n.startswith(c) for c in CJK_FONTS)), None)


class Text:
    """Titles are bilingual; without a CJK font the Chinese half is dropped rather than drawn as boxes."""

    def __init__(self) -> None:
        font = _cjk_font()
        self.cjk = font is not None
        if font is not None:
            plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]

    def __call__(self, text: str) -> str:
        if self.cjk:
            return text
        latin = re.sub(r"[\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+", " ", text)
        return re.sub(r"\s+", " ", latin).strip(" ·")


def fmt(value: float | None, unit: str | None) -> str:
    if value is None:
        return "—"
    suffix, scale = UNITS.get(unit or "", ("", 1.0))
    if unit and unit.startswith("suffix:"):
        suffix = unit.removeprefix("suffix:")
    v = value * scale
    return f"{v:,.0f}{suffix}" if abs(v) >= 1000 else f"{v:,.3g}{suffix}"


def steps(config: Mapping[str, Any]) -> list[tuple[float | None, str]]:
    th = config.get("thresholds") or {}
    return [(s.get("value"), COLOURS.get(s.get("color", ""), s.get("color", "grey"))) for s in th.get("steps", [])]


def colour_of(value: float | None, config: Mapping[str, Any]) -> str:
    colour = "#8E8E8E"
    for mark, c in steps(config):
        if value is not None and (mark is None or value >= mark):
            colour = c
    return colour


def field_config(panel: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Defaults with the byName overrides of this series applied (thresholds, unit, display name)."""
    cfg = dict(panel.get("fieldConfig", {}).get("defaults", {}))
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o.get("matcher", {}).get("id") == "byName" and o["matcher"].get("options") == name:
            for prop in o.get("properties", []):
                cfg[prop["id"]] = prop.get("value")
    return cfg


@functools.cache
def _unix_epoch_x() -> float:
    return float(mdates.date2num(datetime(1970, 1, 1, tzinfo=UTC)))  # type: ignore[no-untyped-call]


def _x(t_ms: int) -> float:
    """matplotlib's date axis unit (days since its epoch), from epoch ms (date2num for every point was most of
    the time a panel with thousands of points took)."""
    return _unix_epoch_x() + t_ms / 86_400_000


def _draw_timeseries(ax: Axes, panel: Mapping[str, Any], data: PanelData, span: tuple[int, int], tz: ZoneInfo,
                     events: Sequence[tuple[int, str]], text: Text) -> int:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    bars = custom.get("drawStyle") == "bars"
    top = 0.0
    for s in data.series:
        points = [(_x(ms), v) for ms, v in zip(s.times_ms, s.values, strict=True) if v is not None]
        if not points:
            continue
        x, v = [p[0] for p in points], [p[1] for p in points]
        top = max(top, max(v))
        label = text(s.name)[:40]
        if bars:  # zero bars are invisible: only the others become patches (counters are mostly 0 per interval)
            width = (x[-1] - x[0]) / len(x) * 0.8 if len(x) > 1 else 1 / 48
            shown = [(xi, vi) for xi, vi in zip(x, v, strict=True) if vi != 0] or [(x[0], 0.0)]
            ax.bar([p[0] for p in shown], [p[1] for p in shown], width=width, align="edge", label=label, alpha=0.7)
        else:
            ax.plot(x, v, label=label, linewidth=1.2)
    if custom.get("thresholdsStyle", {}).get("mode", "off") != "off":
        marks = [(m, c) for m, c in steps(defaults) if m is not None and m <= 3 * top]
        for m, c in marks:
            ax.axhline(m, color=c, linewidth=1, linestyle="--")
        if marks:
            ax.set_ylim(top=max(top, marks[-1][0]) * 1.05)
    for t_ms, rule in events:
        ax.axvline(_x(t_ms), color=COLOURS["red"], linewidth=0.8, alpha=0.7)
        ax.annotate(rule, (_x(t_ms), 1.0), xycoords=("data", "axes fraction"), fontsize=6, color=COLOURS["red"],
                    rotation=90, va="top")
    ax.set_xlim(_x(span[0]), _x(span[1]))
    pattern = "%m-%d %H:%M" if span[1] - span[0] > 86_400_000 else "%H:%M"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(pattern, tz=tz))  # type: ignore[no-untyped-call]
    ax.tick_params(labelsize=7)
    if data.series:
        ax.legend(fontsize=6, loc="upper left", ncols=2, frameon=False)
    return len(data.series)


def _draw_values(ax: Axes, panel: Mapping[str, Any], data: PanelData, text: Text, bars: bool) -> int:
    """Stat (coloured tiles) and bar gauge (coloured bars): the last value of each series."""
    items = [(s, field_config(panel, s.name)) for s in data.series]
    ax.axis("off")
    if not items:
        return 0
    n = len(items)
    for i, (s, cfg) in enumerate(items):
        value, name = s.last(), text(str(cfg.get("displayName") or s.name))
        colour = colour_of(value, cfg)
        if bars:
            lo, hi = float(cfg.get("min", 0.0) or 0.0), cfg.get("max")
            hi = float(hi) if hi is not None else max((x.last() or 0.0) for x, _ in items) * 1.1 or 1.0
            frac = 0.0 if value is None else min(1.0, max(0.0, (value - lo) / ((hi - lo) or 1.0)))
            y = 1 - (i + 1) / n
            ax.add_patch(Rectangle((0.35, y + 0.15 / n), 0.5 * frac, 0.7 / n, color=colour))
            ax.text(0.34, y + 0.5 / n, name[:34], ha="right", va="center", fontsize=7)
            ax.text(0.86, y + 0.5 / n, fmt(value, cfg.get("unit")), ha="left", va="center", fontsize=7)
        else:
            x0 = i / n
            ax.add_patch(Rectangle((x0 + 0.01, 0.05), 1 / n - 0.02, 0.9, color=colour))
            ax.text(x0 + 0.5 / n, 0.62, fmt(value, cfg.get("unit")), ha="center", va="center",
                    fontsize=max(7, 16 - 2 * n), color="white", weight="bold")
            ax.text(x0 + 0.5 / n, 0.25, name[:28], ha="center", va="center", fontsize=6, color="white")
    return n


def _draw_table(ax: Axes, panel: Mapping[str, Any], data: PanelData, text: Text, tz: ZoneInfo) -> int:
    ax.axis("off")
    if not data.records:
        return 0
    cols = [c for c in data.columns if c not in ("payload_b64",)][:8]

    def cell(c: str, v: Any) -> str:
        if c == "time" and isinstance(v, int):
            return datetime.fromtimestamp(v / 1000, tz).strftime("%m-%d %H:%M")
        if isinstance(v, int | float) and not isinstance(v, bool):
            return fmt(v, field_config(panel, c).get("unit") or panel.get("fieldConfig", {}).get("defaults", {})
                       .get("unit"))
        return text(str(v))[:30] if v is not None else ""

    rows = [[cell(c, r.get(c)) for c in cols] for r in data.records[:12]]
    table = ax.table(cellText=rows, colLabels=[text(c)[:16] for c in cols], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    return len(data.records)


def _events(board: Mapping[str, Any], variables: Mapping[str, Sequence[str]], start_ms: int, end_ms: int,
            run: Run) -> list[tuple[int, str]]:
    out = []
    for anno in board.get("annotations", {}).get("list", []):
        target = anno.get("target") or {}
        if not target.get("query"):
            continue
        for s in run(q.interpolate(target["query"], variables, start_ms, end_ms)):
            cols = s.get("columns", [])
            for row in s.get("values", []):
                rec = dict(zip(cols, row, strict=True))
                out.append((int(rec["time"]), f"{rec.get('rule', '')} {rec.get('state', '')}"))
    return out


def render(board: Mapping[str, Any], run: Run, start_ms: int, end_ms: int, out_dir: Path) -> Preview:
    text = Text()
    tz = ZoneInfo(board.get("timezone") or "UTC") if board.get("timezone") not in (None, "browser", "utc") \
        else ZoneInfo("UTC")
    variables = q.resolve_variables(board, run, start_ms, end_ms)
    events = _events(board, variables, start_ms, end_ms, run)
    panels = board.get("panels", [])
    height = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=1) + 2
    fig = plt.figure(figsize=(24 * GRID_W_IN, height * GRID_H_IN), dpi=80)
    fig.suptitle(text(f"{board.get('title', '')}   {datetime.fromtimestamp(start_ms / 1000, tz):%Y-%m-%d %H:%M} – "
                      f"{datetime.fromtimestamp(end_ms / 1000, tz):%H:%M} {tz.key}"), fontsize=12, y=1 - 0.6 / height)
    preview = Preview(out_dir / f"{board.get('uid', 'dashboard')}.png")
    for panel in panels:
        g = panel["gridPos"]
        left, bottom = g["x"] / 24, 1 - (g["y"] + g["h"] + 1.5) / height
        if panel.get("type") == "row":
            fig.text(0.005, 1 - (g["y"] + 2.2) / height, text(panel.get("title", "")), fontsize=10, weight="bold")
            continue
        pad = 0.028 if panel.get("type") == "timeseries" else 0.006  # room for the y tick labels
        ax = fig.add_axes((left + pad, bottom + 0.35 / height, g["w"] / 24 - pad - 0.006, (g["h"] - 1.1) / height))
        ax.set_title(text(panel.get("title", ""))[:90], fontsize=8, loc="left")
        kind = panel.get("type")
        if kind == "text":
            ax.axis("off")
            ax.text(0, 1, text(panel.get("options", {}).get("content", ""))[:600], fontsize=6, va="top", wrap=True)
            continue
        data = panel_data(panel, variables, start_ms, end_ms, run)
        if kind == "timeseries":
            drawn = _draw_timeseries(ax, panel, data, q.panel_range(panel, start_ms, end_ms), tz, events, text)
        elif kind in ("stat", "bargauge"):
            drawn = _draw_values(ax, panel, data, text, bars=kind == "bargauge")
        else:
            drawn = _draw_table(ax, panel, data, text, tz)
        preview.drawn[panel.get("title", "")] = drawn
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(preview.path)
    plt.close(fig)
    return preview
