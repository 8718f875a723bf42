"""Monthly ultra-low compliance: the share of a month's valid hourly means within the limit (the steel and
cement template: at least 95 %, limits.yaml ``ultra_low_defaults.compliance_rule``; assumed for aluminium)."""

from __future__ import annotations

from datetime import UTC, datetime

from alumon.schema import FieldValue
from analytics import cems
from analytics.kpi_row import KpiRow
from analytics.limits import Limits

Key = tuple[str, str, str]  # unit_process, pollutant, month (YYYY-MM, UTC)


def month_of(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m")


def month_start_ms(month: str) -> int:
    return int(datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)


def hour_of_row(row: KpiRow) -> cems.Hour:
    extra = dict(row.extra)
    return cems.Hour(row.t_ms, row.value, int(extra["valid_minutes"]), bool(extra["valid"]), str(extra["flag"]),
                     bool(extra["exceeded"]))


class MonthlyCompliance:
    """Hourly results per stack, pollutant and calendar month, turned into ``<pollutant>_monthly_compliance``
    KPI rows (timestamped at the month's start, so each update overwrites the month's point)."""

    def __init__(self, limits: Limits):
        self.min_share = limits.value("emissions.ultra_low_defaults.compliance_rule.min_share",
                                      "emissions.ultra_low_defaults", "monthly compliance share", "").value
        self.source = limits.ultra_low("so2").source
        self.hours: dict[Key, dict[int, cems.Hour]] = {}

    def add(self, row: KpiRow) -> list[KpiRow]:
        """Record an hourly row; return the final rows of months it closed (a new month began)."""
        pollutant = row.kpi.removesuffix("_hourly")
        month = month_of(row.t_ms)
        closed = [k for k in self.hours if k[:2] == (row.unit_process, pollutant) and k[2] < month]
        out = [self.row(k) for k in closed]
        for k in closed:
            del self.hours[k]
        self.hours.setdefault((row.unit_process, pollutant, month), {})[row.t_ms] = hour_of_row(row)
        return out

    def row(self, key: Key) -> KpiRow:
        unit, pollutant, month = key
        c = cems.compliance(list(self.hours[key].values()), self.min_share)
        extra: tuple[tuple[str, FieldValue], ...] = (
            ("valid_hours", c.valid_hours), ("exceedance_hours", c.exceedance_hours), ("min_share", self.min_share))
        if c.met is not None:
            extra += (("met", c.met),)
        level = "" if c.met is None else ("compliant" if c.met else "not_compliant")
        return KpiRow(month_start_ms(month), unit, f"{pollutant}_monthly_compliance", "month", c.share,
                      "share of valid hours", 1.0, level, self.source, extra=extra)

    def month_to_date(self) -> list[KpiRow]:
        return [self.row(k) for k in self.hours]
