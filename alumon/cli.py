"""The ``alumon`` command line: one entry point for every service and tool."""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from alumon.cli_broker import broker_app
from alumon.cli_grafana import grafana_app
from alumon.config import Site, SiteConfigError, load_site

app = typer.Typer(help="alumon: energy and emissions monitor for aluminium plants", no_args_is_help=True,
                  add_completion=False)
config_app = typer.Typer(help="Site configuration tools", no_args_is_help=True)
stack_app = typer.Typer(help="Local mosquitto + influxd + SMTP sink for demos and development",
                        no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(stack_app, name="stack")
app.add_typer(grafana_app, name="grafana")
app.add_typer(broker_app, name="broker")

err = Console(stderr=True, soft_wrap=True)
SiteOption = Annotated[Path, typer.Option("--site", help="site YAML file", exists=True, dir_okay=False)]
SitesOption = Annotated[list[Path], typer.Option(
    "--site", help="site YAML file; repeat it to serve several sites from one process", exists=True,
    dir_okay=False)]


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


def run_until_signalled(service: str, site_path: Path | list[Path],
                        body: Callable[[Site, threading.Event], None]) -> None:
    """Load the site(s), then run a service until SIGTERM/SIGINT sets the stop event. Several sites: one
    instance each in its own thread (scale-out by site); if one fails the others stop and the process exits 1,
    so its supervisor restarts them together."""
    setup_logging(service)
    sites = [load_or_exit(p) for p in (site_path if isinstance(site_path, list) else [site_path])]
    ids = [s.id for s in sites]
    if len(set(ids)) != len(ids):
        err.print(f"alumon {service}: the same site twice ({', '.join(ids)})")
        raise typer.Exit(2)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(service).info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if len(sites) == 1:
        body(sites[0], stop)
        return
    failed: list[str] = []

    def run_one(site: Site) -> None:
        try:
            body(site, stop)
        except BaseException:
            logging.getLogger(service).exception("site %s failed: stopping every site of this process", site.id)
            failed.append(site.id)
            stop.set()

    threads = [threading.Thread(target=run_one, args=(s,), name=f"{service}-{s.id}") for s in sites]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.5)  # with a timeout: the main thread stays free to run the signal handler
    if failed:
        raise typer.Exit(1)


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="site YAML file")]) -> None:
    """Validate a site file: print every problem with its key path and line; exit 2 if any."""
    site = load_or_exit(file)
    c = site.config
    # Plain print: rich would wrap long paths at the terminal width and break greppable output.
    print(f"OK {file}: site {c.site.id}, {len(c.devices)} devices, {len(c.process_units)} process units")


@app.command()
def sim(
    site: SiteOption,
    scenario: Annotated[str, typer.Option(help="normal | energy-drift | emission-exceedance")] = "normal",
    trace: Annotated[Path | None, typer.Option(help="write the simulator's true values as JSON lines")] = None,
    fault: Annotated[list[str] | None, typer.Option(
        help="inject a fault, DEVICE:KIND:START_S:DURATION_S with KIND silent | exception | garbled | "
             "rollover (its counters wrap mid-window) (repeatable)")] = None,
) -> None:
    """Serve every device of the site from a simulated plant (one Modbus server per line: TCP, serial, RTU over
    TCP)."""
    from alumon.sim.faults import parse_fault
    from alumon.sim.server import run_simulator

    try:
        faults = [parse_fault(text) for text in fault or []]
    except ValueError as exc:
        err.print(f"--fault: {exc}", markup=False)
        raise typer.Exit(2) from exc
    run_until_signalled("sim", site, lambda s, stop: run_simulator(s, scenario, trace, stop, faults))


edge_app = typer.Typer(help="Edge agent and its commissioning tools")
app.add_typer(edge_app, name="edge")


