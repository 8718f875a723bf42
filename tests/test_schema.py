"""Line protocol encoding, checked against the real influxd."""

from __future__ import annotations

import pytest

from alumon import schema
from alumon.influx import InfluxClient


def test_formats_and_escapes() -> None:
    ln = schema.line("m x", {"b": "has space,comma=eq", "a": "1", "empty": ""},
                     {"f": 1.5, "i": 3, "flag": True, "s": 'say "hi" \\ ok', "none": None}, 1000)
    assert ln == ('m\\ x,a=1,b=has\\ space\\,comma\\=eq f=1.5,i=3i,flag=true,s="say \\"hi\\" \\\\ ok" 1000')


def test_refusals() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        schema.line("m", {}, {"x": None}, 0)
    with pytest.raises(ValueError, match="NaN"):
        schema.line("m", {}, {"x": float("nan")}, 0)


def test_round_trip_through_influxd(influx_db: InfluxClient) -> None:
    text = 'quoted "text" with \\ backslash, comma=and equals'
    fields: dict[str, schema.FieldValue | None] = {"value": 1.25, "unit": text, "seq": 9, "historical": False}
    influx_db.write_lines([schema.line("telemetry", {"site": "gx demo", "device": "a,b", "quantity": "k=v"},
                                   fields, 1_700_000_000_000)])
    (series,) = influx_db.query('SELECT value, unit, seq, historical, site, device, quantity FROM telemetry')
    (row,) = series["values"]
    assert row == [1_700_000_000_000, 1.25, text, 9, False, "gx demo", "a,b", "k=v"]
