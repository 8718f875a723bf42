"""厂区总览 Plant overview: each process unit's headline KPI against its level bands, the alerts still firing,
and how complete the data behind the KPIs is."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from alumon.config import AluminaRefinery, CemsStack, Potline
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context

POLLUTANT_NAMES = {"pm": "颗粒物 PM", "so2": "SO₂", "nox": "NOₓ", "fluoride_as_F": "氟化物 F"}


def _headline(ctx: Context, unit: Potline | AluminaRefinery | CemsStack) -> p.Panel:
    name = unit.name or unit.id
    if isinstance(unit, Potline):
        b = bands.al_liquid_ac(ctx.limits)
        return p.stat_panel(f"{name} · 铝液交流电耗 AC kWh/t", [p.influx(q.kpi_last(
            "al_liquid_ac", live=True, unit=unit.id), alias="$tag_unit_process")], p.KWH_PER_T, bands=b, decimals=0,
            description="Live rolling window of analytics (kpi al_liquid_ac) against GB 21346-2022 and NDRC.")
    if isinstance(unit, AluminaRefinery):
        b = bands.gb21346(ctx.limits, f"{unit.process}.comprehensive_energy", "alumina")
        return p.stat_panel(f"{name} · 综合能耗 kgce/t", [p.influx(q.kpi_last(
            "comprehensive_energy", live=True, unit=unit.id), alias="$tag_unit_process")], p.KGCE_PER_T, bands=b,
            decimals=0, description="Live rolling window (kpi comprehensive_energy) against GB 21346-2022.")
    panel = p.stat_panel(f"{name} · 折算浓度 corrected mg/m³", [p.influx(q.kpi_last(
        "/_corrected$/", live=True, unit=unit.id, group='"kpi"'), alias="$tag_kpi")], p.MG_NM3, decimals=1,
        description="Live rolling mean of the valid corrected samples per pollutant (kpi <pollutant>_corrected), "
                    "each against its ultra-low limit.")
    panel.overrides([p.named(f"{pol}_corrected", POLLUTANT_NAMES[pol],
                             bands.pollutant(ctx.limits, [unit.source_type.value], pol))
                     for pol in unit.pollutants])
    return panel


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("overview", "厂区总览", "Plant overview",
                     "Every process unit's headline KPI against its limits, firing alerts, data completeness.")
    board.with_variable(p.unit_variable(None))
    board.with_row(p.row("关键指标", "Headline KPIs"))
    for unit in ctx.site.config.process_units:
        board.with_panel(_headline(ctx, unit))
    board.with_row(p.row("告警与数据", "Alerts and data"))
    alerts = p.table_panel(p.title("当前告警", "Firing alerts"), [p.influx(q.alerts_latest(), as_table=True)],
                           w=14, h=8, description="The newest state change of each rule and unit over 7 days; "
                                                  "only those still firing are shown (measurement alerts).")
    alerts.time_from("7d").with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    alerts.with_transformation(dm.DataTransformerConfig(id_val="filterByValue", options={
        "type": "include", "match": "any",
        "filters": [{"fieldName": "state", "config": {"id": "equal", "options": {"value": "firing"}}}]}))
    alerts.overrides([p.cell_colour("state", p.ALERT_STATES)])
    board.with_panel(alerts)
    need = bands.completeness(ctx.site.config)
    board.with_panel(p.bargauge_panel(
        p.title("数据完整率", "Data completeness of the live KPIs"),
        [p.influx(q.kpi_last("/^(al_liquid_ac|comprehensive_energy)$|_corrected$/", live=True,
                             group='"unit_process", "kpi"', field="completeness"), alias="$tag_unit_process $tag_kpi")],
        p.SHARE, bands=need, w=10, h=8, minimum=0, maximum=1,
        description="Share of the live window covered by good data (field completeness of the kpi rows); below "
                    "the site's analytics.min_completeness the alert rules do not judge the value."))
    return board
