"""烟气排放 CEMS stacks: corrected minute values and valid HJ 75 hourly means per stack against the ultra-low,
GB 25465-2010 special and Table 5 limits; every hour's flag; month-to-date ultra-low compliance."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from alumon.config import CemsStack
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context

POLLUTANTS = {"pm": ("颗粒物", "Particulate matter"), "so2": ("二氧化硫", "SO₂"), "nox": ("氮氧化物", "NOₓ"),
              "fluoride_as_F": ("氟化物", "Fluoride as F")}
FLAGS = {"N": ("N 正常 normal", "green"), "S": ("S 设定值 set value", "green"), "F": ("F 停运 stopped", "blue"),
         "M": ("M 维护 maintenance", "orange"), "C": ("C 校准 calibration", "orange"), "D": ("D 故障 fault", "red"),
         "T": ("T 超量程 over range", "red"), "B": ("B 通讯 communication", "red"),
         "H": ("H 有效数据不足 insufficient", "red")}
EXCEEDED = {"true": ("超标 exceeded", "red"), "false": ("未超标 within", "green")}


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("cems", "烟气排放", "CEMS stacks",
                     "HJ 75-2017 corrected minute values, valid hourly means and flags; ultra-low compliance.")
    board.with_variable(p.unit_variable('"kpi" =~ /_hourly$/', "排口 Stack"))
    stacks = [u for u in ctx.site.config.process_units if isinstance(u, CemsStack)]
    for pollutant, (zh, en) in POLLUTANTS.items():
        emitting = [s.source_type.value for s in stacks if pollutant in s.pollutants]
        if not emitting:
            continue
        b = bands.pollutant(ctx.limits, emitting, pollutant)
        board.with_row(p.row(zh, en))
        board.with_panel(p.timeseries_panel(p.title(f"{zh} 分钟值", f"{en}, valid minute values"), [p.influx(
            q.kpi_series(f"{pollutant}_minute", valid_only=True), alias="$tag_unit_process")], p.MG_NM3, bands=b,
            w=12, h=8, interval="1m",
            description="HJ 212 minute values at standard conditions, dry gas, corrected to the stack's reference "
                        "(kpi <pollutant>_minute, valid minutes only; the others appear in the hour table)."))
        board.with_panel(p.timeseries_panel(p.title(f"{zh} 小时均值", f"{en}, valid hourly means"), [p.influx(
            q.kpi_series(f"{pollutant}_hourly", valid_only=True), alias="$tag_unit_process")], p.MG_NM3, bands=b,
            w=12, h=8, bars=True, interval="1h",
            description="HJ 75 valid hourly means (≥ the limits.yaml minimum of valid minutes), timestamped at the "
                        "hour's start; an exceedance is a valid hour above the limit."))
    board.with_row(p.row("标记与达标", "Flags and compliance"))
    hours = p.table_panel(p.title("小时数据标记", "Hourly means and their flags"), [p.influx(
        q.kpi_points("/_hourly$/", ["value", "flag", "valid", "valid_minutes", "exceeded", "limit"]),
        as_table=True)], w=14, h=10,
        description="Every hour of every selected stack and pollutant; a calibration (C), stopped (F) or short "
                    "(H) hour is never an exceedance.")
    hours.overrides([p.named("value", "小时均值 mean", unit=p.MG_NM3),
                     p.named("limit", "超低限值 ultra-low", unit=p.MG_NM3), p.cell_colour("flag", FLAGS),
                     p.cell_colour("exceeded", EXCEEDED)])
    board.with_panel(hours)
    monthly = p.table_panel(p.title("月度超低排放达标", "Ultra-low compliance, month to date"), [p.influx(
        q.kpi_fields("/_monthly_compliance$/", ["valid_hours", "exceedance_hours", "min_share", "met"],
                     '"unit_process", "kpi"'), as_table=True)], w=10, h=10,
        description="Share of the month's valid hours within the ultra-low limit (limits.yaml "
                    "ultra_low_defaults.compliance_rule).\n\n" + bands.ultra_low_share(ctx.limits).describe())
    monthly.time_from("32d").overrides([p.named("value", "达标率 share", unit=p.SHARE),
                                        p.named("min_share", "要求 required", unit=p.SHARE),
                                        p.cell_colour("met", p.MET)])
    board.with_panel(monthly)
    return board
