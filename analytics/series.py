"""Time series buffers for the readings analytics needs, keyed by reading path ``device.quantity``."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from alumon.telemetry import Quality, TelemetryMessage

STEP_NORMAL, STEP_ROLLOVER, STEP_RESET = 0, 1, 2  # how a counter sample relates to the previous one
_STEPS = {"rollover": STEP_ROLLOVER, "reset": STEP_RESET}


def step_of(flags: Iterable[str]) -> int:
    """The step code of a sample from the edge's counter flags (a reset outranks a rollover)."""
    return max((_STEPS.get(f, STEP_NORMAL) for f in flags), default=STEP_NORMAL)


def step_of_text(text: str) -> int:
    """``step_of`` for the flags column of a replay CSV (``rollover;reset``); an unknown flag is refused."""
    flags = text.split(";") if text else []
    unknown = [f for f in flags if f not in _STEPS]
    if unknown:
        raise ValueError(f"unknown flag {unknown[0]!r} ({', '.join(_STEPS)})")
    return step_of(flags)


class Series:
    """One reading's samples in time order, in numpy arrays that grow by doubling and drop their head on
    ``trim``, so a window is a binary search and a slice, not a copy of Python lists."""

    def __init__(self) -> None:
        self._t = np.empty(64, dtype=np.int64)
        self._v = np.empty(64, dtype=np.float64)  # NaN: no value
        self._g = np.empty(64, dtype=bool)
        self._s = np.empty(64, dtype=np.int8)  # edge counter flags: rollover / reset
        self._lo = 0  # live samples are [_lo, _hi)
        self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    def _room(self, extra: int) -> None:
        """Make room for ``extra`` samples at the end: move the live part to the front, grow if needed."""
        n = len(self)
        if self._hi + extra <= len(self._t):
            return
        capacity = max(len(self._t), 64)
        while n + extra > capacity // 2:
            capacity *= 2
        for name in ("_t", "_v", "_g", "_s"):
            old = getattr(self, name)
            new = np.empty(capacity, dtype=old.dtype) if capacity != len(old) else old
            new[:n] = old[self._lo:self._hi]
            setattr(self, name, new)
        self._lo, self._hi = 0, n

    def add(self, t_ms: int, value: float | None, good: bool, flags: list[str] | tuple[str, ...] = ()) -> None:
        self._insert(t_ms, np.nan if value is None else value, good and value is not None, step_of(flags))

    def _insert(self, t_ms: int, value: float, good: bool, step: int) -> None:
        """One sample (value NaN when there is none) at its place in time order."""
        if len(self) and t_ms <= self._t[self._hi - 1]:
            # Out of order (e.g. spool replay after live data): insert in place to keep time order.
            offset = int(np.searchsorted(self._t[self._lo:self._hi], t_ms))
            if offset < len(self) and self._t[self._lo + offset] == t_ms:
                return  # a redelivered message: same point, keep one
            self._room(1)
            i = self._lo + offset
        else:
            self._room(1)
            i = self._hi
        for arr in (self._t, self._v, self._g, self._s):
            arr[i + 1:self._hi + 1] = arr[i:self._hi].copy()
        self._t[i] = t_ms
        self._v[i] = value
        self._g[i] = good and value == value
        self._s[i] = step
        self._hi += 1

    def extend(self, t_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64], good: npt.NDArray[np.bool_],
               steps: npt.NDArray[np.int8]) -> None:
        """Bulk ``add`` (replay): one copy when the samples are strictly after the last one held."""
        if len(t_ms) == 0:
            return
        if (len(self) and t_ms[0] <= self._t[self._hi - 1]) or bool(np.any(np.diff(t_ms) <= 0)):
            for t, v, g, s in zip(t_ms.tolist(), values.tolist(), good.tolist(), steps.tolist(), strict=True):
                self._insert(t, v, g, s)
            return
        self._room(len(t_ms))
        end = self._hi + len(t_ms)
        self._t[self._hi:end] = t_ms
        self._v[self._hi:end] = values
        self._g[self._hi:end] = good & ~np.isnan(values)
        self._s[self._hi:end] = steps
        self._hi = end

    def window(self, start_ms: int, end_ms: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Good samples with start <= t < end. The end is exclusive: live evaluation at wall-clock ``end`` has
        not yet received the polls taken at that instant, and replay must see exactly what live saw."""
        t, v, _ = self.counter_window(start_ms, end_ms)
        return t, v

    def counter_window(self, start_ms: int, end_ms: int) -> tuple[
            npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int8]]:
        """Like ``window``, with each sample's step flag. The arrays are copies."""
        i, j = self._lo + np.searchsorted(self._t[self._lo:self._hi], [start_ms, end_ms])
        good = self._g[i:j]
        return self._t[i:j][good], self._v[i:j][good], self._s[i:j][good]

    def last_good_ms(self, end_ms: int) -> int | None:
        """Time of the newest good sample before ``end_ms`` (exclusive, as windows are)."""
        j = self._lo + int(np.searchsorted(self._t[self._lo:self._hi], end_ms))
        good = np.flatnonzero(self._g[self._lo:j])
        return int(self._t[self._lo + good[-1]]) if len(good) else None

    def trim(self, before_ms: int) -> None:
        self._lo += int(np.searchsorted(self._t[self._lo:self._hi], before_ms))


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

    def add_columns(self, paths: list[str], t_ms: npt.NDArray[np.int64], path: npt.NDArray[np.int32],
                    values: npt.NDArray[np.float64], good: npt.NDArray[np.bool_],
                    steps: npt.NDArray[np.int8]) -> None:
        """Bulk ``add_message`` (replay): samples in time order, each naming its series by index in ``paths``."""
        if len(t_ms) == 0:
            return
        order = np.argsort(path, kind="stable")  # stable: each series keeps its samples in time order
        with self.lock:
            for part in np.split(order, np.flatnonzero(np.diff(path[order])) + 1):
                self.series[paths[int(path[part[0]])]].extend(t_ms[part], values[part], good[part], steps[part])
            self.latest_ms = max(self.latest_ms, int(t_ms[-1]))

    def trim(self, before_ms: int) -> None:
        with self.lock:
            for s in self.series.values():
                s.trim(before_ms)
