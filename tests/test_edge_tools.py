"""Commissioning tools: `alumon edge plan` and `alumon edge probe` against a simulated meter."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from alumon.codec import DataType, WordOrder
from alumon.config import load_site
from edge.plan_report import plan_site, rtu_request_s
from edge.probe import interpretations, parse_range
from tests.conftest import EXAMPLE_SITE, write_site
from tests.edge_support import running, sim


def test_rtu_request_time_by_hand() -> None:
    # 10 registers at 9600 baud: 8 + 5 + 20 + 7 (two 3.5-char gaps) = 40 chars × 11 bits = 440 bits
    # = 45.83 ms on the wire, + 10 ms turnaround.
    assert rtu_request_s(10, 9600) == pytest.approx(0.05583, abs=1e-5)


def test_plan_of_example_site_fits() -> None:
    plans = {p.device: p for p in plan_site(load_site(EXAMPLE_SITE))}
    assert plans["potroom-aux"].requests == 2 and plans["potroom-aux"].registers == 36
    assert all(p.fits for p in plans.values())


def test_probe_finds_the_word_order() -> None:
    regs = [0x5200, 0x464B]  # 13 012.5 in CDAB
    hits = [r for r in interpretations(regs, (13000, 13100)) if r.in_range]
    assert [(r.data_type, r.order) for r in hits] == [(DataType.F32, WordOrder.CDAB)]
    with pytest.raises(ValueError, match=r"MIN\.\.MAX"):
        parse_range("200-250")


def test_probe_cli_against_simulator(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path / "site.yaml"))
    port = next(d.transport.port for d in site.config.devices if d.id == "pl1-rectifier")  # type: ignore[union-attr]
    with running(sim(site)):
        time.sleep(1.0)
        out = subprocess.run([sys.executable, "-m", "alumon", "edge", "probe", f"127.0.0.1:{port}", "--address", "0",
                              "--count", "4", "--expect", "350..450"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "raw: 0=0x" in out.stdout
    assert any("f32  ABCD" in line and "in range" in line for line in out.stdout.splitlines()), out.stdout


def test_plan_warns_when_a_shared_bus_cannot_poll_its_devices_in_time(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE_SITE.read_text())
    for unit, dev in enumerate(d for d in data["devices"] if d["id"].startswith("pl1-")):
        dev.update(unit_id=unit + 1, poll_interval_s=0.15, timeout_s=0.1,
                   transport={"type": "rtu", "serial_port": "/dev/ttyUSB0", "baudrate": 9600})
    (tmp_path / "bus.yaml").write_text(yaml.safe_dump(data))
    plans = {p.device: p for p in plan_site(load_site(tmp_path / "bus.yaml"))}
    bus = plans["pl1-rectifier"]
    # rectifier, meter and scale: four RTU reads of 45-60 ms each at 9600 baud do not fit 0.15 s together
    assert bus.line_devices == 3 and bus.line_cycle_s == pytest.approx(
        sum(plans[d].predicted_cycle_s for d in ("pl1-rectifier", "pl1-ac-meter", "pl1-scale")))
    assert bus.predicted_cycle_s < 0.15 < bus.line_cycle_s
    assert "its bus rtu:///dev/ttyUSB0 needs" in bus.warning
    out = subprocess.run([sys.executable, "-m", "alumon", "edge", "plan", "--site", str(tmp_path / "bus.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "WARNING: its bus" in out.stdout, out.stdout
