"""What analytics needs to know about a reading path ``device.quantity`` beyond its samples: its poll
interval (gap detection), its counter span (rollover) and its unit (conversion)."""

from __future__ import annotations

from alumon.config import Site

GAP_POLLS = 3  # a hole longer than this many poll intervals is a gap (no energy, no coverage)
UNIT_FACTORS = {("t", "kg"): 1000.0, ("kg", "kg"): 1.0, ("t", "t"): 1.0, ("kg", "t"): 0.001, ("MWh", "kWh"): 1000.0,
                ("kWh", "kWh"): 1.0, ("Nm3", "Nm3"): 1.0, ("m3", "Nm3"): 1.0, ("MJ", "MJ"): 1.0, ("GJ", "MJ"): 1000.0}


class ReadingInfo:
    def __init__(self, site: Site):
        self.site = site

    def interval_ms(self, path: str) -> int:
        return int(self.site.config.device(path.split(".", 1)[0]).poll_interval_s * 1000)

    def gap_ms(self, path: str) -> int:
        return self.interval_ms(path) * GAP_POLLS

    def wrap_span(self, path: str) -> float:
        device, quantity = path.split(".", 1)
        f = self.site.profile_of(device).field(quantity)
        return float(f.modulus) * f.scale

    def factor(self, path: str, target: str) -> float:
        """Multiply the reading by this to get ``target`` units (1 when the units already agree)."""
        device, quantity = path.split(".", 1)
        unit = self.site.profile_of(device).field(quantity).unit
        return UNIT_FACTORS.get((unit, target), 1.0)
