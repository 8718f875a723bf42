"""边缘与数据管道 Edge and pipeline health, from what InfluxDB holds: each device's newest reading and its quality,
the share of readings that carried a value (poll success), readings stored per second, readings replayed from
an edge spool after an outage, dead letters, and analytics' data-quality signals (missed polls of each unit's
worst source, CEMS analyser fault time) against the alert rules that judge them.

Not in InfluxDB, so not here: the edge's spool depth, poll counters, breaker state and cycle times (edge
metrics and retained status go to MQTT only) and ingest's lag, buffer depth and write latency (ingest's
metrics topic and Prometheus endpoint). The text panel says where to find them.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from alumon.config import CemsStack
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context

ELSEWHERE = """Not stored in InfluxDB (so not charted here) 未写入 InfluxDB 的指标:

* edge spool depth and oldest age, poll counters, breaker state, cycle times → MQTT `alumon/v1/{site}/edge/metrics`
  and the retained `alumon/v1/{site}/{device}/status`;
* ingest lag, buffer depth, write rate and latency → MQTT `alumon/v1/{site}/ingest-{worker}/metrics` and the
  Prometheus endpoint (`ingest.prometheus_port`).

The device table's time is the newest reading stored: its age is the end-to-end freshness
(poll → broker → ingest → InfluxDB)."""


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("health", "边缘与数据管道", "Edge and pipeline health",
                     "Device status, poll success, stored rate, spool replays and dead letters from InfluxDB.")
    board.with_variable(p.device_variable())
    poll = min((d.poll_interval_s for d in ctx.site.config.devices), default=1.0)
    board.with_row(p.row("设备", "Devices"))
    status = p.table_panel(p.title("设备状态", "Newest reading per device"), [p.influx(q.device_status(),
                                                                                     as_table=True)], w=10, h=10,
                           description="Quality of each device's newest reading (stale or bad: the poll failed), "
                                       "its sequence number, and when it was taken.")
    status.overrides([p.cell_colour("quality", p.QUALITY),
                      dash.DashboardFieldConfigSourceOverrides().matcher(dm.MatcherConfig(id_val="byName",
                                                                                         options="Time"))
                      .properties([dm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")])])
    board.with_panel(status)
    board.with_panel(p.timeseries_panel(p.title("采集成功率", "Poll success"), [p.influx(
        q.poll_success(), alias="$tag_device")], p.PERCENT, bands=bands.poll_success(), w=14, h=10,
        interval=f"{max(poll, 1.0) * 10:g}s",
        description="Readings that carried a value / all readings, per device: a failed poll publishes its "
                    "readings stale or bad without a value."))
    board.with_row(p.row("数据管道", "Pipeline"))
    board.with_panel(p.timeseries_panel(p.title("入库速率", "Readings stored per second"), [p.influx(
        q.readings_rate(), alias="$tag_device")], p.PER_SECOND, w=8, h=8, stacked=True,
        interval=f"{max(poll, 1.0) * 10:g}s", description="Points in the telemetry measurement per second."))
    board.with_panel(p.timeseries_panel(p.title("断网补传", "Replayed from edge spools"), [p.influx(
        q.replayed_readings(), alias="$tag_device")], "short", w=8, h=8, bars=True,
        description="Readings the edge sent from its disk spool after an outage (field historical = true): the "
                    "backlog draining. The spool depth itself is not stored in InfluxDB."))
    board.with_panel(p.timeseries_panel(p.title("死信", "Dead letters"), [p.influx(
        q.dead_letters_rate(), alias="$tag_reason")], "short", w=8, h=8, bars=True,
        description="Payloads ingest refused (measurement dead_letter), by reason."))
    board.with_panel(p.table_panel(p.title("最近死信", "Recent dead letters"), [p.influx(
        q.dead_letters_recent(), as_table=True)], w=16, h=8,
        description="The newest 50 refused payloads per reason: topic, detail and size (the payload is kept "
                    "base64-encoded in field payload_b64)."))
    board.with_panel(p.text_panel(p.title("未入库的指标", "Metrics kept elsewhere"), ELSEWHERE, w=8, h=8))
    _data_quality(ctx, board)
    return board


def _data_quality(ctx: Context, board: dash.Dashboard) -> None:
    """What analytics concludes about its sources (kpi rows of analytics/data_quality.py), against the
    thresholds of the alert rules that suspend the limit alerts computed from them."""
    cfg, every = ctx.site.config, f"{ctx.site.config.analytics.evaluate_every_s:g}s"
    board.with_row(p.row("数据质量", "Data quality as analytics judges it"))
    board.with_panel(p.timeseries_panel(p.title("数据源中断", "Missed polls of each unit's worst source"), [p.influx(
        q.kpi_series("/source_missed_polls$/", group='"unit_process", "kpi"', aggregate="max", unit_filter=False),
        alias="$tag_unit_process $tag_kpi")], "short", bands=bands.alert_rule(cfg, ctx.limits, "source_stale"),
        w=12, h=8, interval=every,
        description="Poll intervals since the newest good reading of the worst source behind each unit's KPIs "
                    "(per pollutant for stacks); the rule source_stale holds the unit's limit alerts above it."))
    if any(isinstance(u, CemsStack) and u.flag for u in cfg.process_units):
        board.with_panel(p.timeseries_panel(p.title("分析仪故障", "CEMS analyser in fault"), [p.influx(
            q.kpi_series("analyser_fault_s", aggregate="max", unit_filter=False), alias="$tag_unit_process")],
            "s", bands=bands.alert_rule(cfg, ctx.limits, "analyser_fault"), w=12, h=8, interval=every,
            description="How long the DAS has flagged the analyser D (fault) or B (communication) without a break "
                        "(HJ 212-2017); the rule analyser_fault holds the stack's limit alerts above it."))
