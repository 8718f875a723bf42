"""种子法规 Seed-law scorecard: the dated targets of the 2022 Guangxi decision (limits.yaml ``seed_targets``)
that this site's meters can measure, each with its current value, target and deadline, plus the year-to-date
energy levels and the ultra-low compliance behind them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from alumon.config import AluminaRefinery, CemsStack, Potline
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context

# target name in limits.yaml seed_targets -> (section of the decision, Chinese, English)
TARGETS = {
    "smelter_capacity_at_benchmark": ("§十一", "电解铝能效标杆产能占比", "Smelter capacity at the NDRC benchmark"),
    "alumina_at_gb21346_level1": ("§十一", "氧化铝达到能耗先进值", "Refineries at GB 21346-2022 level 1"),
    "non_fossil_electricity_share": ("§十二", "非化石能源电力占比", "Non-fossil electricity share"),
    "red_mud_new_utilisation_inland": ("§十三", "新增赤泥综合利用率", "New red mud utilised (inland)"),
    "red_mud_new_utilisation_coastal": ("§十三", "新增赤泥综合利用率", "New red mud utilised (coastal)"),
}


def measurable(ctx: Context) -> list[str]:
    """The targets analytics computes for this site (analytics/period_kpis.py ``_scorecard``)."""
    cfg = ctx.site.config
    out = []
    if any(isinstance(u, Potline) for u in cfg.process_units):
        out.append("smelter_capacity_at_benchmark")
    if any(isinstance(u, AluminaRefinery) for u in cfg.process_units):
        out.append("alumina_at_gb21346_level1")
    if cfg.scorecard.electricity_total and cfg.scorecard.electricity_non_fossil:
        out.append("non_fossil_electricity_share")
    if cfg.scorecard.red_mud_produced and cfg.scorecard.red_mud_utilised:
        out.append(f"red_mud_new_utilisation_{cfg.site.region}")
    return out


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("scorecard", "种子法规目标", "Seed-law scorecard",
                     "广西壮族自治区人大常委会关于促进铝产业高质量发展的决定 (2022-09-23): targets, values, deadlines.")
    board.with_variable(p.unit_variable(None))
    board.with_row(p.row("目标与期限", "Targets and deadlines (year to date)"))
    targets = measurable(ctx)
    for name in targets:
        section, zh, en = TARGETS[name]
        b, deadline = bands.seed_target(ctx.limits, name)
        comparison = str(ctx.limits.entry(f"seed_targets.{name}").get("comparison", "gte"))
        goal = f"{'>' if comparison == 'gt' else '≥'} {b.marks[0].value:.0%} by {deadline}"
        board.with_panel(p.stat_panel(f"{section} {zh} {en} ({goal})", [p.influx(
            q.kpi_last(f"scorecard_{name}", windows=("year",), unit=ctx.site_id), alias="年累计 year to date")],
            p.SHARE, bands=b, w=24 // max(1, len(targets)), h=6, decimals=0,
            description=f"kpi scorecard_{name}, year to date; met when {goal} (comparison {comparison})."))
    table = p.table_panel(p.title("全部目标", "All scorecard rows"), [p.influx(q.kpi_fields(
        "/^scorecard_/", ["target", "comparison", "deadline", "met", "completeness", "limit_source"], '"kpi"',
        unit_filter=False), as_table=True)], w=24, h=6,
        description="Every scorecard_* row analytics wrote, with the target, deadline and clause it is judged by.")
    table.overrides([p.named("value", "当前 current", unit=p.SHARE), p.named("target", "目标 target", unit=p.SHARE),
                     p.named("completeness", "完整率 completeness", unit=p.SHARE), p.cell_colour("met", p.MET)])
    board.with_panel(table)
    board.with_row(p.row("年度能效水平", "Year-to-date energy levels"))
    if "smelter_capacity_at_benchmark" in targets:
        board.with_panel(p.bargauge_panel(p.title("铝液交流电耗 年累计", "AC kWh/t, year to date"), [p.influx(
            q.kpi_last("al_liquid_ac", windows=("year",)), alias="$tag_unit_process")], p.KWH_PER_T,
            bands=bands.al_liquid_ac(ctx.limits), w=12, h=7,
            description="A potline counts for the target when its year-to-date value meets the NDRC benchmark."))
    refineries = {u.process for u in ctx.site.config.process_units if isinstance(u, AluminaRefinery)}
    if refineries:
        levels = bands.gb21346(ctx.limits, f"{sorted(refineries)[0]}.comprehensive_energy", "alumina") \
            if len(refineries) == 1 else None  # Bayer and other processes have different levels
        board.with_panel(p.bargauge_panel(p.title("氧化铝综合能耗 年累计", "Alumina kgce/t, year to date"), [p.influx(
            q.kpi_last("comprehensive_energy", windows=("year",)), alias="$tag_unit_process")], p.KGCE_PER_T,
            bands=levels, w=12, h=7, description="A refinery counts for the target at GB 21346-2022 level 1."))
    if any(isinstance(u, CemsStack) for u in ctx.site.config.process_units):
        board.with_row(p.row("§十一 超低排放", "Ultra-low emissions, month to date"))
        compliance = p.table_panel(p.title("排口月度达标", "Stacks within ultra-low limits"), [p.influx(
            q.kpi_fields("/_monthly_compliance$/", ["valid_hours", "exceedance_hours", "min_share", "met"],
                         '"unit_process", "kpi"'), as_table=True)], w=24, h=7,
            description="The decision asks every refinery and smelter to reach ultra-low emissions by 2025; "
                        "analytics judges each stack and pollutant by its month's share of valid hours within the "
                        "limit.")
        compliance.time_from("32d").overrides([p.named("value", "达标率 share", unit=p.SHARE),
                                               p.named("min_share", "要求 required", unit=p.SHARE),
                                               p.cell_colour("met", p.MET)])
        board.with_panel(compliance)
    return board
