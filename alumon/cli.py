"""The ``alumon`` command line: one entry point for every service and tool."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from alumon.config import Site, SiteConfigError, load_site

app = typer.Typer(help="alumon: energy and emissions monitor for aluminium plants", no_args_is_help=True,
                  add_completion=False)
config_app = typer.Typer(help="Site configuration tools", no_args_is_help=True)
stack_app = typer.Typer(help="Local mosquitto + influxd + SMTP sink for demos and development",
                        no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(stack_app, name="stack")

err = Console(stderr=True, soft_wrap=True)
SiteOption = Annotated[Path, typer.Option("--site", help="site YAML file", exists=True, dir_okay=False)]


def setup_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_or_exit(path: Path) -> Site:
    try:
        return load_site(path)
    except SiteConfigError as exc:
        err.print(f"[red]{exc.file}: {len(exc.problems)} problem(s)[/red]")
        for p in exc.problems:
            err.print(f"  {p}", markup=False, highlight=False)
        raise typer.Exit(2) from exc


def run_until_signalled(service: str, site_path: Path, body: Callable[[Site, threading.Event], None]) -> None:
    """Load the site, then run a service until SIGTERM/SIGINT sets the stop event."""
    setup_logging(service)
    site = load_or_exit(site_path)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(service).info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    body(site, stop)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="site YAML file")]) -> None:
    """Validate a site file: print every problem with its key path and line; exit 2 if any."""
    site = load_or_exit(file)
    c = site.config
    Console().print(
        f"[green]OK[/green] {file}: site {c.site.id}, {len(c.devices)} devices, "
        f"{len(c.process_units)} process units"
    )


@app.command()
def sim(
    site: SiteOption,
    scenario: Annotated[str, typer.Option(help="normal | energy-drift | emission-exceedance")] = "normal",
    trace: Annotated[Path | None, typer.Option(help="write the simulator's true values as JSON lines")] = None,
) -> None:
    """Serve every device of the site from a simulated plant (one Modbus TCP server per device)."""
    from alumon.sim.server import run_simulator

    run_until_signalled("sim", site, lambda s, stop: run_simulator(s, scenario, trace, stop))


@app.command()
def edge(
    site: SiteOption,
    spool_dir: Annotated[Path | None, typer.Option(help="disk spool directory")] = None,
) -> None:
    """Poll the site's Modbus devices and publish telemetry to MQTT."""
    from edge.agent import run_edge

    run_until_signalled("edge", site, lambda s, stop: run_edge(s, stop, spool_dir))


@app.command()
def ingest(site: SiteOption) -> None:
    """Consume telemetry from MQTT and write it to InfluxDB (acknowledged only after the write)."""
    from ingest.service import run_ingest

    run_until_signalled("ingest", site, run_ingest)


@app.command()
def analytics(site: SiteOption) -> None:
    """Compute KPIs and corrected emissions, compare with the limits, raise alerts."""
    from analytics.service import run_analytics

    run_until_signalled("analytics", site, run_analytics)


@stack_app.command("up")
def stack_up_cmd(
    run_dir: Annotated[Path, typer.Option(help="where configs, data and logs go")] = Path("run/stack"),
    mqtt_port: Annotated[int, typer.Option()] = 18830,
    influx_port: Annotated[int, typer.Option()] = 18086,
    smtp_port: Annotated[int, typer.Option()] = 18025,
) -> None:
    """Start mosquitto, influxd and the SMTP sink in the background."""
    from alumon.stack import StackError, stack_up

    try:
        stack = stack_up(run_dir, mqtt_port, influx_port, smtp_port)
    except StackError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    for s in stack.servers():
        print(f"{s.name:10} pid {s.pid:7}  127.0.0.1:{s.port}  log {s.log}")
    print(f"mail is stored in {stack.maildir}")


@stack_app.command("down")
def stack_down_cmd(run_dir: Annotated[Path, typer.Option()] = Path("run/stack")) -> None:
    """Stop what `alumon stack up` started."""
    from alumon.stack import stack_down

    stack = stack_down(run_dir)
    Console().print("stopped" if stack else f"no stack running from {run_dir}")


@app.command()
def demo(
    site: SiteOption,
    scenario: Annotated[str, typer.Option(help="normal | energy-drift | emission-exceedance")] = "energy-drift",
    duration: Annotated[float, typer.Option(help="seconds to run")] = 120.0,
    summary: Annotated[Path | None, typer.Option(help="write the JSON summary here")] = None,
    run_dir: Annotated[Path, typer.Option(help="run directory (configs, data, logs, mail)")] = Path("run/demo"),
) -> None:
    """Run the whole system (stack, simulator, edge, ingest, analytics) for a while and summarise."""
    from alumon.demo import run_demo

    setup_logging("demo")
    load_or_exit(site)
    result = run_demo(site, scenario, duration, run_dir, summary)
    raise typer.Exit(0 if result.ok else 1)


def main() -> None:
    app()
