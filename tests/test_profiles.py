"""Shipped device profiles load, plan and decode known register values; bad profiles are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alumon.codec import DataType, WordOrder, encode, encode_string
from alumon.config import BUILTIN_PROFILES_DIR
from alumon.profiles import DeviceProfile, load_profiles
from alumon.telemetry import Quality
from edge.decode import request_readings, request_texts
from edge.plan import plan_reads

PROFILES = load_profiles(BUILTIN_PROFILES_DIR)


def registers_for(profile: DeviceProfile, start: int, count: int, values: dict[str, list[int]]) -> list[int]:
    regs = [0] * count
    for name, words in values.items():
        a = profile.wire_address(profile.field(name)) - start
        regs[a:a + len(words)] = words
    return regs


def decoded(profile: DeviceProfile, values: dict[str, list[int]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for req in plan_reads(profile):
        regs = registers_for(profile, req.address, req.count, {k: v for k, v in values.items()
                                                               if profile.field(k) in req.fields})
        out.update({k: r.value for k, r in request_readings(profile, req, regs).items()})
    return out


def test_all_shipped_profiles_load() -> None:
    assert set(PROFILES) >= {"eastron-sdm630", "cn-multifunction-u32", "rectifier-plc", "cems-das"}


def test_sdm630_import_kwh_float_abcd() -> None:
    p = PROFILES["eastron-sdm630"]
    assert p.wire_address(p.field("import_kwh")) == 0x48  # data sheet register 30073
    out = decoded(p, {"import_kwh": [0x464B, 0x5200], "voltage_l1": encode(231.5, DataType.F32)})
    assert out["import_kwh"] == 13012.5
    assert out["voltage_l1"] == 231.5


def test_cn_meter_u32_cdab_counter_scaled() -> None:
    p = PROFILES["cn-multifunction-u32"]
    # 123 456 789 counts × 0.1 kWh = 12 345 678.9 kWh, low word first (CDAB).
    out = decoded(p, {"forward_active_kwh": [0xCD15, 0x075B]})
    assert out["forward_active_kwh"] == pytest.approx(12_345_678.9)


def test_rectifier_and_cems() -> None:
    r = decoded(PROFILES["rectifier-plc"], {"line_current_ka": encode(400.25, DataType.F32),
                                            "series_voltage_v": encode(1190.0, DataType.F32)})
    assert (r["line_current_ka"], r["series_voltage_v"]) == (400.25, 1190.0)
    c = decoded(PROFILES["cems-das"], {"so2_mgm3": encode(28.5, DataType.F32), "das_flag": [5]})
    assert c["so2_mgm3"] == 28.5 and c["das_flag"] == 5


def test_out_of_range_and_failed_read_quality() -> None:
    p = PROFILES["cems-das"]
    (req,) = plan_reads(p)
    regs = registers_for(p, req.address, req.count, {"o2_pct": encode(25.0, DataType.F32)})
    assert request_readings(p, req, regs)["o2_pct"].quality is Quality.OUT_OF_RANGE
    stale = request_readings(p, req, None)
    assert all(r.quality is Quality.STALE and r.value is None for r in stale.values())


def test_planner_merges_within_gap_and_limit() -> None:
    p = PROFILES["eastron-sdm630"]
    reqs = plan_reads(p)
    # 0x00-0x0B (6 floats); 0x34 starts a new read (hole 0x0C-0x33 = 40 > max_gap 20); 0x46-0x4B joins it
    # (hole 0x36-0x45 = 16 <= 20): 0x34..0x4B = 24 registers.
    assert [(r.address, r.count) for r in reqs] == [(0x00, 12), (0x34, 24)]
    capped = p.model_copy(update={"max_registers_per_read": 4})
    assert all(r.count <= 4 for r in plan_reads(capped))


def _profile(**fields: object) -> dict[str, object]:
    return {"profile": "x", "fields": [fields]}


def test_overlap_and_illegal_combinations_name_both_keys() -> None:
    with pytest.raises(ValidationError, match="fields 'a' and 'b' overlap"):
        DeviceProfile.model_validate({"profile": "x", "fields": [
            {"name": "a", "address": 0, "type": "f32"}, {"name": "b", "address": 1, "type": "u16"}]})
    with pytest.raises(ValidationError, match="`rollover` illegal with `kind: gauge`"):
        DeviceProfile.model_validate(_profile(name="a", address=0, type="u32", rollover=100))
    with pytest.raises(ValidationError, match="`rollover` illegal with `type: f32`"):
        DeviceProfile.model_validate(_profile(name="a", address=0, type="f32", kind="counter", rollover=100))


def test_one_based_addresses() -> None:
    p = DeviceProfile.model_validate({"profile": "x", "address_base": 1, "order": "CDAB",
                                      "fields": [{"name": "e", "address": 30073, "type": "u32"}]})
    assert p.wire_address(p.field("e")) == 30072
    assert p.order_of(p.field("e")) is WordOrder.CDAB


@pytest.mark.parametrize(("field", "message"), [
    ({"type": "f32", "count": 3}, "`count: 3` disagrees with `type: f32` (2 registers)"),
    ({"type": "string"}, "`type: string` needs `count`"),
    ({"type": "string", "count": 4, "scale": 0.1}, "`scale` illegal with `type: string`"),
    ({"type": "u16", "order": "CDAB"}, "`order: CDAB` illegal with `type: u16` (no words to swap)"),
    ({"type": "u32", "bit": 3}, "`bit` illegal with `type: u32`"),
    ({"type": "f32", "function": "coil"}, "`function: coil` illegal with `type: f32`"),
    ({"type": "bool", "function": "holding"}, "`function: holding` illegal with `type: bool`"),
    ({"type": "bitfield", "kind": "counter"}, "`kind: counter` illegal with `type: bitfield`"),
])
def test_illegal_key_pairs_are_named(field: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        DeviceProfile.model_validate(_profile(name="a", address=0, **field))
    assert message in str(exc.value)


def test_profile_default_function_must_suit_the_type() -> None:
    with pytest.raises(ValidationError, match="profile default `function: holding` illegal with `type: bool`"):
        DeviceProfile.model_validate(_profile(name="a", address=0, type="bool"))


def test_bits_of_one_status_word_may_share_it_but_nothing_else() -> None:
    r = PROFILES["rectifier-plc"]
    out = decoded(r, {"alarm_word": [0b0101]})
    assert out["alarm_word"] == 5 and out["anode_effect"] == 1  # bit 2 of 0b0101
    with pytest.raises(ValidationError, match="fields 'w' and 'n' overlap"):
        DeviceProfile.model_validate({"profile": "x", "fields": [
            {"name": "w", "address": 5, "type": "bitfield"}, {"name": "n", "address": 5, "type": "u16"}]})


def test_coils_plan_in_bits_and_decode_as_bool() -> None:
    p = DeviceProfile.model_validate({"profile": "x", "fields": [
        {"name": "breaker_closed", "address": 0, "type": "bool", "function": "coil"},
        {"name": "fan_running", "address": 9, "type": "bool", "function": "coil"},
        {"name": "trip", "address": 1500, "type": "bool", "function": "discrete"},
        {"name": "power", "address": 0, "type": "f32"}]})
    reqs = {r.function.value: r for r in plan_reads(p)}
    assert (reqs["coil"].address, reqs["coil"].count) == (0, 10)
    bits = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert {k: r.value for k, r in request_readings(p, reqs["coil"], bits).items()} == {
        "breaker_closed": 1.0, "fan_running": 1.0}
    wide = p.model_copy(update={"max_gap": 2000})
    assert [r.function.value for r in plan_reads(wide)].count("coil") == 1  # 2000 bits fit one FC01 read


def test_one_field_per_request_quirk() -> None:
    p = PROFILES["cems-das"].model_copy(update={"one_field_per_request": True})
    assert len(plan_reads(p)) == len(p.fields)


def test_string_fields_go_to_identity_not_telemetry() -> None:
    p = PROFILES["cems-das"]
    req = next(r for r in plan_reads(p) if any(f.name == "das_model" for f in r.fields))
    regs = registers_for(p, req.address, req.count, {"das_model": encode_string("HJ212-DAS v2.1", 8)})
    assert "das_model" not in request_readings(p, req, regs)
    assert request_texts(p, req, regs) == {"das_model": "HJ212-DAS v2.1"}
