"""The one output format of every benchmark: one JSON line per figure on stdout (bench/run tabulates them)."""

from __future__ import annotations

import json


def emit(bench: str, figure: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"bench": bench, "figure": figure, "value": round(value, 3), "unit": unit, **extra}),
          flush=True)
