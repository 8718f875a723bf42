"""The one output format of every benchmark (one JSON line per figure on stdout; bench/run tabulates them),
and the one way they read a process's CPU time."""

from __future__ import annotations

import json
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def emit(bench: str, figure: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"bench": bench, "figure": figure, "value": round(value, 3), "unit": unit, **extra}),
          flush=True)
