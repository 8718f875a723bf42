"""电解铝 Potlines: 铝液交流电耗 live and per statistical period against GB 21346-2022 levels and the NDRC
benchmark/baseline, the Faraday estimate against weighed production, line current and voltage."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from alumon.config import Potline
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context

UNIT_ALIAS = "$tag_unit_process"


def _energy(ctx: Context, board: dash.Dashboard, every: str) -> None:
    b = bands.al_liquid_ac(ctx.limits)
    board.with_row(p.row("铝液交流电耗", "AC energy per tonne of liquid aluminium"))
    board.with_panel(p.stat_panel(p.title("实时", "Live window"), [p.influx(
        q.kpi_last("al_liquid_ac", live=True), alias=UNIT_ALIAS)], p.KWH_PER_T, bands=b, w=6, h=8, decimals=0,
        description="kpi al_liquid_ac over the live rolling window (analytics.kpi_window_s)."))
    board.with_panel(p.timeseries_panel(p.title("铝液交流电耗", "AC kWh/t, live window"), [p.influx(
        q.kpi_series("al_liquid_ac", live=True), alias=UNIT_ALIAS)], p.KWH_PER_T, bands=b, w=18, h=8,
        interval=every, description="Rectifier AC energy over weighed liquid aluminium, rolling window."))
    board.with_panel(p.bargauge_panel(p.title("按统计期", "By statistical period"), [p.influx(
        q.kpi_last("al_liquid_ac", windows=q.PERIODS, group='"unit_process", "window"'),
        alias=f"{UNIT_ALIAS} $tag_window")], p.KWH_PER_T, bands=b, w=12, h=8,
        description="Rolling 24 h, shift, day, month and year to date (GB 21346-2022 judges the calendar year)."))
    board.with_panel(p.stat_panel(p.title("期末预测", "Projected to period end"), [p.influx(
        q.kpi_last("al_liquid_ac_projected", windows=("month", "year"), group='"unit_process", "window"'),
        alias=f"{UNIT_ALIAS} $tag_window")], p.KWH_PER_T, bands=b, w=12, h=8, decimals=0,
        description="Period to date plus the last 24 h's rates to the end of the month and year."))
    if any(isinstance(u, Potline) and u.auxiliary_energy for u in ctx.site.config.process_units):
        c = bands.gb21346(ctx.limits, "al_liquid_comprehensive_ac")
        board.with_panel(p.timeseries_panel(p.title("铝液综合交流电耗", "Comprehensive AC kWh/t"), [p.influx(
            q.kpi_series("al_liquid_comprehensive_ac", live=True), alias=UNIT_ALIAS)], p.KWH_PER_T, bands=c,
            w=12, h=8, interval=every, description="Rectifier AC plus the potroom auxiliaries, live window."))
        board.with_panel(p.bargauge_panel(p.title("综合交流电耗按统计期", "Comprehensive AC by period"), [p.influx(
            q.kpi_last("al_liquid_comprehensive_ac", windows=q.PERIODS, group='"unit_process", "window"'),
            alias=f"{UNIT_ALIAS} $tag_window")], p.KWH_PER_T, bands=c, w=12, h=8))


def _faraday(ctx: Context, board: dash.Dashboard, every: str) -> None:
    board.with_row(p.row("法拉第校核", "Faraday estimate vs weighed production (day to date)"))
    board.with_panel(p.timeseries_panel(p.title("产量", "Production, t"), [
        p.influx(q.kpi_series("production_deviation", window="day", field="weighed_t"), "A",
                 f"{UNIT_ALIAS} 称重 weighed"),
        p.influx(q.kpi_series("production_deviation", window="day", field="faraday_t"), "B",
                 f"{UNIT_ALIAS} 法拉第 Faraday")], p.TONNE, w=9, h=8, interval=every,
        description="Weighed aluminium (crucible scale) and Faraday's law from ∫I dt × cells × CE."))
    board.with_panel(p.timeseries_panel(p.title("称重与估算电耗", "kWh/t weighed vs Faraday estimate"), [
        p.influx(q.kpi_series("al_liquid_ac", window="day"), "A", f"{UNIT_ALIAS} 称重 weighed"),
        p.influx(q.kpi_series("al_liquid_ac_estimated", window="day"), "B", f"{UNIT_ALIAS} 估算 estimated")],
        p.KWH_PER_T, bands=bands.al_liquid_ac(ctx.limits), w=9, h=8, interval=every,
        description="Between tappings the scale says nothing; the estimate from the line current always does."))
    board.with_panel(p.stat_panel(p.title("偏差", "Deviation"), [p.influx(
        q.kpi_last("production_deviation", windows=("day",)), alias=UNIT_ALIAS)], p.SHARE,
        bands=bands.production_deviation(ctx.limits), w=6, h=8, decimals=1,
        description="|weighed − Faraday| / Faraday; beyond the limit suspect the scale or the DCCT."))


def _electrical(ctx: Context, board: dash.Dashboard) -> None:
    lines = [u for u in ctx.site.config.process_units if isinstance(u, Potline)]
    current = [(u, u.line_current) for u in lines if u.line_current]
    voltage = [(u, u.line_voltage) for u in lines if u.line_voltage]
    if not current and not voltage:
        return
    board.with_row(p.row("系列电流电压", "Line current and voltage"))
    note = ("Readings bound in the site file (process_units[].line_current / line_voltage) for every potline; "
            "the $unit selection applies to the KPI panels only.")
    for zh, en, unit, refs in (("系列电流", "Line current", p.KILOAMPERE, current),
                               ("系列电压", "Series voltage", p.VOLT, voltage)):
        if refs:
            targets = [p.influx(q.reading_mean(path), chr(ord("A") + i), u.name or u.id)
                       for i, (u, path) in enumerate(refs) if path is not None]
            board.with_panel(p.timeseries_panel(p.title(zh, en), targets, unit, w=12, h=8, description=note))


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("potline", "电解铝", "Potlines",
                     "铝液交流电耗 against GB 21346-2022 and the NDRC benchmark; Faraday cross-check; line current.")
    board.with_variable(p.unit_variable("\"kpi\" = 'al_liquid_ac'", "电解系列 Potline"))
    every = f"{ctx.site.config.analytics.evaluate_every_s:g}s"
    _energy(ctx, board, every)
    _faraday(ctx, board, every)
    _electrical(ctx, board)
    return board
