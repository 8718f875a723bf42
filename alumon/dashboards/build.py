"""The site's dashboards, generated from its config with the foundation SDK's builders, and their JSON.

``build(site)`` returns the dashboard models; ``write(site, out_dir)`` writes one JSON file per dashboard, the
files a stock Grafana loads through ``grafana/provisioning/dashboards/alumon.yaml``. The same site gives the
same bytes, so committed dashboards can be checked against a fresh build.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from alumon.config import AluminaRefinery, CemsStack, Potline, Site
from alumon.dashboards import cems, health, overview, potline, refinery, scorecard
from alumon.dashboards.context import Context
from analytics.limits import Limits

Maker = Callable[[Context], dash.Dashboard]


def makers() -> dict[str, Maker]:
    return {"overview": overview.dashboard, "potline": potline.dashboard, "refinery": refinery.dashboard,
            "cems": cems.dashboard, "scorecard": scorecard.dashboard, "health": health.dashboard}


def build(site: Site) -> dict[str, dm.Dashboard]:
    """Every dashboard the site has units for, by kind (a site without a refinery gets no refinery board)."""
    ctx = Context(site, Limits.for_site(site.config))
    needs: dict[str, type] = {"potline": Potline, "refinery": AluminaRefinery, "cems": CemsStack}
    out: dict[str, dm.Dashboard] = {}
    for kind, make in makers().items():
        if kind in needs and not any(isinstance(u, needs[kind]) for u in site.config.process_units):
            continue
        board = make(ctx).build()
        _number_panels(board)
        out[kind] = board
    return out


def _number_panels(board: dm.Dashboard) -> None:
    """Grafana needs a unique id per panel; the builders leave them unset."""
    for i, panel in enumerate(board.panels or [], start=1):
        panel.id_val = i


def to_json(board: dm.Dashboard) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(board, cls=JSONEncoder))
    return data


def dumps(board: dm.Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def file_name(site_id: str, kind: str) -> str:
    return f"{site_id}-{kind}.json"


def write(site: Site, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, board in build(site).items():
        path = out_dir / file_name(site.id, kind)
        path.write_text(dumps(board), encoding="utf-8")
        written.append(path)
    return written


def load_dir(directory: Path) -> list[dict[str, Any]]:
    """Dashboard JSON files as written by ``write`` (for push and preview of a prebuilt directory)."""
    boards = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "panels" in data and "uid" in data:
            boards.append(data)
    return boards
