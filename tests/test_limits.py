"""Limits load from data with their sources; a site override wins and carries its own source."""

from __future__ import annotations

from alumon.config import LimitOverride
from analytics.limits import Limits


def test_levels_and_sources() -> None:
    lim = Limits()
    level3 = lim.al_liquid_ac_level(3)
    assert level3.value == 13350 and level3.unit == "kWh/t"
    assert "GB 21346-2022" in level3.source and "to_verify" in level3.source
    assert lim.ndrc("benchmark").value == 13000 and "1609" in lim.ndrc("benchmark").source
    so2 = lim.ultra_low("so2")
    assert so2.value == 35 and "to_verify" in so2.source
    assert lim.gb21346_level("bayer.comprehensive_energy", 1, product="alumina").value == 340


def test_site_override() -> None:
    o = LimitOverride(key="emissions.ultra_low_defaults.so2", value=30, source="桂环发 example", status="verified")
    so2 = Limits([o]).ultra_low("so2")
    assert so2.value == 30
    assert "桂环发 example" in so2.source and "verified" in so2.source


def test_hj75_parameters_are_overridable() -> None:
    from alumon.config import LimitOverride
    from analytics.limits import Limits

    lim = Limits([LimitOverride(key="cems_rules.min_valid_minutes_per_hour", value=40, source="permit example"),
                  LimitOverride(key="emissions.ultra_low_defaults.compliance_rule.min_share", value=0.9,
                                source="permit example")])
    assert lim.value("cems_rules.min_valid_minutes_per_hour", "cems_rules", "x", "min").value == 40
    assert Limits().value("cems_rules.min_valid_minutes_per_hour", "cems_rules", "x", "min").value == 45
    from analytics.compliance import MonthlyCompliance

    assert MonthlyCompliance(lim).min_share == 0.9
