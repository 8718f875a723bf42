"""边缘与数据管道 Edge and pipeline health, from what InfluxDB holds: each device's newest reading and its quality,
the share of readings that carried a value (poll success), the edge's poll failures, missed cycles, cycle times
and poller state, its spool depth and the readings replayed from it after an outage, ingest's lag, disk
buffer, write rate and latency, readings stored per second, dead letters, and analytics' data-quality signals
(missed polls of each unit's worst source, CEMS analyser fault time) against the alert rules that judge them.

The edge's and ingest's figures are their self-metrics (MQTT ``alumon/v1/{site}/{agent}/metrics``), which
analytics stores as ``pipeline`` points (analytics/pipeline.py): the edge's counters are totals since the agent
started, charted as rates or increases per interval.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from alumon.config import CemsStack
from alumon.dashboards import bands
from alumon.dashboards import panels as p
from alumon.dashboards import queries as q
from alumon.dashboards.context import Context

POLLER_STATES = {"ok": ("正常 ok", "green"), "failing": ("失败 failing", "orange"),
                 "open": ("熔断 breaker open", "red"), "starting": ("启动 starting", "blue")}


def dashboard(ctx: Context) -> dash.Dashboard:
    board = ctx.base("health", "边缘与数据管道", "Edge and pipeline health",
                     "Device status, poll success and failures, cycle times, edge spool, ingest lag and buffer, "
                     "stored rate, spool replays and dead letters from InfluxDB.")
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
    _polls(ctx, board)
    _edge(ctx, board)
    _ingest(ctx, board, poll)
    _data_quality(ctx, board)
    return board


def _polls(ctx: Context, board: dash.Dashboard) -> None:
    """The edge's poll figures per device (pipeline points of agent edge with a device tag)."""
    every = f"{ctx.site.config.edge.metrics_interval_s:g}s"
    source = (f"Edge metrics (pipeline, agent edge) every edge.metrics_interval_s ({every}); the counters are totals "
              "since the agent started, a restart's step back to 0 is dropped.")
    board.with_panel(p.timeseries_panel(p.title("采集失败", "Poll failures"), [p.influx(
        q.pipeline("device", q.counter_rate("polls_failed")), alias="$tag_device")], p.PER_MINUTE, w=12, h=8,
        interval=every,
        description="Failed polls per minute, per device (timeouts, Modbus exceptions, short or lost "
                    "answers); cycles the breaker kept off an unanswering device are not polls and not counted "
                    f"here (see the poller state). {source}"))
    board.with_panel(p.timeseries_panel(p.title("错过周期", "Missed poll cycles"), [p.influx(
        q.pipeline("device", q.counter_steps("missed_cycles")), alias="$tag_device")], "short", w=12, h=8,
        bars=True, interval=every,
        description="Poll slots skipped per interval because a cycle overran the device's poll interval (the "
                    f"poller skips the slots rather than burst): readings missing on the grid. {source}"))
    board.with_panel(p.timeseries_panel(p.title("采集周期", "Poll cycle time"), [
        p.influx(q.pipeline("device", q.gauge("last_cycle_ms", "mean")), alias="$tag_device last"),
        p.influx(q.pipeline("device", q.gauge("max_cycle_ms")), "B", alias="$tag_device max")], "ms", w=14, h=8,
        interval=every,
        description="How long one poll of the device took (all its register blocks, including the wait for a "
                    "shared serial line): the newest cycle (mean per interval) and the longest since the agent "
                    "started. A cycle longer than the poll interval misses slots. " + source))
    state = p.table_panel(p.title("采集器状态", "Poller state per device"), [p.influx(
        q.edge_device_state(), as_table=True)], w=10, h=8,
        description="Each device's newest poller state (ok; failing; breaker open: polls suspended until the "
                    "next probe) and its poll counters since the edge agent started: good, failed, skipped by the "
                    "breaker, missed slots, reconnects of its line.")
    state.overrides([p.cell_colour("state", POLLER_STATES)])
    board.with_panel(state)


