"""Contract 2: device profiles, the register map of a meter model (YAML, validated by pydantic).

Addresses are **0-based protocol addresses** (what goes on the wire, e.g. SDM630 import kWh = 0x0048).
A profile written from a data sheet that numbers registers from 1 (30073, 40011, ...) sets
``address_base: 1``; the loader subtracts one, so the rest of the code only ever sees wire addresses.

Validation follows Home Assistant's modbus integration: a key that makes no sense with another is refused
naming both (``rollover`` with ``kind: gauge``, ``order: CDAB`` with a one-register type, ``function: coil``
with ``type: f32`` ...), as are overlapping fields and a ``count`` that disagrees with the type.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alumon.codec import BIT_TYPES, INTEGER_TYPES, DataType, WordOrder, register_count

PROFILE_SCHEMA_VERSION = 1
MAX_REGISTERS_PER_READ = 125  # Modbus application protocol v1.1b3, §6.3/§6.4 (FC03/FC04)
MAX_BITS_PER_READ = 2000  # same, §6.1/§6.2 (FC01/FC02)
WORD_SWAPS = frozenset({WordOrder.CDAB, WordOrder.DCBA})


def counter_modulus(rollover: int | None, registers: int) -> int:
    """Raw value at which an integer counter wraps: the meter's configured maximum, else its register width."""
    return rollover if rollover is not None else 1 << (16 * registers)


class RegisterFunction(StrEnum):
    HOLDING = "holding"  # FC03
    INPUT = "input"  # FC04
    COIL = "coil"  # FC01
    DISCRETE = "discrete"  # FC02

    @property
    def is_bits(self) -> bool:
        return self in (RegisterFunction.COIL, RegisterFunction.DISCRETE)


