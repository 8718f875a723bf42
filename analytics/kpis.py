"""Evaluate every KPI of a site for one window ending at ``end_ms``; pure given the series store, so live
evaluation and a later replay share this code path."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alumon.config import AluminaRefinery, CemsStack, ExcessAirCorrection, O2Correction, Potline, Site
from alumon.schema import FieldValue
from analytics import cems
from analytics.cems import HOUR_MS, MINUTE_MS, VALID_FLAGS, Corrected
from analytics.data_quality import DataQuality
from analytics.emissions import (
    emission_rate_kg_h,
    excess_air_correct,
    o2_correct,
    ppm_to_mgm3,
    to_dry,
    to_standard,
)
from analytics.enpi import CounterDelta, best_level, classify_al_liquid_ac, counter_delta, ratio
from analytics.kpi_row import KpiRow
from analytics.limits import LimitError, Limits
from analytics.period_kpis import PeriodKpis
from analytics.readings import ReadingInfo
from analytics.series import SeriesStore

PARTIAL_HOUR_MIN_MINUTES = 15  # the running hour's mean is only a useful warning after a quarter hour


class KpiEngine:
    def __init__(self, site: Site, limits: Limits):
        self.site = site
        self.limits = limits
        self.info = ReadingInfo(site)
        self.window_ms = int(site.config.analytics.kpi_window_s * 1000)
        self.window_name = f"rolling_{site.config.analytics.kpi_window_s:g}s"
        self.every_ms = int(site.config.analytics.evaluate_every_s * 1000)
        # HJ 75: 45 of 60 (to verify), from limits.yaml; a site override (limits_overrides) wins.
        self.min_valid_minutes = int(limits.value("cems_rules.min_valid_minutes_per_hour", "cems_rules",
                                                  "valid minutes per hour", "min").value)
        has_stacks = any(isinstance(u, CemsStack) for u in site.config.process_units)
        # How much history the series must keep: two KPI windows, or two hours for the hourly means, and at
        # least two hours so the period ledgers can rebuild the last hour when late data arrives.
        self.retention_ms = max(2 * self.window_ms, 2 * HOUR_MS if has_stacks else 0, 2 * HOUR_MS)
        self.periods = PeriodKpis(site, limits, self.info, recompute_ms=self.retention_ms // 2)
        self.quality = DataQuality(site, self.info)

    def needed_readings(self) -> set[str]:
        paths: set[str] = self.periods.needed_readings()
        for unit in self.site.config.process_units:
            if isinstance(unit, Potline):
                paths |= {unit.ac_energy, unit.metal_tapped, *unit.auxiliary_energy}
            elif isinstance(unit, AluminaRefinery):
                paths |= {unit.alumina_output, *(c.reading for c in unit.carriers)}
            else:
                paths |= set(unit.pollutants.values())
                aux = (unit.o2, unit.moisture, unit.flag, unit.temperature, unit.pressure, unit.flow)
                paths |= {p for p in aux if p is not None}
        return paths

    def _delta(self, store: SeriesStore, path: str, end_ms: int) -> CounterDelta:
        t, v, steps = store.series[path].counter_window(end_ms - self.window_ms, end_ms)
        return counter_delta(t, v, self.info.gap_ms(path), steps, self.info.wrap_span(path))

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
            self.periods.update(store, end_ms)
            rows += self.quality.rows(store, end_ms)
        return rows + self.periods.rows(end_ms)

    def _potline(self, store: SeriesStore, unit: Potline, end_ms: int) -> list[KpiRow]:
        energy = self._delta(store, unit.ac_energy, end_ms)
        metal = self._delta(store, unit.metal_tapped, end_ms)
        energy_kwh = CounterDelta(energy.delta * self.info.factor(unit.ac_energy, "kWh"), energy.covered_ms)
        r = ratio(energy_kwh, metal, self.window_ms)
        if r.value is None:
            return []
        rows = [self._energy_row(unit.id, "al_liquid_ac", r.value, r.completeness, end_ms)]
        if unit.auxiliary_energy:
            aux = [self._delta(store, p, end_ms) for p in unit.auxiliary_energy]
            total = CounterDelta(energy_kwh.delta + sum(a.delta * self.info.factor(p, "kWh")
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
            amount = d.delta * self.info.factor(carrier.reading, per_unit)
            kgce += (-1.0 if carrier.exported else 1.0) * amount * float(entry["value"])
            covered = min(covered, d.covered_ms)
        r = ratio(CounterDelta(kgce, covered), alumina, self.window_ms)
        if r.value is None:
            return []
        levels = [self.limits.gb21346_level(f"{unit.process}.comprehensive_energy", n, product="alumina")
                  for n in (1, 2, 3)]
        return [KpiRow(end_ms, unit.id, "comprehensive_energy", self.window_name, r.value, "kgce/t",
                       r.completeness, best_level(r.value, levels), levels[0].source)]

    def _corrected(self, store: SeriesStore, unit: CemsStack, path: str, start: int, end: int) -> Corrected:
        """The pollutant's samples at standard, dry conditions (O2-corrected where the stack's rule says so),
        in HJ 75-2017 Appendix A order: ppm -> mg/m3, actual -> standard, wet -> dry, reference O2. A sample
        whose moisture, O2, temperature or pressure is missing, or whose value makes a correction impossible,
        is flagged D (unusable)."""
        t, c = store.series[path].window(start, end)

        def aligned(ref: str | None) -> npt.NDArray[np.float64]:
            """The auxiliary reading taken at the same instant as each sample, NaN where there is none."""
            if ref is None:
                return np.full(len(t), np.nan)
            t_aux, v_aux = store.series[ref].window(start, end)
            i = np.minimum(np.searchsorted(t_aux, t), max(len(t_aux) - 1, 0))
            return np.where(t_aux[i] == t, v_aux[i], np.nan) if len(t_aux) else np.full(len(t), np.nan)

        flags = cems.flags_of_codes(aligned(unit.flag)) if unit.flag else np.full(len(t), "N", dtype="<U1")
        pollutant = next(p for p, ref in unit.pollutants.items() if ref == path)
        if unit.units.get(pollutant) == "ppm":
            c = ppm_to_mgm3(c, "SO2" if pollutant == "so2" else "NO2")
        if unit.conditions == "actual":
            c = to_standard(c, aligned(unit.temperature), aligned(unit.pressure) * 1000.0)  # kPa -> Pa
        if unit.basis == "wet":
            c = to_dry(c, aligned(unit.moisture))
        if isinstance(unit.correction, O2Correction):
            c = o2_correct(c, aligned(unit.o2), unit.correction.o2_ref_pct)
        elif isinstance(unit.correction, ExcessAirCorrection):
            c = excess_air_correct(c, aligned(unit.o2), unit.correction.alpha_ref)
        flags[np.isnan(c)] = "D"
        return Corrected(t, c, flags, emission_rate_kg_h(c, aligned(unit.flow)))

    def _ultra_low(self, pollutant: str) -> tuple[float | None, str]:
        try:
            limit = self.limits.ultra_low(pollutant)
        except LimitError:
            return None, ""
        return limit.value, limit.source

    def _stack(self, store: SeriesStore, unit: CemsStack, end_ms: int) -> list[KpiRow]:
        interval_ms = self.info.interval_ms(next(iter(unit.pollutants.values())))
        hour_start = end_ms // HOUR_MS * HOUR_MS
        hourly_due = end_ms - hour_start < self.every_ms  # first evaluation after an hour boundary
        first_minute = (end_ms - self.every_ms) // MINUTE_MS * MINUTE_MS - MINUTE_MS
        # One corrected series per pollutant covers every use below: the rolling window, the minutes completed
        # since the previous evaluation, the hour just closed and the running hour.
        span_start = min(end_ms - self.window_ms, first_minute, hour_start - (HOUR_MS if hourly_due else 0))
        span_start = span_start // MINUTE_MS * MINUTE_MS
        rows = []
        for pollutant, path in unit.pollutants.items():
            limit, source = self._ultra_low(pollutant)
            series = self._corrected(store, unit, path, span_start, end_ms)
            mins = cems.minutes(series.t, series.value, series.flags, series.rate)
            rolling = series.between(end_ms - self.window_ms, end_ms)
            valid = rolling.value[np.isin(rolling.flags, list(VALID_FLAGS)) & ~np.isnan(rolling.value)]
            if len(valid):
                mean = float(np.mean(valid))
                level = "" if limit is None else ("ultra_low_met" if mean <= limit else "above_ultra_low")
                rows.append(KpiRow(end_ms, unit.id, f"{pollutant}_corrected", self.window_name, mean, "mg/m3",
                                   min(1.0, len(valid) * interval_ms / self.window_ms), level, source))
            rows += self._minutes(unit, pollutant, mins, end_ms)
            if hourly_due:
                rows.append(self._hourly(unit, pollutant, mins, hour_start - HOUR_MS))
            partial = self._partial_hour(unit, pollutant, mins, hour_start, end_ms, limit, source)
            if partial is not None:
                rows.append(partial)
        return rows

    def _partial_hour(self, unit: CemsStack, pollutant: str, mins: list[cems.Minute], hour_start: int,
                      end_ms: int, limit: float | None, source: str) -> KpiRow | None:
        """Early warning: the running hour's mean of valid minutes so far, once a quarter of the hour is in."""
        done = [m for m in mins if m.start_ms >= hour_start and m.start_ms + MINUTE_MS <= end_ms and m.valid]
        if len(done) < PARTIAL_HOUR_MIN_MINUTES:
            return None
        mean = float(np.mean([m.value for m in done if m.value is not None]))
        level = "" if limit is None else ("heading_over" if mean > limit else "ultra_low_met")
        elapsed_minutes = max(1, (end_ms - hour_start) // MINUTE_MS)
        return KpiRow(end_ms, unit.id, f"{pollutant}_hour_partial", "hour_to_date", mean, "mg/m3",
                      min(1.0, len(done) / elapsed_minutes), level, source, extra=(("valid_minutes", len(done)),))

    def _minutes(self, unit: CemsStack, pollutant: str, mins: list[cems.Minute], end_ms: int) -> list[KpiRow]:
        """Minute values (HJ 212 CN 2051) for the minutes completed since the previous evaluation."""
        kpi, first_start, last_start = f"{pollutant}_minute", end_ms - self.every_ms - MINUTE_MS, end_ms - MINUTE_MS
        rows = []
        for m in mins:
            if first_start < m.start_ms <= last_start:
                valid = m.valid
                rows.append(KpiRow(m.start_ms, unit.id, kpi, "minute", m.value, "mg/m3", 1.0 if valid else 0.0,
                                   "valid" if valid else "invalid", "", extra=(("valid", valid), ("flag", m.flag))))
        return rows

    def _hourly(self, unit: CemsStack, pollutant: str, mins: list[cems.Minute], start: int) -> KpiRow:
        """The HJ 75 hourly mean of the hour starting at ``start`` (timestamped at the hour's start), judged
        against every applicable limit, with the hour's emission total (HJ 212 ``Cou``) in kg."""
        limits = self.limits.applicable(unit.source_type.value, pollutant)
        ultra = limits.get("ultra_low")
        h = cems.hour(start, mins, ultra.value if ultra else None, self.min_valid_minutes)
        rate_minutes = [m.rate for m in mins
                        if start <= m.start_ms < start + HOUR_MS and m.rate_valid and m.rate is not None]
        level = "invalid" if not h.valid else ("above_ultra_low" if h.exceeded else "ultra_low_met")
        extra: list[tuple[str, FieldValue]] = [
            ("valid", h.valid), ("flag", h.flag), ("exceeded", h.exceeded), ("valid_minutes", h.valid_minutes)]
        if ultra is not None:
            extra.append(("limit", ultra.value))
        for kind, lim in limits.items():
            extra.append((f"limit_{kind}", lim.value))
            extra.append((f"exceeded_{kind}", bool(h.valid and h.mean is not None and h.mean > lim.value)))
        if rate_minutes:
            extra.append(("emission_kg", sum(rate_minutes) / 60.0))  # each valid minute emits rate/60 kg
        source = "; ".join(f"{kind}: {lim.source}" for kind, lim in limits.items())
        return KpiRow(start, unit.id, f"{pollutant}_hourly", "hour", h.mean, "mg/m3", h.valid_minutes / 60,
                      level, source, extra=tuple(extra))
