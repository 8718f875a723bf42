"""Time series buffers for the readings analytics needs, keyed by reading path ``device.quantity``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alumon.telemetry import Quality, TelemetryMessage

STEP_NORMAL, STEP_ROLLOVER, STEP_RESET = 0, 1, 2  # how a counter sample relates to the previous one
_STEPS = {"rollover": STEP_ROLLOVER, "reset": STEP_RESET}


@dataclass
class Series:
    t_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    good: list[bool] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)  # edge counter flags: rollover / reset

    def add(self, t_ms: int, value: float | None, good: bool, flags: list[str] | tuple[str, ...] = ()) -> None:
        step = max((_STEPS.get(f, STEP_NORMAL) for f in flags), default=STEP_NORMAL)
        i = len(self.t_ms)
        if self.t_ms and t_ms <= self.t_ms[-1]:
            # Out of order (e.g. spool replay after live data): insert in place to keep time order.
            i = int(np.searchsorted(np.asarray(self.t_ms), t_ms))
            if i < len(self.t_ms) and self.t_ms[i] == t_ms:
                return  # a redelivered message: same point, keep one
        self.t_ms.insert(i, t_ms)
        self.values.insert(i, value if value is not None else np.nan)
        self.good.insert(i, good and value is not None)
        self.steps.insert(i, step)

    def window(self, start_ms: int, end_ms: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Good samples with start <= t < end. The end is exclusive: live evaluation at wall-clock ``end`` has
        not yet received the polls taken at that instant, and replay must see exactly what live saw."""
        t, v, _ = self.counter_window(start_ms, end_ms)
        return t, v

    def counter_window(self, start_ms: int, end_ms: int) -> tuple[
            npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int8]]:
        """Like ``window``, with each sample's step flag."""
        t = np.asarray(self.t_ms, dtype=np.int64)
        v = np.asarray(self.values, dtype=np.float64)
        g = np.asarray(self.good, dtype=bool)
        s = np.asarray(self.steps, dtype=np.int8)
        mask = g & (t >= start_ms) & (t < end_ms)
        return t[mask], v[mask], s[mask]

    def trim(self, before_ms: int) -> None:
        i = int(np.searchsorted(np.asarray(self.t_ms, dtype=np.int64), before_ms))
        if i:
            del self.t_ms[:i], self.values[:i], self.good[:i], self.steps[:i]


class SeriesStore:
    """Thread-safe: the MQTT thread adds, the evaluation loop reads."""

    def __init__(self, wanted: set[str]):
        self.wanted = wanted
        self.series: dict[str, Series] = {path: Series() for path in wanted}
        self.lock = threading.Lock()
        self.latest_ms = 0

    def add_message(self, msg: TelemetryMessage) -> None:
        t = msg.ts_ms
        with self.lock:
            for quantity, reading in msg.readings.items():
                path = f"{msg.device}.{quantity}"
                if path in self.series:
                    self.series[path].add(t, reading.value, reading.quality is Quality.GOOD, reading.flags)
            self.latest_ms = max(self.latest_ms, t)

    def trim(self, before_ms: int) -> None:
        with self.lock:
            for s in self.series.values():
                s.trim(before_ms)
