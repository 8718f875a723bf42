"""Pipeline health: the edge's and ingest's self-metrics become ``pipeline`` points (analytics/pipeline.py)."""

from __future__ import annotations

import json

from analytics.pipeline import metrics_lines

EDGE = {"ts": "2026-11-24T08:00:00.000Z",
        "devices": {"pl1-scale": {"state": "ok", "polls_ok": 120, "polls_failed": 2, "polls_skipped": 0,
                                  "missed_cycles": 1, "last_cycle_ms": 12.5, "max_cycle_ms": 40.0,
                                  "failures": {"timeout": 2}, "line_reconnects": 0}},
        "spool": {"depth": 3, "oldest_age_s": 1.5, "dropped_full": 0, "dropped_age": 0},
        "mqtt": {"published": 118, "acked": 115, "connected": True}}
INGEST = {"worker": "1", "received_messages": 500, "written_points": 5000, "lag_s": 0.42,
          "buffer_depth_points": 0, "write_rate_points_per_s": 83.3, "max_lag_s": float("nan")}


def test_edge_metrics_become_an_agent_point_and_a_point_per_device() -> None:
    agent, device = metrics_lines("gx-demo", "alumon/v1/gx-demo/edge/metrics", json.dumps(EDGE).encode(), 1000)
    assert agent == ("pipeline,agent=edge,site=gx-demo spool_depth=3.0,spool_oldest_age_s=1.5,"
                     "spool_dropped_full=0.0,spool_dropped_age=0.0,mqtt_published=118.0,mqtt_acked=115.0 1000")
    assert device == ('pipeline,agent=edge,device=pl1-scale,site=gx-demo state="ok",polls_ok=120.0,'
                      'polls_failed=2.0,polls_skipped=0.0,missed_cycles=1.0,last_cycle_ms=12.5,max_cycle_ms=40.0,'
                      'line_reconnects=0.0 1000')


def test_ingest_metrics_keep_every_finite_number() -> None:
    (line,) = metrics_lines("gx-demo", "alumon/v1/gx-demo/ingest-1/metrics",
                            json.dumps(INGEST).replace("NaN", "null").encode(), 5)
    assert line == ("pipeline,agent=ingest-1,site=gx-demo received_messages=500.0,written_points=5000.0,lag_s=0.42,"
                    "buffer_depth_points=0.0,write_rate_points_per_s=83.3 5")


def test_garbage_metrics_are_skipped() -> None:
    for payload in (b"", b"not json", b"[1, 2]", b'"text"', b"{}", b'{"devices": [1]}'):
        assert metrics_lines("gx-demo", "alumon/v1/gx-demo/edge/metrics", payload, 1) == [], payload
