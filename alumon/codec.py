"""Modbus register codec: values <-> 16-bit registers in every data type and word/byte order.

We own this instead of using pymodbus' ``convert_*`` helpers: pymodbus has no per-byte swap and its API
changed across 3.x minor releases (shared/anchors.md §10). The edge decodes with it, the simulator encodes
with it, so both sides of a test agree only if the codec is right.

Order vocabulary (one for the whole project, as printed on meter data sheets), bytes of a 32-bit value
A (most significant) .. D (least significant):

* ``ABCD``  big-endian words, big-endian bytes (Modbus default, pymodbus default)
* ``CDAB``  word swap (common on Chinese meters and many PLCs)
* ``BADC``  byte swap inside each word
* ``DCBA``  both (fully little-endian)

For 64-bit types the same two independent swaps apply: reverse the word order, swap bytes in each word.
"""

from __future__ import annotations

import struct
from enum import StrEnum


class DataType(StrEnum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    BITFIELD = "bitfield"  # one 16-bit status word, read as u16 (optionally one bit of it: see RegisterField.bit)
    BOOL = "bool"  # one coil or discrete input (FC01/FC02): 0 or 1
    STRING = "string"  # ASCII, two characters per register, NUL/space padded; length set by the field's count


class WordOrder(StrEnum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


# struct format (big-endian) and register count per type: the types-as-data table.
_FORMATS: dict[DataType, tuple[str, int]] = {
    DataType.U16: (">H", 1),
    DataType.I16: (">h", 1),
    DataType.U32: (">I", 2),
    DataType.I32: (">i", 2),
    DataType.U64: (">Q", 4),
    DataType.I64: (">q", 4),
    DataType.F32: (">f", 2),
    DataType.F64: (">d", 4),
    DataType.BITFIELD: (">H", 1),
    DataType.BOOL: (">H", 1),  # a bit read by FC01/02 arrives as 0/1, one "register" per bit
}

INTEGER_TYPES = frozenset({DataType.U16, DataType.I16, DataType.U32, DataType.I32, DataType.U64, DataType.I64,
                           DataType.BITFIELD, DataType.BOOL})
NUMERIC_TYPES = frozenset(_FORMATS)
BIT_TYPES = frozenset({DataType.BOOL})  # the only type coils and discrete inputs carry


class DecodeError(ValueError):
    """Registers that cannot be decoded as asked (wrong count, value outside 0..65535)."""


def register_count(data_type: DataType) -> int:
    """Registers a fixed-size type occupies (a string's length is the field's own ``count``)."""
    if data_type is DataType.STRING:
        raise ValueError("a string's register count is set by its field, not by its type")
    return _FORMATS[data_type][1]


def _swaps(order: WordOrder) -> tuple[bool, bool]:
    """(reverse word order, swap bytes within each word)."""
    return order in (WordOrder.CDAB, WordOrder.DCBA), order in (WordOrder.BADC, WordOrder.DCBA)


def _reorder(registers: list[int], order: WordOrder) -> list[int]:
    """Map between wire order and ABCD; the transform is its own inverse."""
    reverse_words, swap_bytes = _swaps(order)
    regs = list(reversed(registers)) if reverse_words else list(registers)
    if swap_bytes:
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs


def decode(registers: list[int], data_type: DataType, order: WordOrder = WordOrder.ABCD) -> int | float:
    """Decode registers as read from the wire into a Python number (int for integer types)."""
    fmt, count = _FORMATS[data_type]
    if len(registers) != count:
        raise DecodeError(f"{data_type.value} needs {count} registers, got {len(registers)}")
    for r in registers:
        if not 0 <= r <= 0xFFFF:
            raise DecodeError(f"register value {r} outside 0..65535")
    raw = struct.pack(f">{count}H", *_reorder(registers, order))
    value: int | float = struct.unpack(fmt, raw)[0]
    return value


def encode(value: int | float, data_type: DataType, order: WordOrder = WordOrder.ABCD) -> list[int]:
    """Encode a number into registers in wire order (the inverse of ``decode``)."""
    fmt, count = _FORMATS[data_type]
    native: int | float = int(value) if data_type in INTEGER_TYPES else float(value)
    regs = list(struct.unpack(f">{count}H", struct.pack(fmt, native)))
    return _reorder(regs, order)


def decode_string(registers: list[int], order: WordOrder = WordOrder.ABCD) -> str:
    """ASCII text, two characters per register (first character in the high byte unless byte-swapped);
    trailing NULs and spaces are padding. Non-ASCII bytes raise DecodeError: garbage must not pass as a name."""
    raw = struct.pack(f">{len(registers)}H", *_reorder(list(registers), order)) if registers else b""
    try:
        return raw.rstrip(b"\x00 ").decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not ASCII text: {raw!r}") from exc


def encode_string(text: str, count: int, order: WordOrder = WordOrder.ABCD) -> list[int]:
    raw = text.encode("ascii").ljust(2 * count, b"\x00")[:2 * count]
    return _reorder(list(struct.unpack(f">{count}H", raw)), order)
