"""Data-quality signals, evaluated with the KPIs so live and replay judge them alike.

``source_missed_polls`` (per process unit; ``<pollutant>_source_missed_polls`` per stack pollutant): how
many poll intervals its worst source has gone without a good reading: a stale meter, a dead gateway or a
broken network all look the same from here, and all make the KPIs computed from it suspect.
``analyser_fault_s`` (per CEMS stack with a DAS flag): how long the analyser has been flagged D (fault) or B
(communication failure) without interruption (HJ 212-2017 flags). The alert rules ``source_stale`` and
``analyser_fault`` judge them (alumon/data/alert_rules.yaml).
"""

from __future__ import annotations

import numpy as np

from alumon.config import AluminaRefinery, CemsStack, Potline, ProcessUnit, Site
from analytics.cems import DAS_FLAG_CODES, HOUR_MS
from analytics.kpi_row import KpiRow
from analytics.readings import ReadingInfo
from analytics.series import SeriesStore

LIVE = "live"
SOURCE = "alumon data quality"
FAULT_FLAGS = ("D", "B")
FAULT_CODES = np.array([code for code, letter in DAS_FLAG_CODES.items() if letter in FAULT_FLAGS], dtype=float)
STARTUP_GRACE_MS = 60_000  # a source never seen counts as missing only after this long: the edge may start later


def source_groups(unit: ProcessUnit) -> dict[str, list[str]]:
    """The readings each of a unit's limit-judged KPI families is computed from, by the family's pollutant
    ("" for the whole unit). Their loss holds those alerts and only those: a potline's auxiliary meters (only
    in 铝液综合交流电耗, which no rule judges) and its line current and voltage (only in the Faraday
    cross-check, judged by its own rule) are left out; a stack's NOx analyser going quiet holds its NOx
    alerts, not its SO₂ ones."""
    if isinstance(unit, Potline):
        return {"": [unit.ac_energy, unit.metal_tapped]}
    if isinstance(unit, AluminaRefinery):
        return {"": [unit.alumina_output, *(c.reading for c in unit.carriers)]}
    needs = [unit.flag,
             unit.moisture if unit.basis == "wet" else None,
             unit.o2 if unit.correction.type != "none" else None,
             *((unit.temperature, unit.pressure) if unit.conditions == "actual" else ())]
    shared = [p for p in needs if p is not None]
    return {pollutant: [path, *shared] for pollutant, path in unit.pollutants.items()}


class DataQuality:
    def __init__(self, site: Site, info: ReadingInfo):
        self.units = site.config.process_units
        self.groups = [(unit.id, pollutant, paths) for unit in self.units
                       for pollutant, paths in source_groups(unit).items()]
        self.info = info
        self.started_ms: int | None = None
        self.last_good: dict[str, int] = {}  # outlives the store's trimming: a source dead for days stays dead

    def rows(self, store: SeriesStore, end_ms: int) -> list[KpiRow]:
        """The signals at ``end_ms`` (caller holds the store lock)."""
        if self.started_ms is None:
            self.started_ms = end_ms
        rows = [self._missed_polls(store, unit_id, pollutant, paths, end_ms)
                for unit_id, pollutant, paths in self.groups]
        rows += [self._analyser_fault(store, unit, end_ms) for unit in self.units
                 if isinstance(unit, CemsStack) and unit.flag is not None]
        return rows

    def _missed_polls(self, store: SeriesStore, unit_id: str, pollutant: str, paths: list[str],
                      end_ms: int) -> KpiRow:
        assert self.started_ms is not None
        worst, missed = "", 0.0
        for path in paths:
            last = store.series[path].last_good_ms(end_ms)
            if last is not None:
                self.last_good[path] = last
            since = self.last_good.get(path, self.started_ms + STARTUP_GRACE_MS)
            polls = max(0.0, (end_ms - since) / self.info.interval_ms(path))
            if polls > missed or not worst:
                worst, missed = path, polls
        kpi = f"{pollutant}_source_missed_polls" if pollutant else "source_missed_polls"
        return KpiRow(end_ms, unit_id, kpi, LIVE, round(missed, 1), "polls", 1.0, "", SOURCE,
                      extra=(("source", worst),))

    def _analyser_fault(self, store: SeriesStore, unit: CemsStack, end_ms: int) -> KpiRow:
        assert unit.flag is not None
        t, v = store.series[unit.flag].window(end_ms - 2 * HOUR_MS, end_ms)
        seconds = 0.0
        if len(t) and np.isin(v[-1], FAULT_CODES):
            ok = np.flatnonzero(~np.isin(v, FAULT_CODES))
            since = int(t[ok[-1] + 1]) if len(ok) else int(t[0])
            seconds = (end_ms - since) / 1000
        return KpiRow(end_ms, unit.id, "analyser_fault_s", LIVE, seconds, "s", 1.0, "", SOURCE,
                      extra=(("flag_reading", unit.flag),))
