"""The alert state machine: pending -> firing -> resolved, one incident id per episode.

A rule goes pending when its KPI rises above the limit and fires once it stayed above for ``pending_s``. It
resolves only when the KPI stayed below ``limit × reset_ratio`` (hysteresis) for ``resolve_after_s``, the
incident is at least ``min_firing_s`` old and it is not flapping (``flap_max_changes`` crossings of the limit
within ``flap_window_s``): a signal wandering around a threshold is one incident, not a storm. A long incident
sends a reminder every ``repeat_s``.

Data-quality rules are evaluated first: while one fires on a process unit (a stale meter, a faulty analyser)
the unit's limit rules are held (pending ones dropped, firing ones neither resolved nor reminded), since
their numbers are computed from the faulty source. KPIs below the required completeness are not judged,
and data replayed from an edge spool (historical) never fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from alumon.alert import Alert, AlertState
from alumon.config import SiteConfig
from analytics.kpi_row import KpiRow
from analytics.limits import Limit, LimitError, Limits
from analytics.rules import Rule, RuleSet, load_rules
from analytics.state import EpisodeFile

DATA_QUALITY = "data_quality"
EpisodeKey = tuple[str, str, str]  # rule, process unit, KPI


@dataclass
class Episode:
    pending_since_ms: int
    incident: str | None = None  # set once firing
    fired_ms: int = 0
    clear_since_ms: int | None = None  # the reset condition has held since
    above: bool = True  # last side of the limit (for flap detection)
    crossings: list[int] = field(default_factory=list)  # times the KPI crossed the limit, within the flap window
    last_notice_ms: int = 0
    reminders: int = 0


def _utc(t_ms: int) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, UTC)


class RuleEngine:
    def __init__(self, site_id: str, limits: Limits, pending_s: float, min_completeness: float,
                 rules: RuleSet | None = None, state: EpisodeFile | None = None, repeat_s: float = 0.0):
        self.site_id = site_id
        self.limits = limits
        self.pending_s = pending_s
        self.min_completeness = min_completeness
        self.ruleset = rules or load_rules()
        self._by_name = {r.name: r for r in self.ruleset.rules}
        self.repeat_ms = int(repeat_s * 1000)
        self._rules_of_kpi: dict[str, list[Rule]] = {}
        self.state = state  # open episodes survive a restart: no second firing for the same incident
        self.autocommit = True
        self._dirty = False
        self.episodes: dict[EpisodeKey, Episode] = {}
        if state is not None:
            self.episodes = {k: Episode(**v) for k, v in state.load().items()}
        self._unit_rules: dict[tuple[str, str], set[str]] = {}  # limit rules seen per unit and pollutant
        self.unjudged: dict[tuple[str, str], str] = {}  # (rule, KPI) without a limit, and why (logged once)

    @classmethod
    def for_site(cls, config: SiteConfig, limits: Limits, state: EpisodeFile | None = None,
                 reminders: bool = True) -> RuleEngine:
        a = config.analytics
        return cls(config.site.id, limits, a.alert_pending_s, a.min_completeness, load_rules(config.alerts.rules),
                   state, config.alerts.repeat_interval_s if reminders else 0.0)

    def _save(self) -> None:
        self._dirty = True
        if self.autocommit:
            self.commit()

    def commit(self) -> None:
        """Write the episodes. With ``autocommit`` off (the live service) this comes after the changes were
        handed to the notifier, whose queue is durable: a crash in between re-derives the same changes (same
        incident ids) on restart, and the notifier's keys make the second hand-over a no-op. Saving first
        would let a crash lose a firing or resolution notice for good."""
        if self._dirty and self.state is not None:
            self.state.save({k: vars(v) for k, v in self.episodes.items()})
        self._dirty = False

    def rules_for(self, kpi: str) -> list[Rule]:
        if kpi not in self._rules_of_kpi:
            self._rules_of_kpi[kpi] = [r for r in self.ruleset.rules if r.matches(kpi)]
        return self._rules_of_kpi[kpi]

    def held_scopes(self) -> set[tuple[str, str]]:
        """(unit, pollutant) pairs whose limit alerts a firing data-quality alert holds; pollutant "" is the
        whole unit."""
        by_name = self._by_name
        return {(unit, by_name[name].pollutant(kpi)) for (name, unit, kpi), ep in self.episodes.items()
                if ep.incident is not None and name in by_name and by_name[name].kind == DATA_QUALITY
                and by_name[name].inhibits}

    def evaluate(self, rows: list[KpiRow], historical: bool = False) -> list[Alert]:
        """State changes (firing, resolved, reminders) caused by these KPI rows."""
        changes: list[Alert] = []
        if historical:
            return changes
        judged = [(rule, row) for row in rows if row.value is not None  # an hour without valid data: not judged
                  for rule in self.rules_for(row.kpi) if rule.watches(row) and row.completeness >= (
                      self.min_completeness if rule.min_completeness is None else rule.min_completeness)]
        for rule, row in judged:
            if rule.kind == DATA_QUALITY:
                changes += self._step(rule, row)
        held = self.held_scopes()
        for rule, row in judged:
            if rule.kind == DATA_QUALITY:
                continue
            pollutant = rule.pollutant(row.kpi)
            self._unit_rules.setdefault((row.unit_process, pollutant), set()).add(rule.name)
            if (row.unit_process, "") in held or (row.unit_process, pollutant) in held:
                self._hold(rule, row)
            else:
                changes += self._step(rule, row)
        return changes

    def _hold(self, rule: Rule, row: KpiRow) -> None:
        key = (rule.name, row.unit_process, row.kpi)
        ep = self.episodes.get(key)
        if ep is not None and ep.incident is None:  # pending on suspect data: forget it
            del self.episodes[key]
            self._save()

    def _limit(self, rule: Rule, row: KpiRow) -> Limit | None:
        try:
            return rule.limit(self.limits, row)
        except LimitError as exc:  # e.g. no ultra-low figure for this pollutant: nothing to judge against
            self.unjudged.setdefault((rule.name, row.kpi), str(exc))
            return None

    def _step(self, rule: Rule, row: KpiRow) -> list[Alert]:
        assert row.value is not None
        limit = self._limit(rule, row)
        if limit is None:
            return []
        now = row.t_ms
        key = (rule.name, row.unit_process, row.kpi)
        ep = self.episodes.get(key)
        above = row.value > limit.value
        if ep is None:
            if not above:
                return []
            ep = self.episodes[key] = Episode(now)
            self._save()
        if ep.incident is None:  # pending (a rule with no pending time fires on the row that opened it)
            pending_s = self.pending_s if rule.pending_s is None else rule.pending_s
            if not above:
                del self.episodes[key]
                self._save()
            elif now - ep.pending_since_ms >= pending_s * 1000:
                unit = row.unit_process if not rule.is_pattern else f"{row.unit_process}-{rule.pollutant(row.kpi)}"
                ep.incident = f"{self.site_id}-{rule.name}-{unit}-{_utc(ep.pending_since_ms):%Y%m%dT%H%M%SZ}"
                ep.fired_ms = ep.last_notice_ms = now
                self._save()
                return [self._alert(rule, row, limit, ep, AlertState.FIRING, now)]
            return []
        return self._step_firing(rule, row, limit, ep, key, above)

    def _step_firing(self, rule: Rule, row: KpiRow, limit: Limit, ep: Episode, key: EpisodeKey,
                     above: bool) -> list[Alert]:
        assert row.value is not None
        now = row.t_ms
        before = (ep.clear_since_ms, ep.above, len(ep.crossings))
        if above != ep.above:
            ep.crossings.append(now)
            ep.above = above
        ep.crossings = [t for t in ep.crossings if now - t < rule.flap_window_s * 1000]
        clear = row.value < limit.value * rule.reset_ratio
        if not clear:
            ep.clear_since_ms = None
        elif ep.clear_since_ms is None:
            ep.clear_since_ms = now
        flapping = rule.flap_window_s > 0 and len(ep.crossings) >= rule.flap_max_changes
        if (ep.clear_since_ms is not None and now - ep.clear_since_ms >= rule.resolve_after_s * 1000
                and now - ep.fired_ms >= rule.min_firing_s * 1000 and not flapping):
            del self.episodes[key]
            self._save()
            return [self._alert(rule, row, limit, ep, AlertState.RESOLVED, now)]
        if self.repeat_ms and now - ep.last_notice_ms >= self.repeat_ms:
            ep.last_notice_ms = now
            ep.reminders += 1
            self._save()
            return [self._alert(rule, row, limit, ep, AlertState.FIRING, now)]
        if before != (ep.clear_since_ms, ep.above, len(ep.crossings)):
            self._save()
        return []

    def _alert(self, rule: Rule, row: KpiRow, limit: Limit, ep: Episode, state: AlertState, now: int) -> Alert:
        assert ep.incident is not None and row.value is not None
        suppresses: tuple[str, ...] = ()
        if rule.kind == DATA_QUALITY and rule.inhibits and state is AlertState.FIRING:
            pollutant = rule.pollutant(row.kpi)
            suppresses = tuple(sorted({name for (unit, p), names in self._unit_rules.items()
                                       if unit == row.unit_process and (not pollutant or p == pollutant)
                                       for name in names}))
        verb = "ended" if state is AlertState.RESOLVED else "since"
        description_en = self.ruleset.describe(rule, row.kpi, "en")
        held = f"; holds {', '.join(suppresses)}" if suppresses else ""
        return Alert(
            id=ep.incident, site=self.site_id, rule=rule.name, unit_process=row.unit_process,
            severity=rule.severity, audience=rule.audience, state=state, kpi=row.kpi, value=row.value,
            unit=row.unit, limit=limit.value, limit_name=limit.name, limit_source=limit.source, window=row.window,
            first_seen=_utc(ep.pending_since_ms), last_seen=_utc(now),
            resolved_at=_utc(now) if state is AlertState.RESOLVED else None,
            summary=f"{row.unit_process}: {description_en}: {row.value:.1f} {row.unit} vs {limit.name} "
                    f"{limit.value:g} ({verb} {_utc(ep.pending_since_ms):%Y-%m-%d %H:%M:%S} UTC){held}",
            kind=rule.kind, description_zh=self.ruleset.describe(rule, row.kpi, "zh"),
            description_en=description_en, reminder=ep.reminders if state is AlertState.FIRING else 0,
            suppresses=suppresses, completeness=round(row.completeness, 4),
        )