def _edge(ctx: Context, board: dash.Dashboard) -> None:
    """The edge agent's store-and-forward spool (pipeline points of agent edge without a device tag)."""
    edge = ctx.site.config.edge
    every = f"{edge.metrics_interval_s:g}s"
    board.with_row(p.row("边缘缓存", "Edge spool"))
    board.with_panel(p.timeseries_panel(p.title("缓存深度", "Edge spool depth"), [
        p.influx(q.pipeline("edge", q.gauge("spool_depth")), alias="缓存 spooled"),
        p.influx(q.pipeline("edge", q.counter_steps("spool_dropped_full", "full"),
                            q.counter_steps("spool_dropped_age", "too old")), "B", alias="丢弃 dropped ($col)")],
        "short", w=8, h=8, interval=every,
        description="Messages in the edge's disk spool, not yet acknowledged by the broker (largest per "
                    "interval): near 0 while the broker is reachable, growing during an outage, draining at up to "
                    f"edge.replay_max_per_s ({edge.replay_max_per_s:g}/s) after it. Dropped: messages the spool "
                    f"discarded per interval, full ({edge.spool_max_messages} messages, policy "
                    f"{edge.spool_full.value}) or older than edge.spool_max_age_h ({edge.spool_max_age_h:g} h). "
                    f"Edge metrics every {every}."))
    board.with_panel(p.timeseries_panel(p.title("最早缓存", "Oldest spooled message age"), [p.influx(
        q.pipeline("edge", q.gauge("spool_oldest_age_s")), alias="最早 oldest")], "s", w=8, h=8, interval=every,
        description="Age of the oldest message still in the edge's spool (largest per interval): how far behind "
                    "real time the broker is; the edge drops messages older than edge.spool_max_age_h "
                    f"({edge.spool_max_age_h:g} h)."))
    board.with_panel(p.timeseries_panel(p.title("断网补传", "Replayed from edge spools"), [p.influx(
        q.replayed_readings(), alias="$tag_device")], "short", w=8, h=8, bars=True,
        description="Readings the edge sent from its disk spool after an outage (field historical = true): the "
                    "backlog draining, next to the spool depth."))


def _ingest(ctx: Context, board: dash.Dashboard, poll: float) -> None:
    """Ingest's figures per worker (pipeline points of agent ingest-<worker>), stored rate and dead letters."""
    settings = ctx.site.config.ingest
    every = f"{settings.metrics_interval_s:g}s"
    source = f"Ingest metrics (pipeline, agent ingest-<worker>) every ingest.metrics_interval_s ({every})."
    board.with_row(p.row("数据管道", "Pipeline"))
    board.with_panel(p.timeseries_panel(p.title("入库延迟", "Ingest lag"), [p.influx(
        q.pipeline("ingest", q.gauge("lag_s", name="lag"), q.gauge("max_lag_s", name="max")),
        alias="$tag_agent $col")], "s", w=8, h=8,
        interval=every,
        description="Now minus the time of the newest reading written, at the worker's last write (lag_s), and "
                    "the largest over its reporting interval (max_lag_s): the end-to-end delay poll → broker → "
                    f"ingest → InfluxDB. {source}"))
    board.with_panel(p.timeseries_panel(p.title("磁盘缓冲", "Ingest disk buffer"), [p.influx(
        q.pipeline("ingest", q.gauge("buffer_depth_points")), alias="$tag_agent")], "short", w=8, h=8,
        interval=every,
        description="Points waiting in the worker's disk buffer while InfluxDB is down or behind (largest per "
                    f"interval); it drains when writes succeed again. Bounded by ingest.buffer_max_mb "
                    f"({settings.buffer_max_mb:g} MB, policy {settings.buffer_full.value}). {source}"))
    board.with_panel(p.timeseries_panel(p.title("写入速率", "Ingest write rate"), [p.influx(
        q.pipeline("ingest", q.gauge("write_rate_points_per_s", "mean")), alias="$tag_agent")], p.PER_SECOND,
        w=8, h=8, stacked=True, interval=every,
        description="Points each worker wrote to InfluxDB per second (mean per interval), directly or drained "
                    f"from its disk buffer. {source}"))
    board.with_panel(p.timeseries_panel(p.title("写入耗时", "InfluxDB write latency"), [p.influx(
        q.pipeline("ingest", q.gauge("write_latency_ms_mean", "mean", "mean"),
                   q.gauge("write_latency_ms_max", name="max")),
        alias="$tag_agent $col")], "ms", w=8, h=8, interval=every,
        description="Mean and slowest InfluxDB write of each worker's reporting interval (0 when it wrote "
                    f"nothing). {source}"))
    board.with_panel(p.timeseries_panel(p.title("死信与丢弃", "Dead-lettered and dropped"), [p.influx(
        q.pipeline("ingest", q.counter_steps("dead_lettered_messages", "dead-lettered"),
                   q.counter_steps("dropped_points", "dropped points")),
        alias="$tag_agent $col")], "short", w=8, h=8, bars=True, interval=every,
        description="Per interval: messages the worker refused and kept as dead letters, and points the "
                    f"ingest.buffer_full policy discarded (never with block). {source}"))
    board.with_panel(p.timeseries_panel(p.title("入库速率", "Readings stored per second"), [p.influx(
        q.readings_rate(), alias="$tag_device")], p.PER_SECOND, w=8, h=8, stacked=True,
        interval=f"{max(poll, 1.0) * 10:g}s", description="Points in the telemetry measurement per second."))
    board.with_panel(p.timeseries_panel(p.title("死信", "Dead letters"), [p.influx(
        q.dead_letters_rate(), alias="$tag_reason")], "short", w=8, h=8, bars=True,
        description="Payloads ingest refused (measurement dead_letter), by reason."))
    board.with_panel(p.table_panel(p.title("最近死信", "Recent dead letters"), [p.influx(
        q.dead_letters_recent(), as_table=True)], w=16, h=8,
        description="The newest 50 refused payloads per reason: topic, detail and size (the payload is kept "
                    "base64-encoded in field payload_b64)."))


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
