"""Alert rules and their state machine: pending -> firing -> resolved, one incident id per episode.

A rule fires when its KPI stays above the limit for ``pending_s``; it resolves only when the KPI falls below
``limit × reset_ratio`` (hysteresis), so a value hovering at the limit does not flap. KPIs below the
required completeness are not evaluated, and data replayed from an edge spool (historical) never fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from alumon.alert import Alert, AlertState, Audience, Severity
from analytics.kpi_row import KpiRow
from analytics.limits import Limit, Limits
from analytics.periods import PERIOD_WINDOWS
from analytics.state import EpisodeFile


@dataclass(frozen=True)
class Rule:
    name: str
    kpi: str  # which KPI rows it watches
    severity: Severity
    audience: Audience
    limit: Callable[[Limits, KpiRow], Limit]  # the threshold for this row (e.g. by the refinery's process)
    reset_ratio: float
    description_zh: str
    description_en: str
    pending_s: float | None = None  # None: the site's alert_pending_s
    min_completeness: float | None = None  # None: the site's min_completeness
    window: str | None = None  # None: the live windows only (never day, month, year ... rows of the same KPI)

    def watches(self, row: KpiRow) -> bool:
        if row.kpi != self.kpi:
            return False
        return row.window == self.window if self.window is not None else row.window not in PERIOD_WINDOWS


DEFAULT_RULES = (
    Rule("energy_above_level3", "al_liquid_ac", Severity.CRITICAL, Audience.BOTH,
         lambda lim, _row: lim.al_liquid_ac_level(3), 0.99,
         "铝液交流电耗超过 GB 21346-2022 3级限额", "aluminium-liquid AC energy above GB 21346-2022 level 3"),
    Rule("energy_above_benchmark", "al_liquid_ac", Severity.WARNING, Audience.ENGINEERS,
         lambda lim, _row: lim.ndrc("benchmark"), 0.995,
         "铝液交流电耗高于国家发改委能效标杆水平", "aluminium-liquid AC energy above the NDRC benchmark"),
    Rule("so2_above_ultra_low", "so2_corrected", Severity.CRITICAL, Audience.BOTH,
         lambda lim, _row: lim.ultra_low("so2"), 0.9,
         "SO₂ 折算浓度超过超低排放限值（指示性滚动均值，非 HJ 75 有效小时均值）",
         "corrected SO₂ above the ultra-low limit (indicative rolling mean, not the HJ 75 valid hourly mean)"),
    # Early warning while the hour runs: its valid minutes so far average above the limit.
    Rule("so2_hour_heading_over", "so2_hour_partial", Severity.WARNING, Audience.ENGINEERS,
         lambda lim, _row: lim.ultra_low("so2"), 0.95,
         "本小时 SO₂ 有效分钟均值已超过超低排放限值（预警）",
         "this hour's valid SO₂ minutes so far average above the ultra-low limit (early warning)", pending_s=0.0,
         min_completeness=0.0),  # the KPI itself needs 15 valid minutes; calibration minutes must not mute it
    # The regulatory test (HJ 75-2017): one valid hourly mean above the limit is one exceedance hour.
    Rule("so2_hourly_above_ultra_low", "so2_hourly", Severity.CRITICAL, Audience.BOTH,
         lambda lim, _row: lim.ultra_low("so2"), 1.0,
         "SO₂ 有效小时均值超过超低排放限值", "valid hourly mean of SO₂ above the ultra-low limit", pending_s=0.0),
    # Early warnings on the year: the projection to 31 December crosses the seed's target level.
    Rule("energy_year_projected_above_benchmark", "al_liquid_ac_projected", Severity.WARNING, Audience.ENGINEERS,
         lambda lim, _row: lim.ndrc("benchmark"), 0.998,
         "按近24小时水平推算，全年铝液交流电耗将高于能效标杆水平（预警）",
         "at the last 24 hours' rate the year's aluminium-liquid AC energy will end above the NDRC benchmark "
         "(early warning)", window="year", min_completeness=0.5),
    Rule("alumina_year_projected_above_level1", "comprehensive_energy_projected", Severity.WARNING,
         Audience.ENGINEERS,
         lambda lim, row: lim.gb21346_level(f"{dict(row.extra)['process']}.comprehensive_energy", 1, product="alumina"),
         0.998, "按近24小时水平推算，全年氧化铝综合能耗将高于 GB 21346-2022 1级（预警）",
         "at the last 24 hours' rate the year's alumina comprehensive energy will end above GB 21346-2022 level 1 "
         "(early warning)", window="year", min_completeness=0.5),
    # Weighed production against the Faraday estimate over a day: the scale or the DCCT is wrong.
    Rule("production_mismatch", "production_deviation", Severity.WARNING, Audience.ENGINEERS,
         lambda lim, _row: lim.value("energy.production_crosscheck.max_deviation", "energy.production_crosscheck",
                               "weighed vs Faraday", "fraction"), 0.8,
         "称量铝液产量与法拉第估算偏差超限（检查天车秤或直流电流互感器）",
         "weighed aluminium differs from the Faraday estimate beyond the margin (check the crucible scale or the "
         "DCCT)", window="rolling_24h"),
)


@dataclass
class _Episode:
    pending_since: datetime
    incident: str | None = None  # set once firing
    first_value: float = 0.0


class RuleEngine:
    def __init__(self, site_id: str, limits: Limits, pending_s: float, min_completeness: float,
                 rules: tuple[Rule, ...] = DEFAULT_RULES, state: EpisodeFile | None = None):
        self.site_id = site_id
        self.limits = limits
        self.pending_s = pending_s
        self.min_completeness = min_completeness
        self.rules = rules
        self._rules_of_kpi: dict[str, list[Rule]] = {}
        for rule in rules:
            self._rules_of_kpi.setdefault(rule.kpi, []).append(rule)
        self.state = state  # open episodes survive a restart: no second firing for the same incident
        self.episodes: dict[tuple[str, str], _Episode] = {}
        if state is not None:
            self.episodes = {k: _Episode(**v) for k, v in state.load().items()}

    def _save(self) -> None:
        if self.state is not None:
            self.state.save({k: asdict(v) for k, v in self.episodes.items()})

    def evaluate(self, rows: list[KpiRow], historical: bool = False) -> list[Alert]:
        """State changes to firing or resolved caused by these KPI rows."""
        changes: list[Alert] = []
        if historical:
            return changes
        for row in rows:
            if row.value is None:
                continue  # an hour without valid data is never judged
            for rule in self._rules_of_kpi.get(row.kpi, ()):
                required = self.min_completeness if rule.min_completeness is None else rule.min_completeness
                if rule.watches(row) and row.completeness >= required:
                    alert = self._step(rule, row)
                    if alert is not None:
                        changes.append(alert)
        return changes

    def _step(self, rule: Rule, row: KpiRow) -> Alert | None:
        assert row.value is not None
        limit = rule.limit(self.limits, row)
        now = datetime.fromtimestamp(row.t_ms / 1000, UTC)
        key = (rule.name, row.unit_process)
        ep = self.episodes.get(key)
        above = row.value > limit.value
        if ep is None:
            if not above:
                return None
            ep = self.episodes[key] = _Episode(now, first_value=row.value)
            self._save()
        if ep.incident is None:  # pending (a rule with no pending time fires on the row that opened it)
            pending_s = self.pending_s if rule.pending_s is None else rule.pending_s
            if not above:
                del self.episodes[key]
                self._save()
            elif (now - ep.pending_since).total_seconds() >= pending_s:
                ep.incident = f"{self.site_id}-{rule.name}-{row.unit_process}-{ep.pending_since:%Y%m%dT%H%M%SZ}"
                self._save()
                return self._alert(rule, row, limit, ep, AlertState.FIRING, now)
            return None
        if row.value < limit.value * rule.reset_ratio:
            del self.episodes[key]
            self._save()
            return self._alert(rule, row, limit, ep, AlertState.RESOLVED, now)
        return None

    def _alert(self, rule: Rule, row: KpiRow, limit: Limit, ep: _Episode, state: AlertState,
               now: datetime) -> Alert:
        assert ep.incident is not None
        verb = "ended" if state is AlertState.RESOLVED else "since"
        return Alert(
            id=ep.incident, site=self.site_id, rule=rule.name, unit_process=row.unit_process,
            severity=rule.severity, audience=rule.audience, state=state, kpi=row.kpi, value=row.value,
            unit=row.unit, limit=limit.value, limit_name=limit.name, limit_source=limit.source, window=row.window,
            first_seen=ep.pending_since, last_seen=now,
            resolved_at=now if state is AlertState.RESOLVED else None,
            summary=f"{row.unit_process}: {rule.description_en}: {row.value:.1f} {row.unit} vs {limit.name} "
                    f"{limit.value:g} ({verb} {ep.pending_since:%Y-%m-%d %H:%M:%S} UTC)",
        )


def rule_by_name(name: str) -> Rule:
    return next(r for r in DEFAULT_RULES if r.name == name)
