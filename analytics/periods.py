"""The windows indicators are reported over, in the plant's local time: the calendar day, month and year
start at local midnight (Asia/Shanghai for a Guangxi plant, not UTC), shifts at their configured local times.

GB 21346-2022's statistical period is a year: every shorter window is *indicative* and labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from analytics.ledger import MINUTE_MS

PERIOD_WINDOWS = ("rolling_24h", "shift", "day", "month", "year")


@dataclass(frozen=True)
class Period:
    window: str
    start_ms: int
    end_ms: int | None  # when the calendar period closes (None for a rolling window): the projection target

    @property
    def indicative(self) -> bool:
        return self.window != "year"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def current_periods(now_ms: int, tz: ZoneInfo, shifts: list[time], windows: tuple[str, ...] = PERIOD_WINDOWS
                    ) -> list[Period]:
    """The periods containing ``now_ms``, in the order of ``windows``."""
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    year = month.replace(month=1)
    out: list[Period] = []
    for w in windows:
        if w == "rolling_24h":
            out.append(Period(w, (now_ms - 24 * 3_600_000) // MINUTE_MS * MINUTE_MS, None))
        elif w == "day":
            out.append(Period(w, _ms(day), _ms(day + timedelta(days=1))))
        elif w == "month":
            out.append(Period(w, _ms(month), _ms(next_month)))
        elif w == "year":
            out.append(Period(w, _ms(year), _ms(year.replace(year=year.year + 1))))
        elif w == "shift":
            out.append(_shift(local, day, shifts))
    return out


def _shift(local: datetime, day: datetime, shifts: list[time]) -> Period:
    starts = sorted(datetime.combine(day.date(), s, tzinfo=day.tzinfo) for s in shifts)
    candidates = [s - timedelta(days=1) for s in starts] + starts + [s + timedelta(days=1) for s in starts]
    start = max(s for s in candidates if s <= local)
    end = min(s for s in candidates if s > local)
    return Period("shift", _ms(start), _ms(end))
