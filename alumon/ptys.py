"""A virtual RS-485 bus: two pseudo-terminals joined by ``socat`` (Debian package ``socat``).

The simulator opens one end as its serial port, the edge the other, so RTU framing, CRCs and serial timing
go through a real tty driver. Used by the tests and by ``alumon demo`` to put devices on a serial line.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from alumon.stack import StackError, require_binary, stop_pid


@dataclass
class PtyPair:
    master_end: Path  # the edge (Modbus master) opens this one
    device_end: Path  # the simulator (the slaves on the bus) opens this one
    pid: int

    def stop(self) -> None:
        stop_pid(self.pid, 5.0)


def start_pty_pair(directory: Path, name: str = "bus") -> PtyPair:
    binary = require_binary("socat")
    directory.mkdir(parents=True, exist_ok=True)
    master, device = directory / f"{name}-master", directory / f"{name}-device"
    log = (directory / f"{name}-socat.log").open("ab")
    proc = subprocess.Popen(
        [binary, f"pty,raw,echo=0,link={master}", f"pty,raw,echo=0,link={device}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 5
    while not (master.exists() and device.exists()):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_pid(proc.pid, 1.0)
            raise StackError(f"socat did not create the pseudo-terminal pair in {directory}")
        time.sleep(0.02)
    return PtyPair(master, device, proc.pid)