@edge_app.callback(invoke_without_command=True)
def edge(
    ctx: typer.Context,
    site: Annotated[Path | None, typer.Option("--site", help="site YAML file", dir_okay=False)] = None,
    spool_dir: Annotated[Path | None, typer.Option(help="disk spool directory")] = None,
) -> None:
    """Poll the site's Modbus devices and publish telemetry to MQTT (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    if site is None:
        err.print("alumon edge: --site FILE is required")
        raise typer.Exit(2)
    from edge.agent import run_edge

    run_until_signalled("edge", site, lambda s, stop: run_edge(s, stop, spool_dir))


@edge_app.command("plan")
def edge_plan(site: SiteOption) -> None:
    """Per device: requests per cycle, registers read, predicted cycle time against the poll interval."""
    from edge.plan_report import plan_site

    plans = plan_site(load_or_exit(site))
    print(f"{'device':20} {'requests':>8} {'registers':>9} {'cycle s':>8} {'bus s':>7} {'if silent s':>11} "
          f"{'interval s':>10}  note")
    for p in plans:
        bus = f"{p.line_cycle_s:7.3f}" if p.line_devices > 1 else f"{'-':>7}"
        print(f"{p.device:20} {p.requests:8} {p.registers:9} {p.predicted_cycle_s:8.3f} {bus} {p.worst_cycle_s:11.2f} "
              f"{p.interval_s:10g}  {'WARNING: ' + p.warning if p.warning else 'ok'}")
    print("bus: one round of every device on the same serial line (they take turns). if silent: cycle time when the "
          "device does not answer (its breaker then keeps it off the line)")
    if any(not p.fits for p in plans):
        raise typer.Exit(1)


@edge_app.command("probe")
def edge_probe(
    target: Annotated[str, typer.Argument(help="HOST[:PORT] of the meter or gateway (port 502), or a serial port "
                                               "such as /dev/ttyUSB0 with --baudrate")],
    unit: Annotated[int, typer.Option(help="Modbus unit id")] = 1,
    address: Annotated[int, typer.Option(help="first register, 0-based wire address")] = 0,
    count: Annotated[int, typer.Option(help="registers to read (1..125)", min=1, max=125)] = 4,
    function: Annotated[str, typer.Option(help="holding | input | coil | discrete")] = "holding",
    expect: Annotated[str | None, typer.Option(help="plausible range MIN..MAX, e.g. 200..250")] = None,
    all_: Annotated[bool, typer.Option("--all", help="show every interpretation, not only the matches")] = False,
    rtu_over_tcp: Annotated[bool, typer.Option(help="HOST:PORT is a serial server speaking RTU frames")] = False,
    baudrate: Annotated[int, typer.Option(help="serial ports: baud rate")] = 9600,
    parity: Annotated[str, typer.Option(help="serial ports: N, E or O")] = "N",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 3.0,
) -> None:
    """Read registers and print them decoded in every type and word/byte order."""
    from pydantic import ValidationError

    from alumon.config import Device
    from alumon.profiles import RegisterFunction
    from edge.lines import ReadFailure
    from edge.probe import interpretations, parse_range, read_raw

    try:
        expected = parse_range(expect) if expect else None
        if target.startswith("/"):
            transport: dict[str, object] = {"type": "rtu", "serial_port": target, "baudrate": baudrate,
                                            "parity": parity}
        else:
            host, _, port = target.partition(":")
            transport = {"type": "rtu_over_tcp" if rtu_over_tcp else "tcp", "host": host, "port": int(port or 502)}
        device = Device.model_validate({"id": "probe", "profile": "probe", "unit_id": unit, "timeout_s": timeout,
                                        "retries": 0, "poll_interval_s": timeout + 1, "transport": transport})
        fc = RegisterFunction(function)
    except (ValueError, ValidationError) as exc:
        err.print(f"alumon edge probe: {exc}", markup=False)
        raise typer.Exit(2) from exc
    try:
        regs = read_raw(device, fc, address, count)
    except ReadFailure as exc:
        err.print(f"{target}: {exc}", markup=False)
        raise typer.Exit(1) from exc
    print("raw: " + " ".join(f"{address + i}=0x{r:04X}" for i, r in enumerate(regs)))
    if fc.is_bits:
        print("bits: " + " ".join(f"{address + i}={r}" for i, r in enumerate(regs)))
        return
    rows = interpretations(regs, expected)
    shown = [r for r in rows if all_ or expected is None or r.in_range]
    for r in shown:
        mark = "  <- in range" if r.in_range else ""
        print(f"  @{address + r.offset:<6} {r.data_type.value:4} {r.order.value}  {r.value!r}{mark}")
    if expected is not None and not any(r.in_range for r in rows):
        print(f"no interpretation falls in {expect}: check the address (0- or 1-based?) and the unit id")


@app.command()
def ingest(
    site: SitesOption,
    worker: Annotated[str, typer.Option(help="stable worker id (its MQTT session and disk buffer)",
                                        rich_help_panel="scale-out")] = "1",
    buffer_dir: Annotated[Path | None, typer.Option(help="disk buffer for InfluxDB outages "
                                                    "(default: run/ingest-buffer/SITE; with several sites, "
                                                    "DIR/SITE)")] = None,
) -> None:
    """Consume telemetry from MQTT and write it to InfluxDB (acknowledged only after the write or the disk
    buffer took it)."""
    from ingest.service import run_ingest

    if not re.fullmatch(r"[A-Za-z0-9_-]+", worker):
        err.print(f"alumon ingest: --worker {worker!r}: letters, digits, _ and - only")
        raise typer.Exit(2)
    def one(s: Site, stop: threading.Event) -> None:
        run_ingest(s, stop, worker, buffer_dir / s.id if buffer_dir is not None and len(site) > 1 else buffer_dir)

    run_until_signalled("ingest", site, one)


@app.command()
def analytics(
    site: SitesOption,
    state_dir: Annotated[Path | None, typer.Option(
        help="open alert episodes, queued notices, the email outbox and the audit log "
             "(default: run/analytics-state/SITE; with several sites, DIR/SITE)")] = None,
) -> None:
    """Compute KPIs and corrected emissions, compare with the limits, raise alerts."""
    from analytics.service import run_analytics

    def one(s: Site, stop: threading.Event) -> None:
        run_analytics(s, stop, state_dir / s.id if state_dir is not None and len(site) > 1 else state_dir)

    run_until_signalled("analytics", site, one)


def parse_utc(text: str) -> int:
    """ISO 8601 with an offset (``Z``, ``+08:00``) to epoch ms; a bare date is midnight UTC."""
    from alumon.telemetry import parse_utc_ms

    try:
        return parse_utc_ms(f"{text}T00:00:00Z" if len(text) == 10 else text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def replay(
    site: SiteOption,
    input_csv: Annotated[Path | None, typer.Option("--input", help="CSV: time,device,quantity,value,quality[,flags]",
                                                   exists=True, dir_okay=False)] = None,
    start: Annotated[str | None, typer.Option("--from", help="read InfluxDB telemetry from this time (ISO 8601)")]
    = None,
    end: Annotated[str | None, typer.Option("--to", help="... up to this time, exclusive")] = None,
    every: Annotated[float | None, typer.Option(
        help="evaluate every SECONDS, at most 3600 (default: the site's evaluate_every_s, identical to live)",
        min=1, max=3600)] = None,
    output: Annotated[Path | None, typer.Option(help="JSON lines output (default: stdout)")] = None,
) -> None:
    """Recompute every KPI and alert offline from a CSV or from InfluxDB, with the live code path."""
    import time
    from functools import partial

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from alumon.influx import InfluxClient, InfluxError
    from analytics.replay import json_lines, with_grid
    from analytics.replay import replay as run_replay
    from analytics.replay_input import ReadingBatch, ReplayInputError, csv_batches, csv_time_span, influx_batches

    if (input_csv is None) == (start is None):
        err.print("give either --input FILE or --from TIME [--to TIME]")
        raise typer.Exit(2)
    loaded = with_grid(load_or_exit(site), every)
    span: tuple[int, int] | None
    source: Callable[[list[str]], Iterator[ReadingBatch]]
    if input_csv is not None:
        csv_path = input_csv
        span = csv_time_span(csv_path)
        source = partial(csv_batches, csv_path)
    else:
        assert start is not None
        t0, t1 = parse_utc(start), parse_utc(end) if end else round(time.time() * 1000)
        span = (t0, t1)
        client = InfluxClient.from_config(loaded.config.connections.influxdb)
        source = partial(influx_batches, client, loaded.id, t0, t1)
    out = output.open("wb") if output else sys.stdout.buffer
    began = time.monotonic()
    try:
        with Progress(TextColumn("replaying {task.fields[at]}"), BarColumn(), TaskProgressColumn(),
                      TimeRemainingColumn(), TextColumn("{task.fields[rows]:,} rows"), console=err,
                      transient=True, disable=output is None) as bar:
            task = bar.add_task("replay", total=1.0, at="", rows=0)

            def advance(rows: int, last_ms: int) -> None:
                done = bar.tasks[task].fields["rows"] + rows
                fraction = None if span is None or span[1] <= span[0] else (last_ms - span[0]) / (span[1] - span[0])
                bar.update(task, completed=min(1.0, max(0.0, fraction or 0.0)), rows=done,
                           at=_minute_label(last_ms))

            n = run_replay(loaded, source, json_lines(out), advance)
    except (ReplayInputError, InfluxError) as exc:
        err.print(f"{input_csv or 'influxdb'}: {exc}", markup=False)
        raise typer.Exit(2) from exc
    finally:
        if output:
            out.close()
    seconds = time.monotonic() - began
    if n == 0:
        where = input_csv or f"influxdb {loaded.config.connections.influxdb.database} from {start} to {end or 'now'}"
        err.print(f"no readings in {where}", markup=False)
        raise typer.Exit(1)
    err.print(f"replayed {n} readings in {seconds:.1f} s ({n / max(seconds, 1e-9):,.0f} readings/s)", markup=False)


def _minute_label(t_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


audit_app = typer.Typer(help="The alert audit log", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    file: Annotated[Path, typer.Argument(help="audit log, e.g. run/analytics-state/SITE/audit.jsonl")],
) -> None:
    """Check the hash chain of an audit log: exit 0 when intact, 1 naming every broken line."""
    from analytics.audit import verify

    if not file.is_file():
        err.print(f"alumon audit verify: no file {file}")
        raise typer.Exit(2)
    lines, problems = verify(file)
    for problem in problems:
        err.print(f"{file}: {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    print(f"{file}: {lines} lines, chain intact")


influx_app = typer.Typer(help="InfluxDB set-up", no_args_is_help=True)
app.add_typer(influx_app, name="influx")


@influx_app.command("init")
def influx_init(
    site: SiteOption,
    backfill_hours: Annotated[float, typer.Option(help="also compute rollups for the past N hours")] = 0.0,
) -> None:
    """Create the database, retention policies (raw, rollup_1m, rollup_1h) and rollup continuous queries.
    Idempotent. Run it before the first `alumon ingest`: `raw` becomes the default retention policy."""
    import time

    from alumon.influx import InfluxClient, InfluxError
    from ingest.setup import backfill, init_database

    client = InfluxClient.from_config(load_or_exit(site).config.connections.influxdb)
    try:
        done = init_database(client)
        if backfill_hours > 0:
            now_ms = int(time.time() * 1000)
            backfill(client, now_ms - int(backfill_hours * 3_600_000), now_ms)
            done.append(f"backfilled rollups for {backfill_hours:g} h")
    except InfluxError as exc:
        err.print(f"InfluxDB refused: {exc}", markup=False)
        raise typer.Exit(1) from exc
    print("\n".join(done) if done else f"{client.database}: already set up, nothing to do")


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
    print("stopped" if stack else f"no stack running from {run_dir}")


@app.command()
def demo(
    site: SiteOption,
    scenario: Annotated[str, typer.Option(help="normal | energy-drift | emission-exceedance")] = "energy-drift",
    duration: Annotated[float, typer.Option(help="seconds to run")] = 150.0,
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
