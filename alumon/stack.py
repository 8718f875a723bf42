"""The local stack: a real mosquitto, a real influxd and an SMTP sink, each with its config in a run
directory. Used by ``alumon stack up|down``, by ``alumon demo`` and by the pytest fixtures, so the tests
run exactly what the demo runs. VictoriaMetrics is started only by the tests of the InfluxDB 2.x writer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

STATE_FILE = "stack.json"


class StackError(RuntimeError):
    pass


def require_binary(name: str) -> str:
    """Path of a server binary, or a loud error saying how to install it (tests must never skip)."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` not found on PATH. `make setup` installs it with the other Debian packages "
                         "the project runs against (APT_PACKAGES in the Makefile)")
    return path


_issued_ports: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free 127.0.0.1 port for a server we are about to start.

    Taken below the kernel's ephemeral range, so an outgoing connection made before the server starts cannot
    take it meanwhile, and never one this process handed out before."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10000, low) if low > 10100 else 0
        if port in _issued_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        _issued_ports.add(port)
        return int(port)
    raise StackError("no free port found on 127.0.0.1")


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process exited with code {proc.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise StackError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal a process and wait for it to exit (SIGKILL after the timeout)."""
    if not pid_alive(pid):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our child
            if done == pid:
                return
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@dataclass
class Server:
    """A started server process and how to reach it."""

    name: str
    pid: int
    port: int
    run_dir: str
    log: str

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_pid(self.pid, timeout_s)

    def kill(self) -> None:
        stop_pid(self.pid, 5.0, signal.SIGKILL)


def _spawn(name: str, argv: list[str], run_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = run_dir / f"{name}.stdout.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return proc, log


def start_mosquitto(run_dir: Path, port: int | None = None, extra_conf: str = "") -> Server:
    port = port or free_port()
    base = run_dir / "mosquitto"
    (base / "data").mkdir(parents=True, exist_ok=True)
    conf = base / "mosquitto.conf"
    # No trailing comments in mosquitto.conf (they become part of the value); see shared/environment.md §5.
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings false",
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {base / 'data'}/",
                "autosave_interval 10",
                f"log_dest file {base / 'mosquitto.log'}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                f"pid_file {base / 'mosquitto.pid'}",
                "user root",
                "max_queued_messages 0",
                "max_inflight_messages 20",
                extra_conf,
                "",
            ]
        )
    )
    return run_mosquitto(conf, port, base)


def run_mosquitto(conf: Path, port: int, base: Path) -> Server:
    """Start mosquitto with a config file written elsewhere (e.g. by ``alumon broker config``); its stdout log
    goes to ``base``."""
    binary = require_binary("mosquitto")
    base.mkdir(parents=True, exist_ok=True)
    proc, log = _spawn("mosquitto", [binary, "-c", str(conf)], base)
    wait_for_port(port, 10.0, proc)
    return Server("mosquitto", proc.pid, port, str(base), str(log))


def start_influxd(run_dir: Path, port: int | None = None) -> Server:
    binary = require_binary("influxd")
    port = port or free_port()
    rpc_port = free_port()
    base = run_dir / "influxdb"
    for sub in ("meta", "data", "wal"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "influxdb.conf"
    conf.write_text(
        f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{base / 'meta'}"

[data]
  dir = "{base / 'data'}"
  wal-dir = "{base / 'wal'}"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false

[logging]
  level = "warn"
"""
    )
    proc, log = _spawn("influxd", [binary, "run", "-config", str(conf)], base)
    return _answering("influxd", proc, log, port, "/ping", 204)


