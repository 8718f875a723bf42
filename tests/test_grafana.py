"""Grafana dashboards: valid for the foundation SDK's schema, regenerable, every query answered by a real influxd
holding demo-like data, thresholds traceable to limits.yaml, and a headless PNG preview.

No Grafana server can run here (none is packaged for Debian, PyPI or npm: shared/environment.md §1.3), so the
dashboards are checked where they meet the rest of the system: the schema Grafana reads and the InfluxQL it
sends, with template variables substituted as Grafana substitutes them.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.models import dashboard as dm
from typer.testing import CliRunner

from alumon.cli import app
from alumon.config import Site, load_site
from alumon.dashboards import build, queries
from alumon.dashboards.dataquery import DATASOURCE_TYPE, DATASOURCE_UID, InfluxQuery, dashboard_from_json
from alumon.dashboards.frames import PanelData, Series, panel_data
from alumon.influx import InfluxClient
from alumon.stack import Server
from analytics.limits import Limits
from tests import grafana_data
from tests.conftest import EXAMPLE_SITE, REPO, write_site

_dbs = itertools.count()


@dataclass(frozen=True)
class Demo:
    site: Site
    client: InfluxClient
    start_ms: int
    end_ms: int


@pytest.fixture(scope="module")
def demo(influxd: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """2 h 10 min of the example site in a database of its own (about 5 s to make and write)."""
    tmp = tmp_path_factory.mktemp("grafana")
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", f"grafana_{next(_dbs)}")
    client.create_database()
    base = write_site(tmp / "base.yaml", connections__influxdb={"url": client.url, "database": client.database})
    site = grafana_data.demo_site(tmp / "site.yaml", base)
    end_ms = int(time.time()) // 60 * 60_000
    data = grafana_data.load(client, site, end_ms)
    assert data.telemetry_points > 100_000 and data.kpi_points > 10_000 and data.alert_points > 0
    assert data.pipeline_points > 1000
    # Grafana's default view: the last 6 hours up to now.
    yield Demo(site, client, end_ms - 6 * 3_600_000, int(time.time() * 1000))
    client.close()


def example_boards() -> dict[str, dm.Dashboard]:
    return build.build(load_site(EXAMPLE_SITE))


def queries_of(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, panel, InfluxQL) of every panel target and annotation of a dashboard."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", panel, target["query"]
    for anno in board["annotations"]["list"]:
        yield f"annotation {anno['name']!r}", {}, anno["target"]["query"]


def test_json_is_valid_for_the_sdk_schema_and_round_trips() -> None:
    boards = example_boards()
    assert set(boards) == {"overview", "potline", "refinery", "cems", "scorecard", "health"}
    uids = [b.uid for b in boards.values()]
    assert len(set(uids)) == len(uids) and all(u is not None and len(u) <= 40 for u in uids)
    for kind, board in boards.items():
        data = build.to_json(board)
        # Dashboard.from_json keeps only what the schema models know: equal after a round trip means every
        # key we wrote is part of Grafana 11.6's dashboard schema (plus the registered InfluxQL query type).
        again = build.to_json(dashboard_from_json(json.loads(build.dumps(board))))
        assert again == data, kind
        loaded = dashboard_from_json(data)
        panels = [p for p in loaded.panels or [] if isinstance(p, dm.Panel)]
        assert panels and len({p.id_val for p in panels}) == len(panels)
        for panel in panels:
            assert cogruntime.panelcfg_config(panel.type_val) is not None, (kind, panel.type_val)
            assert panel.grid_pos is not None and panel.grid_pos.x + panel.grid_pos.w <= 24, (kind, panel.title)
            assert not isinstance(panel.options, dict), (kind, panel.title)  # parsed by the panel's schema
            for target in panel.targets or []:
                assert isinstance(target, InfluxQuery) and target.query, (kind, panel.title)
            if panel.type_val != "text":
                assert panel.datasource is not None and panel.datasource.uid == DATASOURCE_UID
        assert {v.name for v in loaded.templating.list_val or []} >= {"site"}
        assert data["timezone"] == "Asia/Shanghai" and "alumon" in data["tags"]
        assert [a["target"]["query"] for a in data["annotations"]["list"]] == [queries.alerts_annotation()]


def test_committed_dashboards_are_regenerated_by_build(tmp_path: Path) -> None:
    out = tmp_path / "dashboards"
    result = CliRunner().invoke(app, ["grafana", "build", "--site", str(EXAMPLE_SITE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    committed = REPO / "grafana" / "dashboards"
    fresh = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert fresh and fresh == {p.name: p.read_bytes() for p in committed.glob("*.json")}, (
        "grafana/dashboards is stale: run `alumon grafana build --site examples/guangxi-demo/site.yaml "
        "--out grafana/dashboards`")


def test_provisioning_serves_the_dashboards_data_source() -> None:
    ds = yaml.safe_load((REPO / "grafana/provisioning/datasources/alumon.yaml").read_text())["datasources"][0]
    assert (ds["uid"], ds["type"], ds["jsonData"]["httpMode"]) == (DATASOURCE_UID, DATASOURCE_TYPE, "POST")
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/alumon.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/var/lib/grafana/dashboards")


def test_bands_are_the_limits_of_limits_yaml_and_follow_site_overrides(tmp_path: Path) -> None:
    limits = Limits()
    board = build.to_json(example_boards()["potline"])
    live = next(p for p in board["panels"] if p.get("title") == "实时 Live window")
    steps = [s["value"] for s in live["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, limits.al_liquid_ac_level(1).value, limits.ndrc("benchmark").value,
                     limits.al_liquid_ac_level(3).value] == [None, 12950, 13000, 13350]
    assert "GB 21346-2022" in live["description"] and "1609" in live["description"]  # sources, not just figures
    override = {"key": "energy.gb21346_2022.electrolytic_aluminium.al_liquid_ac.level3", "value": 13300.0,
                "source": "test permit", "status": "verified"}
    site = load_site(write_site(tmp_path / "site.yaml", limits_overrides=[override]))
    board = build.to_json(build.build(site)["potline"])
    live = next(p for p in board["panels"] if p.get("title") == "实时 Live window")
    assert 13300.0 in [s["value"] for s in live["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert "test permit" in live["description"]


def test_every_query_of_every_panel_returns_data(demo: Demo) -> None:
    failures = []
    checked = 0
    for kind, model in build.build(demo.site).items():
        board = build.to_json(model)
        variables = queries.resolve_variables(board, demo.client.query, demo.start_ms, demo.end_ms)
        for name, values in variables.items():
            if values == [""]:
                failures.append(f"{kind}: variable ${name} has no values")
        for where, panel, text in queries_of(board):
            start, end = queries.panel_range(panel, demo.start_ms, demo.end_ms)
            sent = queries.interpolate(text, variables, start, end, panel.get("interval"))
            checked += 1
            try:
                series = demo.client.query(sent)
            except Exception as exc:  # the report names every failing panel, not just the first
                failures.append(f"{kind}: {where}: {exc}")
                continue
            if not any(s.get("values") for s in series):
                failures.append(f"{kind}: {where} returned no series: {sent}")
    assert not failures, "\n".join(failures)
    assert checked > 60


def test_panel_data_as_grafana_shapes_it(demo: Demo) -> None:
    board = build.to_json(build.build(demo.site)["overview"])
    variables = queries.resolve_variables(board, demo.client.query, demo.start_ms, demo.end_ms)
    assert variables["site"] == [demo.site.id] and "potline-1" in variables["unit"]
    firing = next(p for p in board["panels"] if p["title"] == "当前告警 Firing alerts")
    data = panel_data(firing, variables, demo.start_ms, demo.end_ms, demo.client.query)
    # Potline 2's scale went silent for the data's last 150 s: its source_stale alert is still firing. The
    # filterByValue transformation keeps only incidents whose newest state change is a firing.
    assert ("potline-2", "source_stale", "firing") in [(r["unit_process"], r["rule"], r["state"])
                                                       for r in data.records]
    assert {r["state"] for r in data.records} == {"firing"}
    headline = next(p for p in board["panels"] if p["title"].startswith("一电解系列 Potline 1"))
    (series,) = panel_data(headline, variables, demo.start_ms, demo.end_ms, demo.client.query).series
    (newest,) = demo.client.query("SELECT last(value) FROM kpi WHERE kpi = 'al_liquid_ac' AND "
                                  "unit_process = 'potline-1' AND \"window\" = 'rolling_60s'")
    assert series.name == "potline-1" and series.last() == newest["values"][0][1]


def test_health_charts_the_staged_edge_and_ingest_events(demo: Demo) -> None:
    board = build.to_json(build.build(demo.site)["health"])
    variables = queries.resolve_variables(board, demo.client.query, demo.start_ms, demo.end_ms)

    def data(title: str) -> PanelData:
        panel = next(p for p in board["panels"] if p["title"] == title)
        return panel_data(panel, variables, demo.start_ms, demo.end_ms, demo.client.query)

    def peak(series: Series) -> float:
        return max(v for v in series.values if v is not None)

    # Three minutes of one meter waited in the edge's spool, then went out: the depth rose and drained.
    spool = {s.name: s for s in data("缓存深度 Edge spool depth").series}
    assert peak(spool["缓存 spooled"]) >= 36 and (spool["缓存 spooled"].last() or 0) <= 2
    assert peak(spool["丢弃 dropped (full)"]) == 0
    # Potline 2's scale went silent: failed polls until its breaker opened, then probes only.
    failures = {s.name: s for s in data("采集失败 Poll failures").series}
    assert (failures["pl2-scale"].last() or 0) > 0
    assert not [name for name, s in failures.items() if name != "pl2-scale" and any(s.values)]
    states = {r["device"]: r["state"] for r in data("采集器状态 Poller state per device").records}
    assert states.pop("pl2-scale") == "open" and set(states.values()) == {"ok"}
    # A slow InfluxDB: ingest's lag and disk buffer rose, then the buffer drained.
    lag = {s.name: s for s in data("入库延迟 Ingest lag").series}
    assert peak(lag["ingest-1 max"]) > 100 and (lag["ingest-1 lag"].last() or 99) < 1
    buffer = {s.name: s for s in data("磁盘缓冲 Ingest disk buffer").series}
    assert peak(buffer["ingest-1"]) > 0 and buffer["ingest-1"].last() == 0


def test_preview_renders_non_trivial_pngs(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "png"
    result = CliRunner().invoke(app, ["grafana", "preview", "--site", str(demo.site.path), "--out", str(out),
                                      "--hours", "3"])
    assert result.exit_code == 0, result.output
    assert "without data" not in result.output, result.output
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == sorted(f"{b.uid}.png" for b in build.build(demo.site).values())
    for png in pngs:
        image = np.asarray(mpimg.imread(png))
        assert image.ndim == 3 and image.shape[0] > 500 and image.shape[1] > 1500, png.name
        rgb = (image[..., :3] * 255).astype(np.uint32)
        colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
        assert len(colours) > 200, f"{png.name}: {len(colours)} colours, a blank page?"
        assert png.stat().st_size > 40_000, png.name


def test_a_smelter_only_site_gets_only_its_dashboards(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE_SITE.read_text(encoding="utf-8"))
    data["process_units"] = [u for u in data["process_units"] if u["kind"] == "potline"]
    path = tmp_path / "smelter.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    boards = {kind: build.to_json(b) for kind, b in build.build(load_site(path)).items()}
    assert set(boards) == {"overview", "potline", "scorecard", "health"}
    text = json.dumps(boards["scorecard"])
    assert "scorecard_smelter_capacity_at_benchmark" in text and "alumina_at_gb21346_level1" not in text
    assert "_monthly_compliance" not in text
