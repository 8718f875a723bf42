"""Indicators over long windows (rolling 24 h, shift, day, month-to-date, year-to-date), their projection to
the period's end, the Faraday cross-check of weighed production and the seed scorecard.

Everything here is computed from counter ledgers (``analytics.ledger``), updated each tick from the same
series store as the live rolling window, so live analytics and replay share this path too.

Faraday (limits.yaml ``energy.faraday``): aluminium produced = ∫I dt [kA·h] × 0.33557 kg/(kA·h) × cells × CE.
Between two tappings the crucible scale says nothing, the line current always does: the estimate gives a
live 铝液交流电耗 (labelled *estimated*), and a weighed total that strays from it by more than
``energy.production_crosscheck.max_deviation`` points at the scale or the DCCT.

Projection: the period-to-date totals plus the last 24 h's rates for the rest of the period.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alumon.config import AluminaRefinery, EnergyCarrier, Potline, Site
from alumon.schema import FieldValue
from analytics.enpi import CounterDelta, best_level, classify_al_liquid_ac, ratio
from analytics.kpi_row import KpiRow
from analytics.ledger import MINUTE_MS, CounterLedger
from analytics.limits import Limits
from analytics.periods import Period, current_periods
from analytics.readings import ReadingInfo
from analytics.series import SeriesStore
from analytics.state import atomic_write

PROJECTED = ("month", "year")
MS_PER_H = 3_600_000.0


def _kah_key(unit: Potline) -> str:
    return f"{unit.id}:kah"  # ∫ line current dt, kA·h


def _dc_key(unit: Potline) -> str:
    return f"{unit.id}:dc_kwh"  # ∫ U·I dt, kWh DC


class PeriodKpis:
    def __init__(self, site: Site, limits: Limits, info: ReadingInfo, recompute_ms: int):
        self.site = site
        self.limits = limits
        self.info = info
        self.recompute_ms = recompute_ms  # how far back each tick rebuilds minutes (late data lands there)
        cfg = site.config
        self.tz = ZoneInfo(cfg.site.timezone)
        self.shifts = [clock.fromisoformat(s) for s in cfg.analytics.shifts]
        self.windows = tuple(cfg.analytics.period_windows)
        keep = max(26 * 3_600_000, recompute_ms + 3_600_000)
        self.counters: set[str] = set()
        self.integrals: dict[str, tuple[str, str | None]] = {}  # key -> (current path, voltage path or None)
        for unit in cfg.process_units:
            if isinstance(unit, Potline):
                self.counters |= {unit.ac_energy, unit.metal_tapped, *unit.auxiliary_energy}
                if unit.line_current is not None:
                    self.integrals[_kah_key(unit)] = (unit.line_current, None)
                    if unit.line_voltage is not None:
                        self.integrals[_dc_key(unit)] = (unit.line_current, unit.line_voltage)
            elif isinstance(unit, AluminaRefinery):
                self.counters |= {unit.alumina_output, *(c.reading for c in unit.carriers)}
        sc = cfg.scorecard
        self.counters |= {*sc.electricity_total, *sc.electricity_non_fossil}
        self.counters |= {p for p in (sc.red_mud_produced, sc.red_mud_utilised) if p is not None}
        self._totals: dict[tuple[str, int, int], CounterDelta] = {}
        self.ledgers = {k: CounterLedger(keep) for k in sorted(self.counters | set(self.integrals))}

    def save(self, path: Path) -> None:
        """The ledgers survive a restart: month and year to date are not lost with the process."""
        body = {key: ledger.to_json() for key, ledger in self.ledgers.items()}
        atomic_write(path, json.dumps(body, separators=(",", ":")).encode())

    def load(self, path: Path) -> int:
        """Restore saved ledgers (those of readings still configured); the number restored."""
        if not path.exists():
            return 0
        saved = json.loads(path.read_text())
        for key, data in saved.items():
            if key in self.ledgers:
                self.ledgers[key] = CounterLedger.from_json(data, self.ledgers[key].keep_minutes_ms)
        return sum(1 for k in saved if k in self.ledgers)

    def needed_readings(self) -> set[str]:
        paths = set(self.counters)
        for current, voltage in self.integrals.values():
            paths |= {current} | ({voltage} if voltage else set())
        return paths

    # -- ledgers ---------------------------------------------------------------------------------------------

    def update(self, store: SeriesStore, end_ms: int) -> None:
        """Rebuild the recent minutes of every ledger from the raw samples (caller holds the store lock)."""
        start = (end_ms - self.recompute_ms) // MINUTE_MS * MINUTE_MS
        for path in self.counters:
            gap = self.info.gap_ms(path)
            t, v, s = store.series[path].counter_window(start - gap, end_ms)
            self._recompute(path, t, v, s, start, end_ms, gap, self.info.wrap_span(path))
        for key, (current, voltage) in self.integrals.items():
            gap = self.info.gap_ms(current)
            t, i_ka = store.series[current].window(start - gap, end_ms)
            if voltage is not None:
                tv, u = store.series[voltage].window(start - gap, end_ms)
                t, ii, iv = np.intersect1d(t, tv, assume_unique=True, return_indices=True)
                power = i_ka[ii] * u[iv]  # kA × V = kW
            else:
                power = i_ka  # kA
            steps = np.diff(t) / MS_PER_H
            area: npt.NDArray[np.float64] = np.zeros(len(t))
            area[1:] = np.cumsum((power[1:] + power[:-1]) / 2 * steps)
            self._recompute(key, t, area, np.zeros(len(t), dtype=np.int8), start, end_ms, gap, 0.0)
        for ledger in self.ledgers.values():
            ledger.prune(end_ms)

    def _recompute(self, key: str, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64], s: npt.NDArray[np.int8],
                   start: int, end_ms: int, gap: int, wrap: float) -> None:
        """Only minutes the store can fully account for are rebuilt: after a restart the store starts empty, and
        the minutes restored from disk must not be overwritten with nothing."""
        if len(t) == 0:
            return
        if t[0] >= start:  # no sample before the range: the first sample's own increment is unknown
            start = (int(t[0]) // MINUTE_MS + 1) * MINUTE_MS
            if start >= end_ms:
                return
        self.ledgers[key].recompute(t, v, s, start, end_ms, gap, wrap)

    def _total(self, path: str, p: Period, end_ms: int, target_unit: str | None = None) -> CounterDelta:
        key = (path, p.start_ms, end_ms)
        if key not in self._totals:  # the same period total feeds several rows of a tick
            self._totals[key] = self.ledgers[path].total(p.start_ms, end_ms)
        d = self._totals[key]
        factor = self.info.factor(path, target_unit) if target_unit else 1.0
        return CounterDelta(d.delta * factor, d.covered_ms)

    # -- rows ------------------------------------------------------------------------------------------------

    def rows(self, end_ms: int) -> list[KpiRow]:
        self._totals.clear()
        periods = current_periods(end_ms, self.tz, self.shifts, self.windows)
        rolling_24h = current_periods(end_ms, self.tz, self.shifts, ("rolling_24h",))[0]
        out: list[KpiRow] = []
        for unit in self.site.config.process_units:
            for p in periods:
                if isinstance(unit, Potline):
                    out += self._potline(unit, p, rolling_24h, end_ms)
                elif isinstance(unit, AluminaRefinery):
                    out += self._refinery(unit, p, rolling_24h, end_ms)
        if "year" in self.windows:
            year = next(p for p in periods if p.window == "year")
            out += self._scorecard(year, out, end_ms)
        return out

    def _row(self, unit_id: str, kpi: str, p: Period, end_ms: int, value: float | None, unit: str,
             completeness: float, level: str = "", source: str = "", benchmark_met: bool | None = None,
             estimated: bool = False, extra: tuple[tuple[str, FieldValue], ...] = ()) -> KpiRow:
        return KpiRow(end_ms, unit_id, kpi, p.window, value, unit, completeness, level, source, benchmark_met,
                      estimated, extra=(("indicative", p.indicative), ("period_start_ms", p.start_ms), *extra))

    def _potline(self, unit: Potline, p: Period, rolling: Period, end_ms: int) -> list[KpiRow]:
        elapsed = end_ms - p.start_ms
        energy = self._total(unit.ac_energy, p, end_ms, "kWh")
        metal = self._total(unit.metal_tapped, p, end_ms, "t")
        rows: list[KpiRow] = []
        r = ratio(energy, metal, elapsed)
        if r.value is not None:
            c = classify_al_liquid_ac(r.value, self.limits)
            rows.append(self._row(unit.id, "al_liquid_ac", p, end_ms, r.value, "kWh/t", r.completeness, c.level,
                                  c.limit_source, c.benchmark_met))
            if p.window in PROJECTED and p.end_ms is not None:
                rows += self._projection(unit.id, "al_liquid_ac", p, end_ms, energy, metal,
                                         self._total(unit.ac_energy, rolling, end_ms, "kWh"),
                                         self._total(unit.metal_tapped, rolling, end_ms, "t"), "kWh/t",
                                         lambda v: classify_al_liquid_ac(v, self.limits).level)
        if unit.auxiliary_energy:
            aux = [self._total(a, p, end_ms, "kWh") for a in unit.auxiliary_energy]
            total = CounterDelta(energy.delta + sum(a.delta for a in aux),
                                 min([energy.covered_ms, *(a.covered_ms for a in aux)]))
            rc = ratio(total, metal, elapsed)
            if rc.value is not None:
                levels = [self.limits.gb21346_level("al_liquid_comprehensive_ac", n) for n in (1, 2, 3)]
                rows.append(self._row(unit.id, "al_liquid_comprehensive_ac", p, end_ms, rc.value, "kWh/t",
                                      rc.completeness, best_level(rc.value, levels), levels[0].source))
        if _kah_key(unit) in self.ledgers:
            rows += self._faraday(unit, p, end_ms, energy, metal)
        return rows

    def _faraday(self, unit: Potline, p: Period, end_ms: int, energy: CounterDelta,
                 metal: CounterDelta) -> list[KpiRow]:
        kah = self._total(_kah_key(unit), p, end_ms)
        tonnes = kah.delta * self.limits.faraday_kg_per_kah() * unit.cells * unit.current_efficiency / 1000.0
        if tonnes <= 0:
            return []
        elapsed = end_ms - p.start_ms
        source = "Faraday's law, limits.yaml energy.faraday; CE configured"
        rows = [self._row(unit.id, "faraday_production", p, end_ms, tonnes, "t", min(1.0, kah.covered_ms / elapsed),
                          "", source, estimated=True, extra=(("current_efficiency", unit.current_efficiency),))]
        est = ratio(energy, CounterDelta(tonnes, kah.covered_ms), elapsed)
        if est.value is not None:
            c = classify_al_liquid_ac(est.value, self.limits)
            rows.append(self._row(unit.id, "al_liquid_ac_estimated", p, end_ms, est.value, "kWh/t", est.completeness,
                                  c.level, c.limit_source, c.benchmark_met, estimated=True))
        if _dc_key(unit) in self.ledgers:
            dc = self._total(_dc_key(unit), p, end_ms)
            rows.append(self._row(unit.id, "dc_energy_per_t_estimated", p, end_ms, dc.delta / tonnes, "kWh/t",
                                  min(1.0, min(dc.covered_ms, kah.covered_ms) / elapsed), "", source, estimated=True))
        if metal.delta > 0:
            limit = self.limits.value("energy.production_crosscheck.max_deviation", "energy.production_crosscheck",
                                      "weighed vs Faraday", "fraction")
            deviation = (metal.delta - tonnes) / tonnes
            level = "mismatch" if abs(deviation) > limit.value else "consistent"
            rows.append(self._row(unit.id, "production_deviation", p, end_ms, abs(deviation), "fraction",
                                  min(1.0, min(metal.covered_ms, kah.covered_ms) / elapsed), level, limit.source,
                                  extra=(("signed_deviation", deviation), ("weighed_t", metal.delta),
                                         ("faraday_t", tonnes), ("limit", limit.value))))
        return rows

    def _refinery(self, unit: AluminaRefinery, p: Period, rolling: Period, end_ms: int) -> list[KpiRow]:
        rows: list[KpiRow] = []
        for kpi, scopes in (("comprehensive_energy", {"process", "auxiliary"}), ("process_energy", {"process"})):
            carriers = [c for c in unit.carriers if c.scope in scopes]
            energy, alumina = self._kgce(unit, carriers, p, end_ms)
            r = ratio(energy, alumina, end_ms - p.start_ms)
            if r.value is None:
                continue
            levels = [self.limits.gb21346_level(f"{unit.process}.{kpi}", n, product="alumina") for n in (1, 2, 3)]
            rows.append(self._row(unit.id, kpi, p, end_ms, r.value, "kgce/t", r.completeness,
                                  best_level(r.value, levels), levels[0].source))
            if p.window in PROJECTED and p.end_ms is not None:
                e24, a24 = self._kgce(unit, carriers, rolling, end_ms)
                rows += self._projection(unit.id, kpi, p, end_ms, energy, alumina, e24, a24, "kgce/t",
                                         lambda v, lv=levels: best_level(v, lv),  # type: ignore[misc]
                                         (("process", unit.process),))  # the rule judges it by its process
        return rows

    def _kgce(self, unit: AluminaRefinery, carriers: list[EnergyCarrier], p: Period,
              end_ms: int) -> tuple[CounterDelta, CounterDelta]:
        coefficients = self.limits.data["energy"]["coefficients_kgce"]
        alumina = self._total(unit.alumina_output, p, end_ms, "t")
        kgce, covered = 0.0, alumina.covered_ms
        for carrier in carriers:
            entry = coefficients.get(carrier.coefficient)
            if entry is None or entry.get("value") is None:
                continue
            d = self._total(carrier.reading, p, end_ms, str(entry["unit"]).split("/")[1])
            kgce += (-1.0 if carrier.exported else 1.0) * d.delta * float(entry["value"])
            covered = min(covered, d.covered_ms)
        return CounterDelta(kgce, covered), alumina

    def _projection(self, unit_id: str, kpi: str, p: Period, end_ms: int, num: CounterDelta, den: CounterDelta,
                    num_24h: CounterDelta, den_24h: CounterDelta, unit: str,
                    level_of: Callable[[float], str], extra: tuple[tuple[str, FieldValue], ...] = ()) -> list[KpiRow]:
        """The value at the period's end if the rest of it runs like the last 24 hours."""
        assert p.end_ms is not None
        if den_24h.delta <= 0 or num_24h.covered_ms <= 0:
            return []
        remaining_h = (p.end_ms - end_ms) / MS_PER_H
        hours_24 = max(num_24h.covered_ms, 1) / MS_PER_H
        projected_num = num.delta + num_24h.delta / hours_24 * remaining_h
        projected_den = den.delta + den_24h.delta / hours_24 * remaining_h
        if projected_den <= 0:
            return []
        value = projected_num / projected_den
        return [self._row(unit_id, f"{kpi}_projected", p, end_ms, value, unit,
                          min(1.0, num_24h.covered_ms / (24 * MS_PER_H)), str(level_of(value)), "projection",
                          estimated=True, extra=(("period_end_ms", p.end_ms), *extra))]

    # -- seed scorecard --------------------------------------------------------------------------------------

    def _scorecard(self, year: Period, rows: list[KpiRow], end_ms: int) -> list[KpiRow]:
        """The seed's targets (limits.yaml ``seed_targets``) for this site, on year-to-date values."""
        cfg = self.site.config
        out: list[KpiRow] = []
        ytd = {(r.unit_process, r.kpi): r for r in rows if r.window == "year"}
        potlines = [u for u in cfg.process_units if isinstance(u, Potline)]
        if potlines:
            at = [u for u in potlines if (row := ytd.get((u.id, "al_liquid_ac"))) is not None and row.benchmark_met]
            known = [u for u in potlines if (u.id, "al_liquid_ac") in ytd]
            share = sum(u.capacity_t_per_year for u in at) / sum(u.capacity_t_per_year for u in potlines)
            out.append(self._target("smelter_capacity_at_benchmark", year, end_ms, share,
                                    len(known) / len(potlines)))
        refineries = [u for u in cfg.process_units if isinstance(u, AluminaRefinery)]
        if refineries:
            level1 = [u for u in refineries
                      if (row := ytd.get((u.id, "comprehensive_energy"))) is not None and row.level == "level1"]
            known_refineries = [u for u in refineries if (u.id, "comprehensive_energy") in ytd]
            out.append(self._target("alumina_at_gb21346_level1", year, end_ms, len(level1) / len(refineries),
                                    len(known_refineries) / len(refineries)))
        sc = cfg.scorecard
        if sc.electricity_total and sc.electricity_non_fossil:
            total = [self._total(p, year, end_ms, "kWh") for p in sc.electricity_total]
            green = [self._total(p, year, end_ms, "kWh") for p in sc.electricity_non_fossil]
            r = ratio(CounterDelta(sum(g.delta for g in green), min(g.covered_ms for g in green)),
                      CounterDelta(sum(t.delta for t in total), min(t.covered_ms for t in total)),
                      end_ms - year.start_ms)
            if r.value is not None:
                out.append(self._target("non_fossil_electricity_share", year, end_ms, r.value, r.completeness))
        if sc.red_mud_produced is not None and sc.red_mud_utilised is not None:
            r = ratio(self._total(sc.red_mud_utilised, year, end_ms, "t"),
                      self._total(sc.red_mud_produced, year, end_ms, "t"), end_ms - year.start_ms)
            if r.value is not None:
                out.append(self._target(f"red_mud_new_utilisation_{cfg.site.region}", year, end_ms, r.value,
                                        r.completeness))
        return out

    def _target(self, name: str, year: Period, end_ms: int, value: float, completeness: float) -> KpiRow:
        key = f"seed_targets.{name}"
        target = self.limits.value(key, "seed_targets", name, "fraction")
        entry = self.limits.entry(key)
        comparison = str(entry.get("comparison", "gte"))
        met = value > target.value if comparison == "gt" else value >= target.value
        return self._row(self.site.id, f"scorecard_{name}", year, end_ms, value, "fraction", completeness,
                         "met" if met else "not_met", target.source,
                         extra=(("target", target.value), ("comparison", comparison),
                                ("deadline", str(entry.get("deadline", ""))), ("met", met)))