def _answering(name: str, proc: subprocess.Popen[bytes], log: Path, port: int, path: str, status: int) -> Server:
    """The started server once ``GET path`` answers ``status`` (within 30 s), else a StackError naming its log."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}; see {log}")
        try:
            if requests.get(f"http://127.0.0.1:{port}{path}", timeout=0.5).status_code == status:
                return Server(name, proc.pid, port, str(log.parent), str(log))
        except requests.RequestException:
            pass
        time.sleep(0.05)
    stop_pid(proc.pid)
    raise StackError(f"{name} did not answer {path} on port {port} within 30 s; see {log}")


def start_victoria_metrics(run_dir: Path, port: int | None = None) -> Server:
    """VictoriaMetrics (Debian's ``victoria-metrics``): it accepts InfluxDB 2.x writes on ``/api/v2/write``, so
    it is the real server the ``api: v2`` writer (alumon/influx_v2.py) is tested against.

    Flags beyond address, data directory and retention, as observed with VictoriaMetrics 1.79:

    - ``-search.latencyOffset=0s``, ``-search.disableCache``: queries see samples up to "now" and never a
      cached answer from before the last write.
    - ``-dedup.minScrapeInterval=1ms``: without it, writing the same line twice stores two samples with the same
      timestamp (export shows both, ``count_over_time`` counts both). With it, one sample per series and
      millisecond is kept, applied at query and export time, so rewriting a redelivered batch is idempotent as
      in InfluxDB. Samples 1 ms apart stay distinct.

    Written rows sit in an in-memory buffer for up to about a second before they are searchable;
    ``GET /internal/force_flush`` makes them searchable at once (tests call it before reading back)."""
    binary = require_binary("victoria-metrics")
    port = port or free_port()
    base = run_dir / "victoria-metrics"
    (base / "data").mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={base / 'data'}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",
        "-search.disableCache",
        "-dedup.minScrapeInterval=1ms",
        "-loggerLevel=WARN",  # skipped malformed lines are still logged (at ERROR)
    ]
    proc, log = _spawn("victoria-metrics", argv, base)
    return _answering("victoria-metrics", proc, log, port, "/health", 200)


def start_smtp_sink(run_dir: Path, port: int | None = None, extra_args: tuple[str, ...] = ()) -> Server:
    """``extra_args``: TLS and AUTH options of ``alumon.smtp_sink`` (its password comes from the environment)."""
    port = port or free_port()
    base = run_dir / "smtp"
    base.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "alumon.smtp_sink", "--port", str(port), "--maildir", str(base / "maildir"),
            *extra_args]
    proc, log = _spawn("smtp", argv, base)
    wait_for_port(port, 15.0, proc)
    return Server("smtp", proc.pid, port, str(base), str(log))


@dataclass
class LocalStack:
    run_dir: str
    mosquitto: Server
    influxd: Server
    smtp: Server

    @property
    def maildir(self) -> Path:
        return Path(self.smtp.run_dir) / "maildir"

    def save(self) -> None:
        (Path(self.run_dir) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> LocalStack:
        data = json.loads((run_dir / STATE_FILE).read_text())
        return cls(
            run_dir=data["run_dir"],
            mosquitto=Server(**data["mosquitto"]),
            influxd=Server(**data["influxd"]),
            smtp=Server(**data["smtp"]),
        )

    def servers(self) -> list[Server]:
        return [self.mosquitto, self.influxd, self.smtp]

    def down(self) -> None:
        for server in self.servers():
            server.stop()
        state = Path(self.run_dir) / STATE_FILE
        state.unlink(missing_ok=True)


def stack_up(run_dir: Path, mqtt_port: int | None = None, influx_port: int | None = None,
             smtp_port: int | None = None) -> LocalStack:
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / STATE_FILE).exists():
        old = LocalStack.load(run_dir)
        if any(s.alive() for s in old.servers()):
            raise StackError(f"a stack is already running from {run_dir}; run `alumon stack down` first")
    started: list[Server] = []
    try:
        started.append(start_mosquitto(run_dir, mqtt_port))
        started.append(start_influxd(run_dir, influx_port))
        started.append(start_smtp_sink(run_dir, smtp_port))
    except Exception:
        for server in started:
            server.stop()
        raise
    stack = LocalStack(str(run_dir), *started)
    stack.save()
    return stack


def stack_down(run_dir: Path) -> LocalStack | None:
    state = run_dir.resolve() / STATE_FILE
    if not state.exists():
        return None
    stack = LocalStack.load(run_dir.resolve())
    stack.down()
    return stack
