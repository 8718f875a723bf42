"""Where ``alumon replay`` reads recorded readings from: a CSV file or the InfluxDB ``telemetry`` measurement.

Both yield ``ReadingBatch``es: columns in time order, each reading named by its index in the list of paths
analytics uses (readings of other paths are counted, then dropped). The CSV is parsed by Apache Arrow's
streaming reader (millions of rows per second); when Arrow refuses a file, the pure-Python ``read_csv``
finds the first bad line and says what is wrong with it.

CSV columns: ``time,device,quantity,value,quality[,flags]``; time ISO 8601 with a UTC offset (``Z`` or
``+08:00``), value empty when the device gave none, quality as in the telemetry contract, flags the edge's
counter flags (``rollover``, ``reset``; several separated by ``;``) so a replayed counter wraps as it did live.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from alumon.influx import InfluxClient
from alumon.schema import TELEMETRY
from alumon.telemetry import Quality, parse_utc_ms
from analytics.series import step_of, step_of_text

CSV_COLUMNS = ("time", "device", "quantity", "value", "quality")
FLAGS_COLUMN = "flags"
BLOCK_BYTES = 4 << 20
INFLUX_CHUNK_MS = 86_400_000  # one query per day keeps the response small


class ReplayInputError(ValueError):
    pass


@dataclass(frozen=True)
class ReadingBatch:
    """Readings analytics uses, in time order. ``rows`` counts every row read, used or not."""

    t_ms: npt.NDArray[np.int64]
    path: npt.NDArray[np.int32]  # index into the paths the source was opened with
    value: npt.NDArray[np.float64]  # NaN: no value
    good: npt.NDArray[np.bool_]
    step: npt.NDArray[np.int8]
    rows: int


class PathIndex:
    """Maps (device, quantity) to the index of ``device.quantity`` in ``paths``, -1 when analytics ignores it."""

    def __init__(self, paths: Sequence[str]):
        self.index = {tuple(p.split(".", 1)): i for i, p in enumerate(paths)}

    def lookup(self, devices: list[str], quantities: list[str]) -> npt.NDArray[np.int32]:
        """A (devices × quantities) table of path indices, for dictionary-encoded columns."""
        table = np.full((len(devices), len(quantities)), -1, dtype=np.int32)
        for i, d in enumerate(devices):
            for j, q in enumerate(quantities):
                table[i, j] = self.index.get((d, q), -1)
        return table

    def of(self, device: str, quantity: str) -> int:
        return self.index.get((device, quantity), -1)


# -- CSV ---------------------------------------------------------------------------------------------------


def read_csv_rows(path: Path) -> Iterator[tuple[int, int, str, str, float | None, Quality, int]]:
    """The reference reader, row by row: (line, t_ms, device, quantity, value, quality, step). Slow; used to
    name the first bad line when the fast reader refuses a file."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        _check_header(header)
        assert header is not None
        has_flags = FLAGS_COLUMN in header
        flags_at = header.index(FLAGS_COLUMN) if has_flags else -1
        for n, row in enumerate(reader, start=2):
            try:
                if len(row) < len(header):
                    raise ValueError(f"{len(row)} columns, the header has {len(header)}")
                value = float(row[3]) if row[3] != "" else None
                yield (n, parse_utc_ms(row[0]), row[1], row[2], value, Quality(row[4] or "good"),
                       step_of_text(row[flags_at]) if has_flags else 0)
            except ValueError as exc:
                raise ReplayInputError(f"line {n}: {exc}") from exc


def _check_header(header: Sequence[str] | None) -> None:
    if header is None or tuple(header[:5]) != CSV_COLUMNS:
        raise ReplayInputError(f"CSV header must start with {','.join(CSV_COLUMNS)}, got {header}")


def open_arrow_csv(path: Path) -> pacsv.CSVStreamingReader:
    """Arrow's streaming reader over the CSV, block by block, with the columns typed as the contract says."""
    with path.open("rb") as fh:
        header = next(csv.reader([fh.readline().decode("utf-8-sig")]), [])
    _check_header(header)
    text = pa.dictionary(pa.int32(), pa.string())
    types: dict[str, Any] = {"time": pa.timestamp("ms", tz="UTC"), "device": text, "quantity": text,
                             "value": pa.float64(), "quality": text}
    if FLAGS_COLUMN in header:
        types[FLAGS_COLUMN] = text
    convert = pacsv.ConvertOptions(column_types=types, include_columns=list(types), strings_can_be_null=False,
                                   null_values=[""], quoted_strings_can_be_null=False)
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES), convert_options=convert)


