"""Threshold bands for the dashboards, every number looked up in ``analytics.limits.Limits`` (which reads
``alumon/data/limits.yaml`` plus the site's overrides), so a band on a chart carries the same figure and source
as the KPI rows and alerts. Nothing regulatory is typed here; only the colours are ours.

Grafana colours a value by the last step at or below it, so a band's colour applies from its mark upwards.
GB 21346-2022 compares with ≤: a value exactly on a level shows in the colour of the band above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard

from alumon.config import SiteConfig
from analytics.kpi_row import KpiRow
from analytics.limits import Limit, LimitError, Limits
from analytics.rules import load_rules


@dataclass(frozen=True)
class Mark:
    value: float
    color: str  # from this value upwards
    label: str
    source: str


@dataclass(frozen=True)
class Bands:
    base: str  # colour below the first mark
    marks: tuple[Mark, ...]
    unit: str

    def steps(self) -> list[dashboard.Threshold]:
        """Marks of equal value collapse into one step with the colour of the last (the worse side)."""
        by_value: dict[float, str] = {}
        for m in sorted(self.marks, key=lambda m: m.value):
            by_value[m.value] = m.color
        return [dashboard.Threshold(value=None, color=self.base),
                *(dashboard.Threshold(value=v, color=c) for v, c in by_value.items())]

    def thresholds(self) -> dash.ThresholdsConfig:
        return dash.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(self.steps())

    def describe(self) -> str:
        """For the panel description: each figure with its name and source (Markdown)."""
        return "\n".join(f"* {m.value:g} {self.unit}: {m.label} — {m.source}" for m in self.marks)


def _mark(limit: Limit, color: str) -> Mark:
    return Mark(limit.value, color, limit.name, limit.source)


def al_liquid_ac(limits: Limits) -> Bands:
    """铝液交流电耗: GB 21346-2022 levels 1-3 and the NDRC benchmark (the seed law's target) and baseline."""
    return Bands("dark-green", (
        _mark(limits.al_liquid_ac_level(1), "green"),
        _mark(limits.al_liquid_ac_level(2), "orange"),
        _mark(limits.ndrc("benchmark"), "orange"),
        _mark(limits.al_liquid_ac_level(3), "red"),
        _mark(limits.ndrc("baseline"), "red"),
    ), "kWh/t")


def gb21346(limits: Limits, indicator: str, product: str = "electrolytic_aluminium") -> Bands:
    """Any GB 21346-2022 indicator: level 1 is the seed law's target (先进值), above level 3 fails the limit."""
    levels = [limits.gb21346_level(indicator, n, product) for n in (1, 2, 3)]
    return Bands("green", (_mark(levels[0], "yellow"), _mark(levels[1], "orange"), _mark(levels[2], "red")),
                 levels[0].unit)


def pollutant(limits: Limits, source_types: list[str], name: str) -> Bands:
    """Ultra-low (the seed law's target), GB 25465-2010 special and Table 5 limits of a pollutant; a limit that
    differs between the stacks emitting it is left out (their hourly rows carry each stack's own)."""
    marks: list[Mark] = []
    for kind, color in (("ultra_low", "red"), ("special", "dark-red"), ("normal", "purple")):
        found = {st: limits.applicable(st, name).get(kind) for st in source_types}
        values = {lim.value for lim in found.values() if lim is not None}
        if len(values) == 1 and all(lim is not None for lim in found.values()):
            marks.append(_mark(next(lim for lim in found.values() if lim is not None), color))
    return Bands("green", tuple(marks), "mg/m³")


def completeness(config: SiteConfig) -> Bands:
    """Share of the window covered by good data; below the site's min_completeness no alert is judged."""
    need = config.analytics.min_completeness
    return Bands("red", (Mark(need, "yellow", "analytics.min_completeness (site file)", "alumon site config"),
                         Mark(0.95, "green", "95 % (engineering default)", "alumon")), "")


def production_deviation(limits: Limits) -> Bands:
    lim = limits.value("energy.production_crosscheck.max_deviation", "energy.production_crosscheck",
                       "weighed vs Faraday", "fraction")
    return Bands("green", (_mark(lim, "red"),), "")


def seed_target(limits: Limits, name: str) -> tuple[Bands, str]:
    """A seed-law target (limits.yaml ``seed_targets``): red below, green from the target; and its deadline."""
    key = f"seed_targets.{name}"
    target = limits.value(key, "seed_targets", name, "fraction")
    entry = limits.entry(key)
    return Bands("red", (_mark(target, "green"),), ""), str(entry.get("deadline", ""))


def ultra_low_share(limits: Limits) -> Bands:
    """Monthly compliance: the share of valid hours within the ultra-low limit must reach min_share."""
    try:
        share = limits.value("emissions.ultra_low_defaults.compliance_rule.min_share",
                             "emissions.ultra_low_defaults", "monthly compliance share", "")
    except LimitError:
        return Bands("green", (), "")
    return Bands("red", (_mark(share, "green"),), "")


def poll_success() -> Bands:
    """Not regulatory: where an engineer should look at a meter's wiring or gateway."""
    return Bands("red", (Mark(95.0, "yellow", "95 % (engineering default)", "alumon"),
                         Mark(99.5, "green", "99.5 % (engineering default)", "alumon")), "%")


def alert_rule(config: SiteConfig, limits: Limits, name: str) -> Bands:
    """The threshold of an alert rule (alumon/data/alert_rules.yaml with the site's ``alerts.rules``), for
    signals judged by a rule rather than by a regulation, e.g. ``source_stale``. A disabled rule: no band."""
    rule = next((r for r in load_rules(config.alerts.rules).rules if r.name == name), None)
    if rule is None:
        return Bands("green", (), "")
    # Only a gb21346 or ultra_low rule reads the row (its process or pollutant); these rules do not.
    limit = rule.limit(limits, KpiRow(0, "", rule.kpi, "", None, "", 1.0, "", ""))
    return Bands("green", (_mark(limit, "red"),), limit.unit)
