"""氧化铝 Alumina refineries: 综合能耗 and 工艺能耗 (kgce/t) against GB 21346-2022 levels, and the energy
carriers behind them in kgce (each counter's increase × its GB/T 2589-2020 coefficient, as analytics counts)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from alumon.config import AluminaRefinery
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context
from analytics.readings import ReadingInfo

UNIT_ALIAS = "$tag_unit_process"
CARRIER_NAMES = {"electricity": "电力 electricity", "natural_gas": "天然气 natural gas", "steam": "蒸汽 steam",
                 "raw_coal": "原煤 coal", "coke": "焦炭 coke", "fuel_oil": "燃料油 fuel oil", "diesel": "柴油 diesel",
                 "lpg": "液化石油气 LPG", "heat": "热力 heat", "new_water": "新水 water",
                 "compressed_air": "压缩空气 compressed air", "oxygen": "氧气 oxygen"}


def carrier_name(coefficient: str) -> str:
    return next((name for key, name in CARRIER_NAMES.items() if coefficient.startswith(key)), coefficient)


def carriers(ctx: Context) -> list[tuple[str, str, float]]:
    """(label, reading path, kgce per reading unit) of every carrier of every refinery; exported energy counts
    negative. A coefficient without a value (limits.yaml ``unknown``) is left out, as analytics leaves it."""
    info = ReadingInfo(ctx.site)
    coefficients = ctx.limits.data["energy"]["coefficients_kgce"]
    out = []
    for unit in ctx.site.config.process_units:
        if not isinstance(unit, AluminaRefinery):
            continue
        for c in unit.carriers:
            entry = coefficients.get(c.coefficient)
            if entry is None or entry.get("value") is None:
                continue
            per_unit = str(entry["unit"]).split("/")[1]  # kgce/kWh -> kWh
            factor = float(entry["value"]) * info.factor(c.reading, per_unit) * (-1.0 if c.exported else 1.0)
            out.append((f"{unit.name or unit.id} · {carrier_name(c.coefficient)}", c.reading, factor))
    return out


def _levels(ctx: Context, indicator: str) -> bands.Bands | None:
    """Bands when every refinery of the site runs the same process (levels differ between Bayer and others)."""
    processes = {u.process for u in ctx.site.config.process_units if isinstance(u, AluminaRefinery)}
    if len(processes) != 1:
        return None
    return bands.gb21346(ctx.limits, f"{processes.pop()}.{indicator}", "alumina")


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("refinery", "氧化铝", "Alumina refineries",
                     "综合能耗 and 工艺能耗 against GB 21346-2022; energy carriers in kgce.")
    board.with_variable(p.unit_variable("\"kpi\" = 'comprehensive_energy'", "氧化铝厂 Refinery"))
    every = f"{ctx.site.config.analytics.evaluate_every_s:g}s"
    comp, proc = _levels(ctx, "comprehensive_energy"), _levels(ctx, "process_energy")
    board.with_row(p.row("单位产品能耗", "Energy per tonne of alumina"))
    board.with_panel(p.stat_panel(p.title("综合能耗 实时", "Comprehensive, live"), [p.influx(
        q.kpi_last("comprehensive_energy", live=True), alias=UNIT_ALIAS)], p.KGCE_PER_T, bands=comp, w=6, h=8,
        decimals=0, description="kpi comprehensive_energy over the live rolling window."))
    board.with_panel(p.timeseries_panel(p.title("综合能耗", "Comprehensive energy, live window"), [p.influx(
        q.kpi_series("comprehensive_energy", live=True), alias=UNIT_ALIAS)], p.KGCE_PER_T, bands=comp, w=18, h=8,
        interval=every, description="All carriers (process and auxiliary) per tonne of alumina produced."))
    for kpi, zh, en, b in (("comprehensive_energy", "综合能耗按统计期", "Comprehensive by period", comp),
                           ("process_energy", "工艺能耗按统计期", "Process energy by period", proc)):
        board.with_panel(p.bargauge_panel(p.title(zh, en), [p.influx(
            q.kpi_last(kpi, windows=q.PERIODS, group='"unit_process", "window"'),
            alias=f"{UNIT_ALIAS} $tag_window")], p.KGCE_PER_T, bands=b, w=12, h=8,
            description="Rolling 24 h, shift, day, month and year to date; 工艺能耗 counts process carriers only."))
    board.with_panel(p.stat_panel(p.title("期末预测", "Projected to period end"), [p.influx(
        q.kpi_last("/^(comprehensive|process)_energy_projected$/", windows=("month", "year"),
                   group='"unit_process", "kpi", "window"'), alias=f"{UNIT_ALIAS} $tag_kpi $tag_window")],
        p.KGCE_PER_T, w=24, h=5, decimals=0, description="Period to date plus the last 24 h's rates to its end."))
    found = carriers(ctx)
    if found:
        board.with_row(p.row("能源品种", "Energy carriers, kgce"))
        note = ("Each carrier's counter increase × its coefficient (limits.yaml energy.coefficients_kgce, "
                "GB/T 2589-2020), for every refinery of the site; the $unit selection applies to the KPI panels.")
        board.with_panel(p.timeseries_panel(p.title("能源品种构成", "Carriers per interval"), [
            p.influx(q.counter_increase(path, factor), chr(ord("A") + i), label)
            for i, (label, path, factor) in enumerate(found)], p.KGCE, w=16, h=9, bars=True, stacked=True,
            description=note))
        board.with_panel(p.bargauge_panel(p.title("时段合计", "Total in the time range"), [
            p.influx(q.counter_increase(path, factor, per_interval=False), chr(ord("A") + i), label)
            for i, (label, path, factor) in enumerate(found)], p.KGCE, w=8, h=9, description=note))
    return board
