"""Plant simulator: the pure model's KPIs by hand, and the live Modbus servers read by pymodbus and mbpoll."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from alumon.codec import DataType, WordOrder, decode
from alumon.config import Site, load_site
from alumon.sim.faults import parse_fault
from alumon.sim.plant import PlantModel
from alumon.sim.server import run_simulator
from alumon.stack import require_binary
from edge.counters import ROLLOVER, classify_step
from tests.conftest import write_site

ENERGY = ("pl1-ac-meter", "forward_active_kwh")
METAL = ("pl1-scale", "metal_tapped_t")


def kwh_per_t(model: PlantModel, t0: float, t1: float, step: float = 1.0) -> float:
    """Advance the model from t0 to t1 and return potline-1 AC kWh per tonne over that span."""
    model.step(t0)
    e0 = model.values[("pl1-ac-meter", "forward_active_kwh")]
    m0 = model.values[("pl1-scale", "metal_tapped_t")]
    t = t0
    while t < t1:
        t = min(t1, t + step)
        model.step(t)
    e1 = model.values[("pl1-ac-meter", "forward_active_kwh")]
    m1 = model.values[("pl1-scale", "metal_tapped_t")]
    return (e1 - e0) / (m1 - m0)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return load_site(write_site(tmp_path / "site.yaml"))


def test_unknown_scenario_lists_valid(site: Site) -> None:
    with pytest.raises(ValueError, match="energy-drift"):
        PlantModel(site, "meltdown")


def test_model_normal_kwh_per_t(site: Site) -> None:
    model = PlantModel(site, "normal")
    assert kwh_per_t(model, 1000.0, 1600.0) == pytest.approx(12_900, abs=30)
    model.step(1601.0)
    e0, m0 = model.values[("pl2-ac-meter", "forward_active_kwh")], model.values[("pl2-scale", "metal_tapped_t")]
    model.step(1900.0)
    e1, m1 = model.values[("pl2-ac-meter", "forward_active_kwh")], model.values[("pl2-scale", "metal_tapped_t")]
    assert (e1 - e0) / (m1 - m0) == pytest.approx(12_900, abs=30)


def test_model_energy_drift(site: Site) -> None:
    model = PlantModel(site, "energy-drift")
    assert abs(kwh_per_t(model, 1000.0, 1014.0) - 12_900) < 100  # before the drift starts (15 s)
    drifted = kwh_per_t(model, 1030.0, 1040.0)  # the drift at its height, 30 to 40 s
    assert 15_000 < drifted < 15_800
    assert abs(kwh_per_t(model, 1050.0, 1100.0) - 12_900) < 100  # put right by 45 s


def test_model_counters_never_decrease(site: Site) -> None:
    model = PlantModel(site, "energy-drift")
    counters = [("pl1-ac-meter", "forward_active_kwh"), ("pl1-scale", "metal_tapped_t"),
                ("ref-power", "import_kwh"), ("potroom-aux", "import_kwh")]
    model.step(0.0)
    last = {c: model.values[c] for c in counters}
    assert all(v > 0 for v in last.values())  # seeded non-zero offset
    for i in range(1, 200):
        model.step(float(i))
        for c in counters:
            assert model.values[c] > last[c]
            last[c] = model.values[c]


@pytest.fixture
def running(site: Site, tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    stop = threading.Event()
    trace = tmp_path / "trace.jsonl"
    thread = threading.Thread(target=run_simulator, args=(site, "normal", trace, stop), daemon=True)
    thread.start()
    yield site, trace
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def _port(site: Site, device_id: str) -> int:
    dev = next(d for d in site.config.devices if d.id == device_id)
    return int(dev.transport.port)  # type: ignore[union-attr]


def _read(port: int, address: int, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while True:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
        try:
            if client.connect():  # type: ignore[no-untyped-call]
                rr = client.read_holding_registers(address, count=count, device_id=1)
                if not rr.isError():
                    return list(rr.registers)
        finally:
            client.close()  # type: ignore[no-untyped-call]
        if time.monotonic() > deadline:
            raise AssertionError(f"no Modbus answer on port {port}")
        time.sleep(0.2)


def test_servers_answer_with_plausible_values(running: tuple[Site, Path]) -> None:
    site, trace = running
    port = _port(site, "pl1-rectifier")
    current = decode(_read(port, 0, 2), DataType.F32, WordOrder.ABCD)
    voltage = decode(_read(port, 2, 2), DataType.F32, WordOrder.ABCD)
    assert 380 < current < 420
    assert 1100 < voltage < 1300  # 300 cells × ~3.9 V + busbar
    e0 = decode(_read(port, 6, 4), DataType.U64, WordOrder.ABCD)
    time.sleep(1.5)
    e1 = decode(_read(port, 6, 4), DataType.U64, WordOrder.ABCD)
    assert e1 > e0 > 0

    mbpoll = require_binary("mbpoll")
    out = subprocess.run([mbpoll, "-m", "tcp", "-p", str(port), "-a", "1", "-r", "1", "-c", "1",
                          "-t", "4:float", "-B", "-1", "-q", "127.0.0.1"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    value = float(out.split("]:")[1].split()[0]) if "]:" in out else float(out.split()[0])
    assert 380 < value < 420

    # The trace is the ground truth: hand-compute kWh/t between its first and last second.
    time.sleep(3.5)
    rows = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    energy = [(r["t"], r["value"]) for r in rows if (r["device"], r["quantity"]) == ENERGY]
    metal = [(r["t"], r["value"]) for r in rows if (r["device"], r["quantity"]) == METAL]
    assert len(energy) >= 4 and [t for t, _ in energy] == [t for t, _ in metal]
    ratio = (energy[-1][1] - energy[0][1]) / (metal[-1][1] - metal[0][1])
    assert abs(ratio - 12_900) < 100


def test_calciner_calibrates_once_an_hour(site: Site) -> None:
    model = PlantModel(site, "normal")
    t0 = 1_000_000.0
    model.step(t0)
    flags = {}
    for minute in range(0, 120):
        model.step(t0 + minute * 60.0 + 1.0)
        flags[minute] = model.values[("cems-calciner", "das_flag")]
    calibrating = [m for m, f in flags.items() if f == 5.0]
    # Span gas at 40-44 min and again at 100-104 min after start (5 minutes, once an hour), flag C (code 5).
    assert calibrating == [40, 41, 42, 43, 44, 100, 101, 102, 103, 104]
    model.step(t0 + 41 * 60.0)
    assert model.values[("cems-calciner", "so2_mgm3")] == pytest.approx(80.0, abs=2.0)


def test_stopped_source_and_analyser_fault(site: Site) -> None:
    model = PlantModel(site, "normal")
    t0 = 2_000_000.0
    model.step(t0)
    model.step(t0 + 3 * 3600 + 60)
    assert model.values[("cems-potroom", "das_flag")] == 1.0  # F: gas treatment stopped
    assert model.values[("cems-calciner", "das_flag")] == 0.0
    model.step(t0 + 4 * 3600 + 60)
    assert model.values[("cems-calciner", "das_flag")] == 4.0  # D: analyser fault
    assert model.values[("cems-potroom", "das_flag")] == 0.0


def test_rollover_fault_wraps_the_register_on_the_wire(site: Site, tmp_path: Path) -> None:
    """Potline 2's AC meter with ``rollover:1:4``, read over Modbus TCP: its import-energy register runs just
    below 2**32, wraps through zero once, in the middle of the window (3 s), in a step the edge takes for a
    rollover, and unwrapped counts what the plant consumed (the simulator's trace): the metered energy does
    not jump. Its reverse-energy register, which does not count, is left where it was."""
    device = "pl2-ac-meter"
    profile = site.profile_of(device)
    forward, reverse = profile.field("forward_active_kwh"), profile.field("reverse_active_kwh")
    assert profile.wire_address(reverse) == profile.wire_address(forward) + 2  # one read gets both
    stop = threading.Event()
    trace = tmp_path / "trace.jsonl"
    thread = threading.Thread(target=run_simulator, daemon=True,
                              args=(site, "normal", trace, stop, [parse_fault(f"{device}:rollover:1:4")]))
    began = time.monotonic()
    thread.start()
    samples: list[tuple[float, int, int]] = []  # (seconds since start, forward, reverse) in register counts
    try:
        while time.monotonic() - began < 6.0:
            regs = _read(_port(site, device), profile.wire_address(forward), 4)
            samples.append((time.monotonic() - began, int(decode(regs[:2], DataType.U32, WordOrder.CDAB)),
                            int(decode(regs[2:], DataType.U32, WordOrder.CDAB))))
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()

    wraps = [i for i, (a, b) in enumerate(pairwise(samples)) if b[1] < a[1]]
    assert len(wraps) == 1, samples
    before, after = samples[wraps[0]], samples[wraps[0] + 1]
    assert 1.0 < after[0] < 5.5  # inside the window (the simulator's clock starts a little after ours)
    assert classify_step(before[1], after[1], forward.modulus) == ROLLOVER
    true = [(r["t"], r["value"]) for r in map(json.loads, trace.read_text(encoding="utf-8").splitlines())
            if (r["device"], r["quantity"]) == (device, forward.name)]
    rate = (true[-1][1] - true[0][1]) / (true[-1][0] - true[0][0]) / forward.scale  # counts per second
    assert len(true) >= 4 and rate > 0
    assert forward.modulus - before[1] < 5 * rate  # seconds of counting below the top, not a span away
    # Unwrapped, the register counted what the plant consumed (a jump at the window's start, or a span lost
    # or added, would be many thousand seconds of counting).
    unwrapped = samples[-1][1] + forward.modulus - samples[0][1]
    assert unwrapped / (samples[-1][0] - samples[0][0]) == pytest.approx(rate, rel=0.2)
    assert len({r for _, _, r in samples}) == 1 and samples[0][2] < forward.modulus // 2


def test_rollover_fault_refused_where_nothing_wraps(site: Site) -> None:
    run = threading.Event()
    run.set()  # never serves: the faults are refused before any port opens
    with pytest.raises(ValueError, match="unsigned integer counter"):  # SDM630: float totalisers
        run_simulator(site, "normal", None, run, [parse_fault("ref-power:rollover:1:4")])
    with pytest.raises(ValueError, match="one rollover fault per device"):
        run_simulator(site, "normal", None, run, [parse_fault("pl2-ac-meter:rollover:1:4"),
                                                 parse_fault("pl2-ac-meter:rollover:9:4")])
