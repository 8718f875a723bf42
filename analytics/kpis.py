"""Evaluate every KPI of a site for one window ending at ``end_ms``; pure given the series store, so live
evaluation and a later replay share this code path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alumon import schema
from alumon.config import AluminaRefinery, CemsStack, O2Correction, Potline, Site
from analytics.emissions import CorrectionError, o2_correct, to_dry
from analytics.enpi import CounterDelta, best_level, classify_al_liquid_ac, counter_delta, ratio
from analytics.limits import LimitError, Limits
from analytics.series import SeriesStore

GAP_POLLS = 3  # a hole longer than this many poll intervals is a gap (no energy, no coverage)
UNIT_FACTORS = {("t", "kg"): 1000.0, ("kg", "kg"): 1.0, ("MWh", "kWh"): 1000.0, ("kWh", "kWh"): 1.0,
                ("Nm3", "Nm3"): 1.0, ("m3", "Nm3"): 1.0, ("MJ", "MJ"): 1.0, ("GJ", "MJ"): 1000.0}


@dataclass(frozen=True)
class KpiRow:
    t_ms: int
    unit_process: str
    kpi: str
    window: str
    value: float
    unit: str
    completeness: float
    level: str
    limit_source: str
    benchmark_met: bool | None = None
    estimated: bool = False

    def to_line(self, site: str) -> str:
        return schema.line(
            schema.KPI,
            {"site": site, "unit_process": self.unit_process, "kpi": self.kpi, "window": self.window},
            {"value": self.value, "unit": self.unit, "completeness": round(self.completeness, 4),
             "level": self.level, "benchmark_met": self.benchmark_met, "estimated": self.estimated,
             "limit_source": self.limit_source},
            self.t_ms,
        )


class KpiEngine:
    def __init__(self, site: Site, limits: Limits):
        self.site = site
        self.limits = limits
        self.window_ms = int(site.config.analytics.kpi_window_s * 1000)
        self.window_name = f"rolling_{site.config.analytics.kpi_window_s:g}s"

    def needed_readings(self) -> set[str]:
        paths: set[str] = set()
        for unit in self.site.config.process_units:
            if isinstance(unit, Potline):
                paths |= {unit.ac_energy, unit.metal_tapped, *unit.auxiliary_energy}
            elif isinstance(unit, AluminaRefinery):
                paths |= {unit.alumina_output, *(c.reading for c in unit.carriers)}
            else:
                paths |= set(unit.pollutants.values())
                paths |= {p for p in (unit.o2, unit.moisture) if p is not None}
        return paths

    def _gap_ms(self, path: str) -> int:
        return int(self.site.config.device(path.split(".", 1)[0]).poll_interval_s * 1000 * GAP_POLLS)

    def _wrap_span(self, path: str) -> float:
        device, quantity = path.split(".", 1)
        f = self.site.profile_of(device).field(quantity)
        return float(f.rollover or (1 << (16 * f.count))) * f.scale

    def _delta(self, store: SeriesStore, path: str, end_ms: int) -> CounterDelta:
        t, v, steps = store.series[path].counter_window(end_ms - self.window_ms, end_ms)
        return counter_delta(t, v, self._gap_ms(path), steps, self._wrap_span(path))

    def evaluate(self, store: SeriesStore, end_ms: int) -> list[KpiRow]:
        rows: list[KpiRow] = []
        with store.lock:
            for unit in self.site.config.process_units:
                if isinstance(unit, Potline):
                    rows += self._potline(store, unit, end_ms)
                elif isinstance(unit, AluminaRefinery):
                    rows += self._refinery(store, unit, end_ms)
                else:
                    rows += self._stack(store, unit, end_ms)
        return rows

    def _potline(self, store: SeriesStore, unit: Potline, end_ms: int) -> list[KpiRow]:
        energy = self._delta(store, unit.ac_energy, end_ms)
        metal = self._delta(store, unit.metal_tapped, end_ms)
        energy_kwh = CounterDelta(energy.delta * self._factor(unit.ac_energy, "kWh"), energy.covered_ms)
        r = ratio(energy_kwh, metal, self.window_ms)
        if r.value is None:
            return []
        rows = [self._energy_row(unit.id, "al_liquid_ac", r.value, r.completeness, end_ms)]
        if unit.auxiliary_energy:
            aux = [self._delta(store, p, end_ms) for p in unit.auxiliary_energy]
            total = CounterDelta(energy_kwh.delta + sum(a.delta * self._factor(p, "kWh")
                                                        for a, p in zip(aux, unit.auxiliary_energy, strict=True)),
                                 min([energy.covered_ms, *(a.covered_ms for a in aux)]))
            rc = ratio(total, metal, self.window_ms)
            if rc.value is not None:
                levels = [self.limits.gb21346_level("al_liquid_comprehensive_ac", n) for n in (1, 2, 3)]
                rows.append(KpiRow(end_ms, unit.id, "al_liquid_comprehensive_ac", self.window_name, rc.value,
                                   "kWh/t", rc.completeness, best_level(rc.value, levels), levels[0].source))
        return rows

    def _energy_row(self, unit_id: str, kpi: str, value: float, completeness: float, end_ms: int) -> KpiRow:
        c = classify_al_liquid_ac(value, self.limits)
        return KpiRow(end_ms, unit_id, kpi, self.window_name, value, "kWh/t", completeness, c.level,
                      c.limit_source, c.benchmark_met)

    def _factor(self, path: str, target: str) -> float:
        device, quantity = path.split(".", 1)
        unit = self.site.profile_of(device).field(quantity).unit
        return UNIT_FACTORS.get((unit, target), 1.0)

    def _refinery(self, store: SeriesStore, unit: AluminaRefinery, end_ms: int) -> list[KpiRow]:
        alumina = self._delta(store, unit.alumina_output, end_ms)
        coefficients = self.limits.data["energy"]["coefficients_kgce"]
        kgce = 0.0
        covered = alumina.covered_ms
        for carrier in unit.carriers:
            entry = coefficients.get(carrier.coefficient)
            if entry is None or entry.get("value") is None:
                continue
            per_unit = str(entry["unit"]).split("/")[1]  # kgce/kWh -> kWh
            d = self._delta(store, carrier.reading, end_ms)
            amount = d.delta * self._factor(carrier.reading, per_unit)
            kgce += (-1.0 if carrier.exported else 1.0) * amount * float(entry["value"])
            covered = min(covered, d.covered_ms)
        r = ratio(CounterDelta(kgce, covered), alumina, self.window_ms)
        if r.value is None:
            return []
        levels = [self.limits.gb21346_level(f"{unit.process}.comprehensive_energy", n, product="alumina")
                  for n in (1, 2, 3)]
        return [KpiRow(end_ms, unit.id, "comprehensive_energy", self.window_name, r.value, "kgce/t",
                       r.completeness, best_level(r.value, levels), levels[0].source)]

    def _stack(self, store: SeriesStore, unit: CemsStack, end_ms: int) -> list[KpiRow]:
        start = end_ms - self.window_ms
        aux = {}
        for name, path in (("o2", unit.o2), ("moisture", unit.moisture)):
            if path is not None:
                t, v = store.series[path].window(start, end_ms)
                aux[name] = dict(zip(t.tolist(), v.tolist(), strict=True))
        interval_ms = self._gap_ms(next(iter(unit.pollutants.values()))) / GAP_POLLS
        rows = []
        for pollutant, path in unit.pollutants.items():
            t, v = store.series[path].window(start, end_ms)
            corrected = []
            for ts, c in zip(t.tolist(), v.tolist(), strict=True):
                try:
                    if unit.basis == "wet":
                        c = to_dry(c, aux["moisture"][ts])
                    if isinstance(unit.correction, O2Correction):
                        c = o2_correct(c, aux["o2"][ts], unit.correction.o2_ref_pct)
                except (KeyError, CorrectionError):
                    continue  # a sample without its moisture/O2, or an impossible O2, is not a valid sample
                corrected.append(c)
            if not corrected:
                continue
            try:
                limit = self.limits.ultra_low(pollutant)
                level = "ultra_low_met" if float(np.mean(corrected)) <= limit.value else "above_ultra_low"
                source = limit.source
            except LimitError:
                level, source = "", ""
            completeness = min(1.0, len(corrected) * interval_ms / self.window_ms)
            rows.append(KpiRow(end_ms, unit.id, f"{pollutant}_corrected", self.window_name,
                               float(np.mean(corrected)), "mg/m3", completeness, level, source))
        return rows
