"""Register codec: every type in every word/byte order, against vectors computed by hand."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alumon.codec import (
    NUMERIC_TYPES,
    DataType,
    DecodeError,
    WordOrder,
    decode,
    decode_string,
    encode,
    encode_string,
    register_count,
)

RANGES = {
    DataType.U16: st.integers(0, 2**16 - 1), DataType.I16: st.integers(-(2**15), 2**15 - 1),
    DataType.U32: st.integers(0, 2**32 - 1), DataType.I32: st.integers(-(2**31), 2**31 - 1),
    DataType.U64: st.integers(0, 2**64 - 1), DataType.I64: st.integers(-(2**63), 2**63 - 1),
    DataType.F32: st.floats(width=32, allow_nan=False), DataType.F64: st.floats(allow_nan=False),
    DataType.BITFIELD: st.integers(0, 2**16 - 1), DataType.BOOL: st.integers(0, 1),
}


@pytest.mark.parametrize("data_type", sorted(NUMERIC_TYPES))
@pytest.mark.parametrize("order", list(WordOrder))
def test_round_trip(data_type: DataType, order: WordOrder) -> None:
    @given(RANGES[data_type])
    def check(value: float) -> None:
        regs = encode(value, data_type, order)
        assert len(regs) == register_count(data_type)
        assert all(0 <= r <= 0xFFFF for r in regs)
        back = decode(regs, data_type, order)
        assert back == value or (math.isinf(value) and back == value)

    check()


def test_float32_vector_from_standards_md() -> None:
    # standards.md §7.4: 13 012.5 is 0x464B 0x5200 in ABCD and 0x5200 0x464B in CDAB.
    assert encode(13012.5, DataType.F32, WordOrder.ABCD) == [0x464B, 0x5200]
    assert encode(13012.5, DataType.F32, WordOrder.CDAB) == [0x5200, 0x464B]
    assert encode(13012.5, DataType.F32, WordOrder.BADC) == [0x4B46, 0x0052]
    assert encode(13012.5, DataType.F32, WordOrder.DCBA) == [0x0052, 0x4B46]
    assert decode([0x5200, 0x464B], DataType.F32, WordOrder.CDAB) == 13012.5


def test_u32_word_swap_by_hand() -> None:
    # 123 456 789 = 0x075BCD15: high word 0x075B, low word 0xCD15; CDAB puts the low word first.
    assert decode([0xCD15, 0x075B], DataType.U32, WordOrder.CDAB) == 123_456_789
    assert decode([0x075B, 0xCD15], DataType.U32, WordOrder.ABCD) == 123_456_789


def test_f64_and_i16_by_hand() -> None:
    words = list(struct.unpack(">4H", struct.pack(">d", 1234567.875)))
    assert decode(words, DataType.F64) == 1234567.875
    assert decode(list(reversed(words)), DataType.F64, WordOrder.CDAB) == 1234567.875
    assert decode([0xFFFE], DataType.I16) == -2


def test_wrong_count_and_out_of_range_registers() -> None:
    with pytest.raises(DecodeError, match="needs 2 registers, got 1"):
        decode([1], DataType.F32)
    with pytest.raises(DecodeError, match=r"outside 0\.\.65535"):
        decode([70000], DataType.U16)


def test_string_two_characters_per_register_padding_stripped() -> None:
    # "SDM630" = 0x5344 0x4D36 0x3330, then NUL padding; BADC swaps the two characters of each register.
    assert encode_string("SDM630", 4) == [0x5344, 0x4D36, 0x3330, 0x0000]
    assert decode_string([0x5344, 0x4D36, 0x3330, 0x0000]) == "SDM630"
    assert decode_string([0x4453, 0x364D, 0x3033, 0x2020], WordOrder.BADC) == "SDM630"
    with pytest.raises(DecodeError, match="not ASCII"):
        decode_string([0xFFFE])
    with pytest.raises(ValueError, match="set by its field"):
        register_count(DataType.STRING)
