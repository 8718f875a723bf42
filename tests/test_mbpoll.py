"""The shipped profiles cross-checked with an independent Modbus master: Debian's ``mbpoll`` reads the same
registers from the simulator as the edge does, over Modbus TCP and over RTU on a pseudo-terminal, and must
see the same numbers. A wrong address base, word order or scale in a profile shows up here."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from alumon.codec import DataType, WordOrder
from alumon.config import Device, Site, load_site
from alumon.profiles import DeviceProfile, RegisterField
from alumon.ptys import start_pty_pair
from alumon.stack import require_binary
from edge.lines import build_lines
from edge.poller import DevicePoller
from tests.conftest import write_site
from tests.edge_support import running, sim

ONE_DEVICE_PER_PROFILE = ("pl1-rectifier", "pl1-ac-meter", "pl1-scale", "potroom-aux", "ref-totaliser",
                          "cems-calciner")
_LINE = re.compile(r"^\[(\d+)\]:\s+(-?[0-9.eE+-]+)")


def mbpoll_type(profile: DeviceProfile, f: RegisterField) -> list[str] | None:
    """mbpoll's options for a field it can decode itself (16-bit, 32-bit int and float), else None."""
    table = "3" if profile.function_of(f).value == "input" else "4"
    order = profile.order_of(f)
    if f.type in (DataType.U16, DataType.BITFIELD) and f.bit is None and order is WordOrder.ABCD:
        return ["-t", table]
    if f.type in (DataType.F32, DataType.I32, DataType.U32) and order in (WordOrder.ABCD, WordOrder.CDAB):
        kind = "float" if f.type is DataType.F32 else "int"
        return ["-t", f"{table}:{kind}"] + (["-B"] if order is WordOrder.ABCD else [])  # mbpoll default: CDAB
    return None


def mbpoll_read(target: list[str], unit: int, profile: DeviceProfile, f: RegisterField) -> float:
    options = mbpoll_type(profile, f)
    assert options is not None
    out = subprocess.run([require_binary("mbpoll"), *target, "-a", str(unit), "-0", "-r",
                          str(profile.wire_address(f)), "-c", "1", "-1", "-o", "2", *options],
                         capture_output=True, text=True, timeout=20)
    for line in out.stdout.splitlines():
        m = _LINE.match(line.strip())
        if m:
            raw = float(m.group(2))
            if f.type is DataType.U32 and raw < 0:  # mbpoll prints 32-bit values as signed
                raw += 2**32
            return raw * f.scale + f.offset
    raise AssertionError(f"mbpoll gave no value for {f.name}: {out.stdout} {out.stderr}")


def edge_values(device: Device, profile: DeviceProfile) -> dict[str, float | None]:
    async def once() -> dict[str, float | None]:
        line = build_lines([device])[device.id]
        try:
            result = await DevicePoller(device, profile, line, lambda _r: None).poll_once(time.time())
        finally:
            line.close()
        assert result.ok, result.reason
        return {k: r.value for k, r in result.readings.items()}

    return asyncio.run(once())


def cross_check(site: Site, device_id: str, target: list[str]) -> int:
    device, profile = site.config.device(device_id), site.profile_of(device_id)
    checked = 0
    for f in profile.fields:
        if mbpoll_type(profile, f) is None:
            continue
        before = edge_values(device, profile)[f.name]
        theirs = mbpoll_read(target, device.unit_id, profile, f)
        after = edge_values(device, profile)[f.name]
        assert before is not None and after is not None
        low, high = min(before, after), max(before, after)  # the plant moves between the reads
        tolerance = 1e-4 * max(abs(high), 1.0)
        assert low - tolerance <= theirs <= high + tolerance, (device_id, f.name, before, theirs, after)
        checked += 1
    return checked


@pytest.fixture
def served_site(tmp_path: Path) -> object:
    site = load_site(write_site(tmp_path / "site.yaml"))
    with running(sim(site)):
        time.sleep(0.8)
        yield site


def test_profiles_agree_with_mbpoll_over_tcp(served_site: Site) -> None:
    checked = 0
    for device_id in ONE_DEVICE_PER_PROFILE:
        t = served_site.config.device(device_id).transport
        assert t.type == "tcp"
        checked += cross_check(served_site, device_id, ["-m", "tcp", "-p", str(t.port), t.host])
    assert checked >= 25  # every 16/32-bit field of the six profiles


def test_rtu_profile_agrees_with_mbpoll_on_a_serial_line(tmp_path: Path) -> None:
    pair = start_pty_pair(tmp_path / "pty")
    data = yaml.safe_load(write_site(tmp_path / "base.yaml").read_text())
    for dev in data["devices"]:
        if dev["id"] == "cems-calciner":
            # no parity: the Linux pty driver refuses parity settings (EINVAL), a real RS-485 port does not
            dev.update(unit_id=7, transport={"type": "rtu", "serial_port": "SERIAL", "baudrate": 19200})
    sites = []
    for name, end in (("edge", pair.master_end), ("sim", pair.device_end)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data).replace("SERIAL", str(end)))
        sites.append(load_site(tmp_path / f"{name}.yaml"))
    try:
        with running(sim(sites[1])):
            time.sleep(0.8)
            target = ["-m", "rtu", "-b", "19200", "-P", "none", str(pair.master_end)]
            assert cross_check(sites[0], "cems-calciner", target) >= 9
    finally:
        pair.stop()
