"""``alumon grafana``: build the site's dashboards as JSON, push them into a Grafana, preview them as PNG."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from alumon.config import Site

grafana_app = typer.Typer(help="Grafana dashboards generated from the site config: build, push, preview",
                          no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
SiteFile = Annotated[Path, typer.Option("--site", help="site YAML file", exists=True, dir_okay=False)]


def _site(path: Path) -> Site:
    from alumon.cli import load_or_exit  # here: alumon.cli imports this module while it loads

    return load_or_exit(path)


@grafana_app.command("build")
def build_cmd(
    site: SiteFile,
    out: Annotated[Path, typer.Option(help="directory for the dashboard JSON files")] = Path("grafana/dashboards"),
) -> None:
    """Write one dashboard JSON per view (overview, potline, refinery, CEMS, scorecard, health)."""
    from alumon.dashboards.build import write

    for path in write(_site(site), out):
        print(path)


@grafana_app.command("push")
def push_cmd(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://grafana.plant:3000")],
    site: Annotated[Path | None, typer.Option("--site", help="build from this site file (and take its InfluxDB "
                                              "connection for the data source)", exists=True, dir_okay=False)]
    = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="push prebuilt dashboard JSON files", exists=True,
                                                   file_okay=False)] = None,
    token_env: Annotated[str, typer.Option(help="environment variable holding the Grafana API token")]
    = "GRAFANA_TOKEN",
    influx_url: Annotated[str | None, typer.Option(help="data source URL with --dir (default $ALUMON_INFLUX_URL)")]
    = None,
    database: Annotated[str | None, typer.Option(help="data source database with --dir (default "
                                                 "$ALUMON_INFLUX_DATABASE)")] = None,
    folder: Annotated[str, typer.Option(help="Grafana folder uid (and title)")] = "alumon",
) -> None:
    """Upload the data source and the dashboards; running it again updates them in place (same uids)."""
    from grafana_client.client import GrafanaException
    from requests import RequestException

    from alumon.dashboards import build, push

    if (site is None) == (directory is None):
        err.print("alumon grafana push: give either --site FILE or --dir DIR")
        raise typer.Exit(2)
    token = os.environ.get(token_env) or None
    if token is None and "@" not in url.split("//", 1)[-1].split("/", 1)[0]:
        err.print(f"alumon grafana push: set {token_env} to a Grafana service account token", markup=False)
        raise typer.Exit(2)
    if site is not None:
        loaded = _site(site)
        boards = [build.to_json(b) for b in build.build(loaded).values()]
        source = push.datasource_for(loaded.config.connections.influxdb)
    else:
        assert directory is not None
        boards = build.load_dir(directory)
        ds_url, ds_db = influx_url or os.environ.get("ALUMON_INFLUX_URL"), database or os.environ.get(
            "ALUMON_INFLUX_DATABASE")
        if not ds_url or not ds_db:
            err.print("alumon grafana push --dir: give --influx-url and --database (or set ALUMON_INFLUX_URL and "
                      "ALUMON_INFLUX_DATABASE) for the data source")
            raise typer.Exit(2)
        source = push.datasource(ds_url, ds_db, *push.read_user())
    if not boards:
        err.print(f"no dashboards found in {directory}", markup=False)
        raise typer.Exit(2)
    try:
        result = push.push(push.connect(url, token), boards, source, folder, folder)
    except (GrafanaException, RequestException) as exc:
        err.print(f"Grafana at {url} refused or is unreachable: {type(exc).__name__}: {exc}", markup=False)
        raise typer.Exit(1) from exc
    print(f"data source {source['uid']}: {result.datasource}; folder {folder}: {result.folder}")
    for uid, version, path in result.dashboards:
        print(f"dashboard {uid}: version {version} {path}")


@grafana_app.command("preview")
def preview_cmd(
    site: SiteFile,
    out: Annotated[Path, typer.Option(help="directory for the PNG files")] = Path("run/grafana-preview"),
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB 1.x URL (default: the site's)")] = None,
    database: Annotated[str | None, typer.Option(help="database (default: the site's)")] = None,
    hours: Annotated[float, typer.Option(help="time range ending now (Grafana's default view is 6 h)", min=0.01)]
    = 6.0,
    dashboard: Annotated[list[str] | None, typer.Option(help="only these (overview, potline, refinery, cems, "
                                                             "scorecard, health); repeatable")] = None,
) -> None:
    """Render the dashboards headless to PNG from the same InfluxQL Grafana would run."""
    from alumon.dashboards import build, preview
    from alumon.influx import InfluxClient, InfluxError

    loaded = _site(site)
    conn = loaded.config.connections.influxdb
    if conn.api != "v1" and influx_url is None:
        err.print("alumon grafana preview: the site uses InfluxDB api v2; give --influx-url and --database of an "
                  "InfluxQL (1.x-compatible) endpoint")
        raise typer.Exit(2)
    client = InfluxClient.from_config(conn) if influx_url is None else InfluxClient(influx_url, database or
                                                                                    conn.database)
    if database is not None:
        client.database = database
    end_ms = int(time.time() * 1000)
    boards = build.build(loaded)
    unknown = set(dashboard or []) - set(boards)
    if unknown:
        err.print(f"unknown dashboard(s) {', '.join(sorted(unknown))}; this site has {', '.join(boards)}",
                  markup=False)
        raise typer.Exit(2)
    try:
        for kind, board in boards.items():
            if dashboard and kind not in dashboard:
                continue
            result = preview.render(build.to_json(board), client.query, end_ms - int(hours * 3_600_000), end_ms, out)
            empty = [title for title, n in result.drawn.items() if n == 0]
            note = f" ({len(empty)} panel(s) without data: {'; '.join(empty)})" if empty else ""
            print(f"{result.path}{note}")
    except InfluxError as exc:
        err.print(f"InfluxDB at {client.url}: {exc}", markup=False)
        raise typer.Exit(1) from exc
    finally:
        client.close()
