"""A deterministic physical model of the example plant: potlines, a Bayer refinery, CEMS stacks.

The model advances in wall-clock seconds and yields the *engineering* value of every (device, quantity)
the site binds to a process unit; the server encodes them into registers with the device's profile.

Physics (standards.md §7.1, §1.3):
* potline: series voltage U = cells × U_cell + busbar drop; DC power = I·U; AC power = DC / η_rectifier;
  aluminium produced = I[kA] × 0.33557 kg/(kA·h) × cells × CE. So AC kWh/t = U / (η · 0.33557 · cells · CE)
  × 1000, independent of the current. The metal-tapped total advances smoothly (simplification: the real
  crucible scale steps by 1-4 t per tapping; a smooth total keeps short demo windows meaningful).
* refinery: fixed consumption per tonne of alumina of each energy carrier (about 325 kgce/t, Bayer level 1).
* CEMS: analyser values with noise; scenarios move them.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

from alumon.config import AluminaRefinery, CemsStack, Potline, Site
from alumon.profiles import Kind

FARADAY_KG_PER_KAH = 0.33557  # kg Al per kA·h per cell at CE = 1 (limits.yaml energy.faraday)
RECTIFIER_EFFICIENCY = 0.985
BUSBAR_DROP_V = 20.0
SCENARIOS = ("normal", "energy-drift", "emission-exceedance")

# Normal AC kWh/t: a well-run potline inside GB 21346-2022 level 1 (12 950) and the NDRC benchmark (13 000),
# with room for the counters' rounding in short demo windows so `normal` never brushes the benchmark. Cell
# voltage is derived per potline (cells and CE differ), since kWh/t does not depend on the current.
NORMAL_AC_KWH_PER_T = 12_900.0
# energy-drift: potline 1's cells drift up from 15 s (ramp 15 s), hold, and are put right from 40 s (ramp 5 s),
# so a two-minute demo sees incidents open and close: one firing and one resolution notice each.
DRIFT_START_S = 15.0
DRIFT_RAMP_S = 15.0
DRIFT_END_S = 40.0
DRIFT_RECOVERY_S = 5.0
DRIFT_CELL_V_RISE = 0.60  # volts per cell at the end of the ramp (an anode-effect-like excursion)
DRIFT_CE_DROP = 0.02  # current efficiency lost at the end of the ramp

REFINERY_T_PER_H = 228.0
REFINERY_PER_TONNE = {  # per tonne of alumina
    "electricity_kwh": 250.0,
    "natural_gas_nm3": 80.0,
    "steam_t": 1.2,
    "coal_t": 0.06,
}
POTROOM_AUX_KWH_PER_T = 300.0
EXCEEDANCE_START_S = 20.0  # emission-exceedance: the calciner's SO2 scrubber fails at 20 s ...
EXCEEDANCE_END_S = 70.0  # ... and is back at 70 s
# Daily-drift checks of each analyser (HJ 75): 5 minutes of span gas once an hour, the first one 30 minutes
# (potroom) or 40 minutes (calciner) after the simulator starts, so short demos never fall into one.
CALIBRATION_FIRST_S = {"potroom_gas_treatment": 1800.0, "alumina_calciner": 2400.0}
CALIBRATION_EVERY_S = 3600.0
CALIBRATION_LENGTH_S = 300.0
SPAN_GAS_MGM3 = 80.0
DAS_FLAG_CALIBRATION = 5.0  # C in the cems-das profile's flag codes
# Once in a long run: the potroom gas treatment stops for 30 minutes 3 h after start (flag F: source stopped,
# never an exceedance) and the calciner's SO2 analyser faults for 10 minutes at 4 h (flag D).
STOPPED = {"potroom_gas_treatment": (10_800.0, 1_800.0)}
FAULT = {"alumina_calciner": (14_400.0, 600.0)}
DAS_FLAG_STOPPED = 1.0
DAS_FLAG_FAULT = 4.0


def normal_cell_v(unit: Potline) -> float:
    """Cell voltage giving NORMAL_AC_KWH_PER_T: U = kWh/t × η × F × cells × CE / 1000 − busbar, per cell."""
    series_v = NORMAL_AC_KWH_PER_T * RECTIFIER_EFFICIENCY * FARADAY_KG_PER_KAH * unit.cells \
        * unit.current_efficiency / 1000.0
    return (series_v - BUSBAR_DROP_V) / unit.cells


@dataclass
class Ref:
    device: str
    quantity: str

    @classmethod
    def parse(cls, path: str) -> Ref:
        device, quantity = path.split(".", 1)
        return cls(device, quantity)


@dataclass
class PlantModel:
    """Holds every simulated quantity; ``step`` advances it to wall-clock time ``now``."""

    site: Site
    scenario: str
    seed: int = 42
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    _t0: float | None = None
    _last: float | None = None
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; valid: {', '.join(SCENARIOS)}")
        self._rng = random.Random(self.seed)
        # Counters start at a seeded, non-zero offset; gauges at zero until the first step.
        for device in self.site.config.devices:
            for f in self.site.profile_of(device.id).fields:
                start = self._rng.uniform(1e4, 1e6) if f.kind is Kind.COUNTER else 0.0
                self.values[(device.id, f.name)] = start

    # -- helpers ---------------------------------------------------------------------------------------------

    def _noise(self, sigma: float) -> float:
        return self._rng.gauss(0.0, sigma)

    def _set(self, path: str | None, value: float) -> None:
        if path is not None:
            ref = Ref.parse(path)
            self.values[(ref.device, ref.quantity)] = value

    def _add(self, path: str | None, delta: float) -> None:
        if path is not None:
            ref = Ref.parse(path)
            self.values[(ref.device, ref.quantity)] = self.values.get((ref.device, ref.quantity), 0.0) + delta

    def _drift(self, elapsed: float) -> float:
        """0 before the drift, rising linearly to 1 at the end of the ramp, back to 0 after the recovery."""
        if self.scenario != "energy-drift":
            return 0.0
        rise = min(1.0, max(0.0, (elapsed - DRIFT_START_S) / DRIFT_RAMP_S))
        return rise * min(1.0, max(0.0, 1.0 - (elapsed - DRIFT_END_S) / DRIFT_RECOVERY_S))

    def forecast(self, elapsed_s: float, step_s: float = 1.0) -> dict[tuple[str, str], float]:
        """The values ``elapsed_s`` after the first ``step``, from a copy stepped ahead: the live model, its
        noise draws included, is untouched. Noise makes it an estimate, good to a small fraction of a second
        of counting."""
        assert self._t0 is not None and self._last is not None, "forecast needs a first step"
        ahead = copy.copy(self)  # shares the (read-only) site; values and the generator are its own
        ahead.values = dict(self.values)
        ahead._rng = random.Random()
        ahead._rng.setstate(self._rng.getstate())
        t, end = self._last, self._t0 + elapsed_s
        while t < end:
            t = min(end, t + step_s)
            ahead.step(t)
        return ahead.values

    # -- the model -------------------------------------------------------------------------------------------

    def step(self, now: float) -> None:
        if self._t0 is None:
            self._t0 = self._last = now
        assert self._last is not None
        dt = max(0.0, now - self._last)
        self._last = now
        elapsed = now - self._t0
        potline_index = 0
        for unit in self.site.config.process_units:
            if isinstance(unit, Potline):
                metal_t = self._potline(unit, potline_index, elapsed, dt)
                potline_index += 1
                for aux in unit.auxiliary_energy:  # potroom auxiliaries (fans, compressed air) scale with output
                    self._add(aux, POTROOM_AUX_KWH_PER_T * metal_t)
                    self._set_aux_gauges(aux, POTROOM_AUX_KWH_PER_T * metal_t, dt)
            elif isinstance(unit, AluminaRefinery):
                self._refinery(unit, dt)
            elif isinstance(unit, CemsStack):
                self._stack(unit, elapsed)

    def _potline(self, unit: Potline, index: int, elapsed: float, dt: float) -> float:
        drift = self._drift(elapsed) if index == 0 else 0.0
        current_ka = 400.0 + 100.0 * index + self._noise(0.3)
        cell_v = normal_cell_v(unit) + DRIFT_CELL_V_RISE * drift + self._noise(0.002)
        ce = unit.current_efficiency - DRIFT_CE_DROP * drift
        series_v = unit.cells * cell_v + BUSBAR_DROP_V
        ac_kw = current_ka * series_v / RECTIFIER_EFFICIENCY  # kA × V = kW
        metal_t = current_ka * FARADAY_KG_PER_KAH * unit.cells * ce * dt / 3600.0 / 1000.0
        self._add(unit.ac_energy, ac_kw * dt / 3600.0)
        self._add(unit.metal_tapped, metal_t)
        self._set(unit.line_current, current_ka)
        self._set(unit.line_voltage, series_v)
        if unit.line_current is not None:
            rect = Ref.parse(unit.line_current).device
            self.values[(rect, "cells_in_circuit")] = float(unit.cells)
            self.values[(rect, "dc_energy_mwh")] = self.values.get((rect, "dc_energy_mwh"), 0.0) + (
                current_ka * series_v * dt / 3600.0 / 1000.0)
        meter = Ref.parse(unit.ac_energy).device
        self.values[(meter, "active_power_kw")] = ac_kw
        self.values[(meter, "power_factor")] = 0.95 + self._noise(0.002)
        self.values[(meter, "frequency_hz")] = 50.0 + self._noise(0.01)
        scale = Ref.parse(unit.metal_tapped).device
        self.values[(scale, "last_crucible_t")] = 3.0 + self._noise(0.05)
        return metal_t

    def _set_aux_gauges(self, path: str, kwh: float, dt: float) -> None:
        device = Ref.parse(path).device
        power_w = kwh / dt * 3600.0 * 1000.0 if dt > 0 else 0.0
        self.values[(device, "total_power_w")] = power_w
        for phase in ("l1", "l2", "l3"):
            self.values[(device, f"voltage_{phase}")] = 230.0 + self._noise(0.5)
            self.values[(device, f"current_{phase}")] = power_w / 3 / 230.0 / 1000.0  # CT secondary-ish, A
        self.values[(device, "frequency_hz")] = 50.0 + self._noise(0.01)

    def _refinery(self, unit: AluminaRefinery, dt: float) -> None:
        alumina_t = REFINERY_T_PER_H * dt / 3600.0
        self._add(unit.alumina_output, alumina_t)
        by_quantity = {
            "import_kwh": REFINERY_PER_TONNE["electricity_kwh"],
            "natural_gas_nm3": REFINERY_PER_TONNE["natural_gas_nm3"],
            "steam_t": REFINERY_PER_TONNE["steam_t"],
            "coal_t": REFINERY_PER_TONNE["coal_t"],
        }
        for carrier in unit.carriers:
            per_t = by_quantity.get(Ref.parse(carrier.reading).quantity, 0.0)
            self._add(carrier.reading, per_t * alumina_t)
            if Ref.parse(carrier.reading).quantity == "import_kwh":
                self._set_aux_gauges(carrier.reading, per_t * alumina_t, dt)
        totaliser = Ref.parse(unit.alumina_output).device
        self.values[(totaliser, "natural_gas_nm3_h")] = REFINERY_T_PER_H * REFINERY_PER_TONNE["natural_gas_nm3"]
        self.values[(totaliser, "steam_t_h")] = REFINERY_T_PER_H * REFINERY_PER_TONNE["steam_t"]

    def _stack(self, unit: CemsStack, elapsed: float) -> None:
        potroom = unit.source_type.value == "potroom_gas_treatment"
        exceed = (self.scenario == "emission-exceedance" and not potroom
                  and EXCEEDANCE_START_S <= elapsed < EXCEEDANCE_END_S)
        so2 = (50.0 if exceed else 20.0) + self._noise(0.8)
        base = {
            "so2": so2,
            "pm": (3.0 if potroom else 5.0) + self._noise(0.2),
            "nox": (5.0 if potroom else 30.0) + self._noise(1.0),
            "fluoride_as_F": (0.3 if potroom else 0.05) + self._noise(0.02),
        }
        first = CALIBRATION_FIRST_S.get(unit.source_type.value, 1800.0)
        calibrating = elapsed >= first and (elapsed - first) % CALIBRATION_EVERY_S < CALIBRATION_LENGTH_S
        if calibrating:
            base["so2"] = SPAN_GAS_MGM3 + self._noise(0.2)  # the analyser reads its span gas, not the flue
        for pollutant, path in unit.pollutants.items():
            self._set(path, max(0.0, base[pollutant]))
        self._set(unit.o2, (20.6 if potroom else 4.0) + self._noise(0.05))
        self._set(unit.moisture, (2.0 if potroom else 25.0) + self._noise(0.1))
        self._set(unit.temperature, (95.0 if potroom else 160.0) + self._noise(0.3))
        self._set(unit.pressure, 101.0 + self._noise(0.05))
        self._set(unit.flow, (2.5e6 if potroom else 6.0e5) * (1 + self._noise(0.005)))
        device = Ref.parse(next(iter(unit.pollutants.values()))).device
        flag = DAS_FLAG_CALIBRATION if calibrating else 0.0  # N: normal
        for schedule, code in ((STOPPED, DAS_FLAG_STOPPED), (FAULT, DAS_FLAG_FAULT)):
            begin, length = schedule.get(unit.source_type.value, (-1.0, 0.0))
            if begin <= elapsed < begin + length:
                flag = code
                for path in unit.pollutants.values():
                    self._set(path, 0.0)  # stopped fans / a faulted analyser read zero
        if unit.flag is not None:
            self._set(unit.flag, flag)
        else:
            self.values[(device, "das_flag")] = flag