_ONE_REGISTER = {DataType.U16, DataType.I16, DataType.BITFIELD}


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterField(Strict):
    """One quantity in the register map."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType
    function: RegisterFunction | None = None  # None: the profile default
    order: WordOrder | None = None  # None: the profile default
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    kind: Kind = Kind.GAUGE
    rollover: int | None = None  # counters: raw value at which the meter wraps (default 2**bits)
    range: tuple[float, float] | None = None  # plausible engineering range; outside -> quality out_of_range
    count: Annotated[int, Field(ge=1, le=MAX_REGISTERS_PER_READ)] | None = None  # registers; required for strings
    bit: Annotated[int, Field(ge=0, le=15)] | None = None  # bitfield: publish this one bit (0 = least significant)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RegisterField:
        for problem in self._illegal_combinations():
            raise ValueError(f"{self.name}: {problem}")
        return self

    def _illegal_combinations(self) -> list[str]:
        t = f"`type: {self.type.value}`"
        problems = []
        if self.rollover is not None and self.kind is not Kind.COUNTER:
            problems.append(f"`rollover` illegal with `kind: {self.kind.value}`")
        if self.rollover is not None and self.type not in INTEGER_TYPES:
            problems.append(f"`rollover` illegal with {t} (only integer counters wrap)")
        if self.kind is Kind.COUNTER and self.type in (DataType.STRING, DataType.BOOL, DataType.BITFIELD):
            problems.append(f"`kind: counter` illegal with {t}")
        if self.range is not None and self.range[0] >= self.range[1]:
            problems.append("`range` must be [min, max] with min < max")
        if self.type is DataType.STRING:
            if self.count is None:
                problems.append(f"{t} needs `count` (its length in registers)")
            for key, default in (("scale", 1.0), ("offset", 0.0)):
                if getattr(self, key) != default:
                    problems.append(f"`{key}` illegal with {t}")
            if self.range is not None:
                problems.append(f"`range` illegal with {t}")
        elif self.count is not None and self.count != register_count(self.type):
            problems.append(f"`count: {self.count}` disagrees with {t} ({register_count(self.type)} registers)")
        if self.bit is not None and self.type is not DataType.BITFIELD:
            problems.append(f"`bit` illegal with {t} (only with `type: bitfield`)")
        if self.order in WORD_SWAPS and self.type in {DataType.STRING, DataType.BOOL} | _ONE_REGISTER:
            problems.append(f"`order: {self.order.value}` illegal with {t} (no words to swap)")
        if self.function is not None and self.function.is_bits != (self.type in BIT_TYPES):
            problems.append(f"`function: {self.function.value}` illegal with {t}"
                            + (" (coils and discrete inputs are `type: bool`)" if self.function.is_bits
                               else " (`bool` is read from coils or discrete inputs)"))
        return problems

    @property
    def width(self) -> int:
        """Registers (or bits, for coils) the field occupies."""
        return self.count if self.count is not None else register_count(self.type)

    @property
    def modulus(self) -> int:
        return counter_modulus(self.rollover, self.width)

    def to_engineering(self, raw: int | float) -> float:
        return float(raw) * self.scale + self.offset


class DeviceProfile(Strict):
    schema_version: Literal[1] = 1
    profile: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    description: str = ""
    source: str = ""  # where the register map comes from (data sheet, URL, edition)
    function: RegisterFunction = RegisterFunction.HOLDING
    order: WordOrder = WordOrder.ABCD
    address_base: Literal[0, 1] = 0
    max_registers_per_read: Annotated[int, Field(ge=1, le=MAX_REGISTERS_PER_READ)] = MAX_REGISTERS_PER_READ
    max_gap: Annotated[int, Field(ge=0, le=MAX_REGISTERS_PER_READ)] = 10  # registers read-and-discarded to merge
    one_field_per_request: bool = False  # quirk of some meters/PLCs: they refuse reads spanning two fields
    fields: Annotated[list[RegisterField], Field(min_length=1)]

    @field_validator("fields")
    @classmethod
    def _unique_names(cls, fields: list[RegisterField]) -> list[RegisterField]:
        seen: set[str] = set()
        for f in fields:
            if f.name in seen:
                raise ValueError(f"duplicate field name {f.name!r}")
            seen.add(f.name)
        return fields

    @model_validator(mode="after")
    def _no_overlap(self) -> DeviceProfile:
        for f in self.fields:
            function = self.function_of(f)
            if f.function is None and function.is_bits != (f.type in BIT_TYPES):
                raise ValueError(f"{f.name}: profile default `function: {function.value}` illegal with "
                                 f"`type: {f.type.value}`; set `function` on the field")
            if f.order is None and self.order in WORD_SWAPS and f.type is DataType.STRING:
                raise ValueError(f"{f.name}: profile default `order: {self.order.value}` illegal with "
                                 "`type: string`; set `order: ABCD` or `BADC` on the field")
            if self.wire_address(f) < 0 or self.wire_address(f) + f.width > 65536:
                raise ValueError(f"{f.name}: address outside the register space for address_base {self.address_base}")
        # Fields naming bits of one status word share its register; anything else sharing a register is a mistake.
        spans: dict[tuple[str, int, int], str] = {}
        for f in self.fields:
            key = (self.function_of(f).value, self.wire_address(f), self.wire_address(f) + f.width)
            if key in spans:
                if f.type is DataType.BITFIELD and self.field(spans[key]).type is DataType.BITFIELD:
                    continue
                raise ValueError(f"fields {spans[key]!r} and {f.name!r} overlap in {key[0]} registers")
            spans[key] = f.name
        for ((fa, _, end_a), name_a), ((fb, start_b, _), name_b) in itertools.pairwise(sorted(spans.items())):
            if fa == fb and start_b < end_a:
                raise ValueError(f"fields {name_a!r} and {name_b!r} overlap in {fa} registers")
        return self

    def max_per_read(self, function: RegisterFunction) -> int:
        return MAX_BITS_PER_READ if function.is_bits else self.max_registers_per_read

    def wire_address(self, f: RegisterField) -> int:
        return f.address - self.address_base

    def function_of(self, f: RegisterField) -> RegisterFunction:
        return f.function or self.function

    def order_of(self, f: RegisterField) -> WordOrder:
        return f.order or self.order

    def field(self, name: str) -> RegisterField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def load_profile(path: Path) -> DeviceProfile:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return DeviceProfile.model_validate(data)


def load_profiles(directory: Path) -> dict[str, DeviceProfile]:
    """All ``*.yaml`` profiles in a directory, keyed by their ``profile`` name."""
    profiles: dict[str, DeviceProfile] = {}
    for path in sorted(directory.glob("*.yaml")):
        p = load_profile(path)
        profiles[p.profile] = p
    return profiles
