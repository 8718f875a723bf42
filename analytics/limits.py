"""Limit tables as data: ``alumon/data/limits.yaml`` (figures with their source) plus the site's overrides.

Every lookup returns a ``Limit`` carrying a readable source (standard, clause, edition, status), which goes
into every KPI row and alert. Nothing numeric about the regulation is written in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from alumon.config import LimitOverride, SiteConfig


@dataclass(frozen=True)
class Limit:
    name: str  # e.g. "GB 21346-2022 level 3"
    value: float
    unit: str
    source: str  # e.g. "GB 21346-2022 ..., §4.1 Table 1 (2022 ...), to_verify"


class LimitError(KeyError):
    pass


def load_limits_data() -> dict[str, Any]:
    text = resources.files("alumon").joinpath("data/limits.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)["limits"]
    return data


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise LimitError(f"no limit {dotted!r} in limits.yaml (stopped at {part!r})")
        node = node[part]
    return node


def _source_text(block: dict[str, Any], status: str | None) -> str:
    src = block.get("source", {})
    parts = [src.get("standard", "unknown source"), src.get("clause", ""), f"({src.get('edition', '')})"]
    text = " ".join(p for p in parts if p and p != "()")
    return f"{text}, {status}" if status else text


class Limits:
    def __init__(self, overrides: list[LimitOverride] | tuple[LimitOverride, ...] = ()):
        self.data = load_limits_data()
        self.overrides = {o.key: o for o in overrides}
        # The tables do not change while the process runs; analytics asks the same questions every tick.
        self._looked_up: dict[tuple[str, ...], Limit | str] = {}  # a limit, or why there is none
        self._levels: dict[tuple[str, ...], Limit] = {}

    @classmethod
    def for_site(cls, config: SiteConfig) -> Limits:
        return cls(config.limits_overrides)

    def value(self, key: str, table: str, name: str, unit: str, status: str | None = None) -> Limit:
        """Look up ``key`` (dotted, under ``limits:``); ``table`` is the dotted block whose ``source`` applies."""
        question = (key, table, name, unit, status or "")
        if question not in self._looked_up:
            try:
                self._looked_up[question] = self._value(key, table, name, unit, status)
            except LimitError as exc:
                self._looked_up[question] = str(exc)
        answer = self._looked_up[question]
        if isinstance(answer, str):
            raise LimitError(answer)  # a fresh one: re-raising a kept exception would chain every traceback
        return answer

    def _value(self, key: str, table: str, name: str, unit: str, status: str | None) -> Limit:
        if key in self.overrides:
            o = self.overrides[key]
            return Limit(name, o.value, unit, f"{o.source} (site override of {key}), {o.status}")
        raw = _get(self.data, key)
        value = raw["value"] if isinstance(raw, dict) else raw
        if value is None:
            raise LimitError(f"limit {key!r} has no value in limits.yaml (unknown); set a site override")
        block = _get(self.data, table)
        return Limit(name, float(value), unit, _source_text(block, status or block.get("status")))

    def entry(self, key: str) -> dict[str, Any]:
        """The raw table entry of ``key`` (comparison, deadline, note ...)."""
        raw = _get(self.data, key)
        return raw if isinstance(raw, dict) else {"value": raw}

    # -- the lookups analytics uses ---------------------------------------------------------------------------

    def gb21346_level(self, indicator: str, level: int, product: str = "electrolytic_aluminium") -> Limit:
        """GB 21346-2022 level 1/2/3 of an indicator, e.g. ``al_liquid_ac`` or ``bayer.comprehensive_energy``
        with product ``alumina``."""
        question = (indicator, str(level), product)
        if question not in self._levels:
            self._levels[question] = self._gb21346_level(indicator, level, product)
        return self._levels[question]

    def _gb21346_level(self, indicator: str, level: int, product: str) -> Limit:
        entry = _get(self.data, f"energy.gb21346_2022.{product}.{indicator}")
        key = f"energy.gb21346_2022.{product}.{indicator}.level{level}"
        return self.value(key, "energy.gb21346_2022", f"GB 21346-2022 level {level}", str(entry.get("unit", "")),
                          entry.get("status"))

    def al_liquid_ac_level(self, level: int) -> Limit:
        return self.gb21346_level("al_liquid_ac", level)

    def ndrc(self, which: str) -> Limit:
        """``benchmark`` (标杆, 13 000) or ``baseline`` (基准, 13 350) for 铝液交流电耗."""
        key = f"energy.ndrc_benchmark.electrolytic_aluminium_al_liquid_ac.{which}"
        label = {"benchmark": "NDRC benchmark 标杆", "baseline": "NDRC baseline 基准"}[which]
        return self.value(key, "energy.ndrc_benchmark", label, "kWh/t")

    def ultra_low(self, pollutant: str) -> Limit:
        key = f"emissions.ultra_low_defaults.{pollutant}"
        return self.value(key, "emissions.ultra_low_defaults", f"ultra-low {pollutant}", "mg/m3")

    def applicable(self, source_type: str, pollutant: str) -> dict[str, Limit]:
        """Every limit a stack's pollutant is judged against, by kind: ``ultra_low`` (the seed law's 2025
        target), ``special`` (GB 25465-2010 special emission limits) and ``normal`` (GB 25465-2010 Table 5)."""
        out: dict[str, Limit] = {}
        candidates: dict[str, Callable[[], Limit]] = {
            "ultra_low": lambda: self.ultra_low(pollutant),
            "special": lambda: self._special(source_type, pollutant),
            "normal": lambda: self.value(f"emissions.gb25465_2010.new_source.{source_type}.{pollutant}",
                                         "emissions.gb25465_2010", "GB 25465-2010 Table 5", "mg/m3"),
        }
        for kind, lookup in candidates.items():
            try:
                out[kind] = lookup()
            except LimitError:
                continue
        return out

    def _special(self, source_type: str, pollutant: str) -> Limit:
        if pollutant == "pm":
            key = "emissions.gb25465_2010.special_limits.all_sources_pm"
        elif pollutant == "so2" and source_type in {"potroom_gas_treatment", "alumina_calciner",
                                                    "alumina_clinker_kiln", "anode_baking"}:
            key = "emissions.gb25465_2010.special_limits.kilns_calciners_cells_anode_so2"
        else:
            raise LimitError(f"no special limit for {pollutant} from {source_type}")
        return self.value(key, "emissions.gb25465_2010.special_limits", "GB 25465-2010 special limit", "mg/m3")

    def faraday_kg_per_kah(self) -> float:
        return float(_get(self.data, "energy.faraday.al_kg_per_kAh"))
