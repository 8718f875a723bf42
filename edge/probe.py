"""``alumon edge probe``: read raw registers and show them decoded in every type and word/byte order, marking
the interpretations inside an expected range. The commissioning answer to "my float looks like garbage"."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from alumon.codec import BIT_TYPES, DataType, DecodeError, WordOrder, decode, decode_string, register_count
from alumon.config import Device
from alumon.profiles import RegisterFunction
from edge.lines import build_lines
from edge.plan import ReadRequest

NUMBER_TYPES = [t for t in DataType if t not in BIT_TYPES and t is not DataType.STRING]


@dataclass(frozen=True)
class Interpretation:
    offset: int  # register offset from the first one read
    data_type: DataType
    order: WordOrder
    value: float | int | str
    in_range: bool


def interpretations(registers: list[int], expect: tuple[float, float] | None) -> list[Interpretation]:
    out: list[Interpretation] = []
    for data_type in NUMBER_TYPES:
        n = register_count(data_type)
        orders = [WordOrder.ABCD, WordOrder.BADC] if n == 1 else list(WordOrder)
        for offset in range(0, len(registers) - n + 1):
            for order in orders:
                try:
                    value = decode(registers[offset:offset + n], data_type, order)
                except DecodeError:
                    continue
                ok = (expect is not None and value == value and expect[0] <= float(value) <= expect[1])
                out.append(Interpretation(offset, data_type, order, value, ok))
    for order in (WordOrder.ABCD, WordOrder.BADC):  # nameplates, serial numbers, firmware versions
        with contextlib.suppress(DecodeError):
            out.append(Interpretation(0, DataType.STRING, order, decode_string(registers, order), False))
    return out


def parse_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("..")
    if not sep:
        raise ValueError(f"expected MIN..MAX, got {text!r}")
    a, b = float(lo), float(hi)
    if a > b:
        raise ValueError(f"MIN {a} is larger than MAX {b}")
    return a, b


def read_raw(device: Device, function: RegisterFunction, address: int, count: int) -> list[int]:
    """One read through the same line code the edge polls with (any transport); raises ReadFailure."""

    async def once() -> list[int]:
        line = build_lines([device])[device.id]
        try:
            async with line.lock:
                return await line.read(ReadRequest(function, address, count, ()), device)
        finally:
            line.close()

    return asyncio.run(once())