def csv_batches(path: Path, paths: Sequence[str]) -> Iterator[ReadingBatch]:
    """Stream the CSV in blocks of about ``BLOCK_BYTES``."""
    index = PathIndex(paths)
    try:
        for record_batch in open_arrow_csv(path):
            yield _csv_batch(record_batch, index)
    except (pa.ArrowInvalid, ValueError) as exc:
        if isinstance(exc, ReplayInputError):
            raise
        for _ in read_csv_rows(path):  # raises on the first bad line
            pass
        raise ReplayInputError(str(exc)) from exc


def csv_time_span(path: Path) -> tuple[int, int] | None:
    """Times of the first and the last data line (for a progress bar), None when they cannot be read."""
    with path.open("rb") as fh:
        fh.readline()
        first = fh.readline()
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        tail = fh.read().splitlines()
    try:
        return parse_utc_ms(first.decode().split(",", 1)[0]), parse_utc_ms(tail[-1].decode().split(",", 1)[0])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def _dictionary(batch: pa.RecordBatch, name: str) -> tuple[list[str], npt.NDArray[np.int32]]:
    """A dictionary-encoded text column: its distinct values and, per row, the index of its value."""
    column = batch.column(name)
    assert isinstance(column, pa.DictionaryArray)
    return [str(x) for x in column.dictionary.to_pylist()], column.indices.to_numpy(zero_copy_only=False)


def _csv_batch(batch: pa.RecordBatch, index: PathIndex) -> ReadingBatch:
    names = batch.schema.names
    time_col = batch.column("time")
    if time_col.null_count:
        raise ValueError("time is empty")
    t = time_col.cast(pa.int64()).to_numpy()
    devices, dev_idx = _dictionary(batch, "device")
    quantities, qty_idx = _dictionary(batch, "quantity")
    path = index.lookup(devices, quantities)[dev_idx, qty_idx]
    value = batch.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    qualities, q_idx = _dictionary(batch, "quality")
    for q in qualities:
        Quality(q or "good")  # unknown quality -> ValueError -> the slow reader names the line
    good = np.array([q in ("good", "") for q in qualities], dtype=bool)[q_idx] & ~np.isnan(value)
    step = np.zeros(len(t), dtype=np.int8)
    if FLAGS_COLUMN in names:
        flags, f_idx = _dictionary(batch, FLAGS_COLUMN)
        step = np.array([step_of_text(f) for f in flags], dtype=np.int8)[f_idx]
    keep = path >= 0
    return ReadingBatch(t[keep], path[keep], value[keep], good[keep], step[keep], len(t))


# -- InfluxDB -----------------------------------------------------------------------------------------------


def influx_batches(client: InfluxClient, site_id: str, start_ms: int, end_ms: int,
                   paths: Sequence[str]) -> Iterator[ReadingBatch]:
    """The ``telemetry`` points of [start, end), one query per day, merged in time order."""
    index = PathIndex(paths)
    for chunk in range(start_ms, end_ms, INFLUX_CHUNK_MS):
        chunk_end = min(end_ms, chunk + INFLUX_CHUNK_MS)
        series = client.query(
            f"SELECT value, quality, flags FROM {TELEMETRY} WHERE site = '{_quote(site_id)}' "
            f"AND time >= {chunk}ms AND time < {chunk_end}ms GROUP BY device, quantity")
        parts: list[tuple[npt.NDArray[np.int64], int, list[list[Any]]]] = []
        rows = 0
        for s in series:
            values = s.get("values") or []
            rows += len(values)
            i = index.of(s["tags"]["device"], s["tags"]["quantity"])
            if i >= 0:
                parts.append((np.array([v[0] for v in values], dtype=np.int64), i, values))
        if not parts:
            if rows:
                yield _empty_batch(rows)
            continue
        t = np.concatenate([p[0] for p in parts])
        path = np.concatenate([np.full(len(p[0]), p[1], dtype=np.int32) for p in parts])
        value = np.array([np.nan if v[1] is None else v[1] for p in parts for v in p[2]], dtype=np.float64)
        good = np.array([v[2] in (None, "good") for p in parts for v in p[2]], dtype=bool) & ~np.isnan(value)
        step = np.array([step_of(v[3].split(",")) if v[3] else 0 for p in parts for v in p[2]], dtype=np.int8)
        order = np.argsort(t, kind="stable")
        yield ReadingBatch(t[order], path[order], value[order], good[order], step[order], rows)


def _empty_batch(rows: int) -> ReadingBatch:
    return ReadingBatch(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), np.zeros(0, bool),
                        np.zeros(0, np.int8), rows)


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")

