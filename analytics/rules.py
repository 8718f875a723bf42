"""Alert rules as data: the defaults in ``alumon/data/alert_rules.yaml`` merged with the site's
``alerts.rules``, each resolved to a ``Rule`` whose threshold is looked up in the limit tables."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from alumon.alert import Audience, Severity
from alumon.config import AlertRuleSpec, LimitRef
from analytics.kpi_row import KpiRow
from analytics.limits import Limit, Limits
from analytics.periods import PERIOD_WINDOWS


class RuleConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # limit or data_quality
    kpi: str  # a KPI name, or a pattern such as ``*_hourly`` (the ``*`` part is the pollutant)
    window: str | None  # None: the live windows only (never day, month, year ... rows of the same KPI)
    limit_ref: LimitRef
    reset_ratio: float
    severity: Severity
    audience: Audience
    pending_s: float | None  # None: the site's alert_pending_s
    min_firing_s: float
    resolve_after_s: float
    flap_window_s: float
    flap_max_changes: int
    min_completeness: float | None  # None: the site's min_completeness
    description_zh: str
    description_en: str
    inhibits: bool = True

    @property
    def is_pattern(self) -> bool:
        return "*" in self.kpi

    def matches(self, kpi: str) -> bool:
        return fnmatch.fnmatchcase(kpi, self.kpi) if self.is_pattern else kpi == self.kpi

    def watches(self, row: KpiRow) -> bool:
        return row.window == self.window if self.window is not None else row.window not in PERIOD_WINDOWS

    def pollutant(self, kpi: str) -> str:
        """What the ``*`` of a pattern stands for in this KPI name (``so2`` of ``so2_hourly``)."""
        if not self.is_pattern:
            return ""
        head, _, tail = self.kpi.partition("*")
        return kpi[len(head):len(kpi) - len(tail)].strip("_")

    def limit(self, limits: Limits, row: KpiRow) -> Limit:
        ref = self.limit_ref
        if ref.kind == "gb21346":
            assert ref.indicator is not None and ref.level is not None
            indicator = ref.indicator.format(**{k: v for k, v in row.extra if isinstance(v, str)})
            return limits.gb21346_level(indicator, ref.level, product=ref.product)
        if ref.kind == "ndrc":
            assert ref.which is not None
            return limits.ndrc(ref.which)
        if ref.kind == "ultra_low":
            return limits.ultra_low(ref.pollutant or self.pollutant(row.kpi))
        if ref.kind == "table":
            assert ref.key and ref.table and ref.name and ref.unit
            return limits.value(ref.key, ref.table, ref.name, ref.unit)
        assert ref.value is not None and ref.name and ref.unit and ref.source
        return Limit(ref.name, ref.value, ref.unit, ref.source)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    version: int  # of the default rules file; the audit log records it
    pollutant_names: dict[str, dict[str, str]]

    def describe(self, rule: Rule, kpi: str, lang: str) -> str:
        pollutant = rule.pollutant(kpi)
        name = self.pollutant_names.get(pollutant, {}).get(lang, pollutant)
        text = rule.description_zh if lang == "zh" else rule.description_en
        return text.replace("{pollutant}", name)


def _defaults() -> dict[str, Any]:
    text = resources.files("alumon").joinpath("data/alert_rules.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _rule(spec: AlertRuleSpec) -> Rule:
    missing = [k for k in ("kpi", "limit", "severity", "audience", "description_zh", "description_en")
               if getattr(spec, k) is None]
    if missing:
        raise RuleConfigError(f"alert rule {spec.name!r} is not a default rule, so it needs {', '.join(missing)}")
    assert spec.kpi and spec.limit and spec.severity and spec.audience
    assert spec.description_zh is not None and spec.description_en is not None
    return Rule(spec.name, spec.kind, spec.kpi, spec.window, spec.limit, spec.reset_ratio, Severity(spec.severity),
                Audience(spec.audience), spec.pending_s, spec.min_firing_s, spec.resolve_after_s, spec.flap_window_s,
                spec.flap_max_changes, spec.min_completeness, spec.description_zh, spec.description_en,
                spec.inhibits)


def load_rules(overrides: Sequence[AlertRuleSpec] = ()) -> RuleSet:
    """The default rules with the site's changes (``alerts.rules``): an entry overrides only the fields it
    sets; an entry with a new name is a new rule."""
    data = _defaults()
    specs: dict[str, dict[str, Any]] = {}
    for raw in data["rules"]:
        spec = AlertRuleSpec.model_validate(raw)
        specs[spec.name] = spec.model_dump(exclude_unset=True)
    for override in overrides:
        specs[override.name] = {**specs.get(override.name, {}), **override.model_dump(exclude_unset=True)}
    rules = []
    for name, fields in specs.items():
        try:
            spec = AlertRuleSpec.model_validate(fields)
        except ValidationError as exc:
            raise RuleConfigError(f"alert rule {name!r}: {exc.errors()[0]['msg']}") from None
        if spec.enabled:
            rules.append(_rule(spec))
    return RuleSet(tuple(rules), int(data["version"]), data.get("pollutants", {}))
