"""Contract 2: device profiles, the register map of a meter model (YAML, validated by pydantic).

Addresses are **0-based protocol addresses** (what goes on the wire, e.g. SDM630 import kWh = 0x0048).
A profile written from a data sheet that numbers registers from 1 (30073, 40011, ...) sets
``address_base: 1``; the loader subtracts one, so the rest of the code only ever sees wire addresses.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alumon.codec import INTEGER_TYPES, DataType, WordOrder, register_count

PROFILE_SCHEMA_VERSION = 1
MAX_REGISTERS_PER_READ = 125  # Modbus application protocol v1.1b3, §6.3/§6.4


def counter_modulus(rollover: int | None, registers: int) -> int:
    """Raw value at which an integer counter wraps: the meter's configured maximum, else its register width."""
    return rollover if rollover is not None else 1 << (16 * registers)


class RegisterFunction(StrEnum):
    HOLDING = "holding"  # FC03
    INPUT = "input"  # FC04


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
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RegisterField:
        if self.rollover is not None and self.kind is not Kind.COUNTER:
            raise ValueError(f"{self.name}: `rollover` illegal with `kind: {self.kind.value}`")
        if self.kind is Kind.COUNTER and self.type not in INTEGER_TYPES and self.rollover is not None:
            raise ValueError(f"{self.name}: `rollover` illegal with `type: {self.type.value}` (floats do not wrap)")
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError(f"{self.name}: `range` must be [min, max] with min < max")
        return self

    @property
    def count(self) -> int:
        return register_count(self.type)

    @property
    def modulus(self) -> int:
        return counter_modulus(self.rollover, self.count)

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
        spans = sorted(
            (self.function_of(f).value, self.wire_address(f), self.wire_address(f) + f.count, f.name)
            for f in self.fields
        )
        for (fa, _, end_a, name_a), (fb, start_b, _, name_b) in itertools.pairwise(spans):
            if fa == fb and start_b < end_a:
                raise ValueError(f"fields {name_a!r} and {name_b!r} overlap in {fa} registers")
        for f in self.fields:
            if self.wire_address(f) < 0 or self.wire_address(f) + f.count > 65536:
                raise ValueError(f"{f.name}: address outside the register space for address_base {self.address_base}")
        return self

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
