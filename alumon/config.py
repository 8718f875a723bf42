"""Contract 1: the site config, one YAML file per site, validated by pydantic.

``load_site`` returns a fully cross-checked site (profiles resolved, every role bound to a device quantity
that exists, every secret variable present) or raises ``SiteConfigError`` carrying *all* problems found,
each with its key path and YAML line, so ``alumon config check`` can print them in one go.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alumon.profiles import DeviceProfile, Kind, load_profiles

SITE_SCHEMA_VERSION = 1
BUILTIN_PROFILES_DIR = Path(__file__).resolve().parent.parent / "edge" / "profiles"

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
ReadingPath = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*\.[a-z][a-z0-9_]*$")]  # "device.quantity"
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- connections: secrets are never inline, only the *name* of an environment variable -------------------


class MqttConnection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    tls: bool = False
    ca_file: Path | None = None  # None: the system trust store
    cert_file: Path | None = None  # client certificate, when the broker requires one
    key_file: Path | None = None
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30

    @model_validator(mode="after")
    def _tls_keys(self) -> MqttConnection:
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(self, key) is not None and not self.tls:
                raise ValueError(f"`{key}` illegal with `tls: false`")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("`key_file` illegal without `cert_file`")
        return self


class InfluxConnection(Strict):
    """``api: v1`` is InfluxDB 1.x (``/write``, InfluxQL, user/password); ``api: v2`` is InfluxDB 2.x, 3.x or
    Cloud through influxdb-client (``/api/v2/write``, token, org, bucket). Both write the same line protocol."""

    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "alumon"  # v1
    username_env: EnvName | None = None  # v1
    password_env: EnvName | None = None  # v1
    org: str | None = None  # v2
    bucket: str | None = None  # v2
    token_env: EnvName | None = None  # v2
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    @model_validator(mode="after")
    def _api_keys(self) -> InfluxConnection:
        v1_only, v2_only = ("username_env", "password_env"), ("org", "bucket", "token_env")
        for key in v2_only if self.api == "v1" else v1_only:
            if getattr(self, key) is not None:
                raise ValueError(f"`{key}` illegal with `api: {self.api}`")
        if self.api == "v2":
            for key in ("org", "bucket"):
                if getattr(self, key) is None:
                    raise ValueError(f"`{key}` required with `api: v2`")
        return self


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class SmtpConnection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    security: SmtpSecurity = SmtpSecurity.NONE
    ca_file: Path | None = None  # the CA that signed the server's certificate; else the system trust store
    sender: str
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0


class Connections(Strict):
    mqtt: MqttConnection = MqttConnection()
    influxdb: InfluxConnection = InfluxConnection()
    smtp: SmtpConnection


# --- devices -----------------------------------------------------------------------------------------------


class TcpTransport(Strict):
    """Modbus TCP (MBAP framing): the device or gateway gets a connection of its own."""

    type: Literal["tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502

    @property
    def line(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class RtuOverTcpTransport(Strict):
    """RTU frames tunnelled through a serial server / DTU: one TCP socket, behind it one RS-485 bus."""

    type: Literal["rtu_over_tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    baudrate: Annotated[int, Field(ge=300, le=921600)] = 9600  # of the bus behind the server: `edge plan` only

    @property
    def line(self) -> str:
        return f"rtu+tcp://{self.host}:{self.port}"


class RtuTransport(Strict):
    """Modbus RTU on a local serial port (RS-485 adapter)."""

    type: Literal["rtu"]
    serial_port: str  # e.g. /dev/ttyUSB0
    baudrate: Annotated[int, Field(ge=300, le=921600)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def line(self) -> str:
        return f"rtu://{self.serial_port}"


Transport = Annotated[TcpTransport | RtuOverTcpTransport | RtuTransport, Field(discriminator="type")]


class Device(Strict):
    id: Identifier
    profile: str
    transport: Transport
    unit_id: Annotated[int, Field(ge=1, le=255)] = 1
    poll_interval_s: Annotated[float, Field(gt=0, le=86400)] = 1.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    inter_request_delay_s: Annotated[float, Field(ge=0, le=5)] = 0.0  # quiet time after each request (slow devices)
    pause_after_connect_s: Annotated[float, Field(ge=0, le=10)] = 0.0  # gateways that drop the first request
    # Circuit breaker: after this many failed polls in a row the device is only probed, with back-off.
    failures_to_open: Annotated[int, Field(ge=1, le=100)] = 3
    backoff_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0  # worst-case lag to notice a device is back
    description: str = ""

    @property
    def shares_line(self) -> bool:
        """Serial buses (local or tunnelled) are half-duplex: their devices take turns on one queue."""
        return not isinstance(self.transport, TcpTransport)


# --- process units: which reading plays which role ---------------------------------------------------------


class Potline(Strict):
    """An electrolytic-aluminium potline (one rectifier series)."""

    id: Identifier
    kind: Literal["potline"]
    name: str = ""
    cells: Annotated[int, Field(ge=1, le=1000)]
    current_efficiency: Annotated[float, Field(gt=0.5, le=1.0)] = 0.93
    capacity_t_per_year: Annotated[float, Field(gt=0)]
    ac_energy: ReadingPath  # counter, rectifier AC side (kWh or MWh)
    metal_tapped: ReadingPath  # counter, weighed aluminium liquid (t)
    line_current: ReadingPath | None = None  # kA
    line_voltage: ReadingPath | None = None  # V, series voltage
    auxiliary_energy: list[ReadingPath] = []  # counters added for 铝液综合交流电耗


class EnergyCarrier(Strict):
    reading: ReadingPath  # counter
    coefficient: str  # key in limits `energy.coefficients_kgce`, e.g. natural_gas_gasfield
    exported: bool = False  # energy sold out of the boundary is deducted
    # process: counts in 工艺能耗 and 综合能耗; auxiliary (offices, workshops, transport): 综合能耗 only
    scope: Literal["process", "auxiliary"] = "process"


class AluminaRefinery(Strict):
    id: Identifier
    kind: Literal["alumina_refinery"]
    name: str = ""
    process: Literal["bayer", "other_process"] = "bayer"
    capacity_t_per_year: Annotated[float, Field(gt=0)]
    alumina_output: ReadingPath  # counter, t
    carriers: Annotated[list[EnergyCarrier], Field(min_length=1)]


class SourceType(StrEnum):
    POTROOM_GAS_TREATMENT = "potroom_gas_treatment"
    ALUMINA_CALCINER = "alumina_calciner"
    ALUMINA_CLINKER_KILN = "alumina_clinker_kiln"
    ANODE_BAKING = "anode_baking"
    CASTHOUSE = "casthouse"


class NoCorrection(Strict):
    type: Literal["none"]


class O2Correction(Strict):
    type: Literal["o2_ref"]
    o2_ref_pct: Annotated[float, Field(ge=0, lt=21)]
    source: str = ""  # the permit or standard clause that sets the reference


class ExcessAirCorrection(Strict):
    type: Literal["excess_air"]
    alpha_ref: Annotated[float, Field(ge=1.0, le=10.0)]
    source: str = ""


Pollutant = Literal["pm", "so2", "nox", "fluoride_as_F"]


class CemsStack(Strict):
    id: Identifier
    kind: Literal["cems_stack"]
    name: str = ""
    source_type: SourceType
    pollutants: Annotated[dict[Pollutant, ReadingPath], Field(min_length=1)]
    units: dict[Pollutant, Literal["mg/m3", "ppm"]] = {}  # per pollutant, default mg/m3 (NOx in ppm is as NO2)
    conditions: Literal["standard", "actual"] = "standard"  # actual: converted with temperature and pressure
    basis: Literal["wet", "dry"] = "wet"  # whether the analyser's values are on wet or dry gas
    o2: ReadingPath | None = None  # % vol
    moisture: ReadingPath | None = None  # % vol, needed when basis is wet
    temperature: ReadingPath | None = None
    pressure: ReadingPath | None = None
    flow: ReadingPath | None = None  # m3/h, standard dry
    flag: ReadingPath | None = None  # the DAS's HJ 212 data flag code (see edge/profiles/cems-das.yaml)
    correction: Annotated[NoCorrection | O2Correction | ExcessAirCorrection,
                          Field(discriminator="type")] = NoCorrection(type="none")

    @model_validator(mode="after")
    def _check(self) -> CemsStack:
        if self.basis == "wet" and self.moisture is None:
            raise ValueError("`basis: wet` needs `moisture` to convert to dry gas")
        for pollutant, unit in self.units.items():
            if unit == "ppm" and pollutant not in ("so2", "nox"):
                raise ValueError(f"`units.{pollutant}: ppm` illegal: only so2 and nox have a molar mass factor")
        if self.conditions == "actual" and (self.temperature is None or self.pressure is None):
            raise ValueError("`conditions: actual` needs `temperature` and `pressure` to convert to standard")
        if isinstance(self.correction, ExcessAirCorrection) and self.o2 is None:
            raise ValueError("`correction: excess_air` needs an `o2` reading")
        if isinstance(self.correction, O2Correction):
            if self.o2 is None:
                raise ValueError("`correction: o2_ref` needs an `o2` reading")
            if self.source_type is SourceType.POTROOM_GAS_TREATMENT:
                # Potroom gas is ~20.6 % O2: (21-ref)/(21-O2) explodes. GB 25465-2010 judges it as measured.
                raise ValueError(
                    "`correction: o2_ref` illegal with `source_type: potroom_gas_treatment` "
                    "(O2 near 21 %: judge as measured, GB 25465-2010)"
                )
        return self


ProcessUnit = Annotated[Potline | AluminaRefinery | CemsStack, Field(discriminator="kind")]


# --- limits overrides, analytics and alert routing --------------------------------------------------------


class LimitOverride(Strict):
    key: Annotated[str, Field(pattern=r"^[a-z0-9_.]+$")]  # dotted path into limits.yaml, e.g. ...al_liquid_ac.level3
    value: float
    source: Annotated[str, Field(min_length=1)]  # who set it: provincial document, permit number, ...
    status: Literal["verified", "to_verify"] = "to_verify"


PeriodWindow = Literal["rolling_24h", "shift", "day", "month", "year"]
ShiftStart = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class AnalyticsSettings(Strict):
    kpi_window_s: Annotated[float, Field(gt=0)] = 3600.0  # the live rolling window the alert rules watch
    period_windows: list[PeriodWindow] = ["rolling_24h", "shift", "day", "month", "year"]
    shifts: Annotated[list[ShiftStart], Field(min_length=1)] = ["00:00", "08:00", "16:00"]  # local start times
    evaluate_every_s: Annotated[float, Field(gt=0, le=3600)] = 10.0  # ≤ 1 h: every hourly mean is closed
    min_completeness: Annotated[float, Field(ge=0, le=1)] = 0.8
    alert_pending_s: Annotated[float, Field(ge=0)] = 60.0


class SpoolFullPolicy(StrEnum):
    DROP_OLDEST = "drop_oldest"  # keep the newest data; counters make the lost interval's total recoverable
    DROP_NEWEST = "drop_newest"  # keep the oldest data; new polls are counted and discarded


class EdgeSettings(Strict):
    """Store-and-forward bounds and pacing of the edge agent."""

    spool_max_messages: Annotated[int, Field(ge=100)] = 1_000_000  # ~1.3 GB of 100-reading messages
    spool_max_age_h: Annotated[float, Field(gt=0)] = 720.0  # older messages are dropped (counted) as worthless
    spool_full: SpoolFullPolicy = SpoolFullPolicy.DROP_OLDEST
    replay_max_per_s: Annotated[float, Field(gt=0)] = 500.0  # backlog after an outage is paced, not dumped
    # Acknowledged messages kept this long, sent again if the broker loses its state (0: delete on PUBACK).
    keep_delivered_s: Annotated[float, Field(ge=0, le=86_400)] = 3600.0
    metrics_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0


class BufferFullPolicy(StrEnum):
    BLOCK = "block"  # stop acknowledging: the broker and then the edge spools hold the data (nothing lost)
    DROP_OLDEST = "drop_oldest"  # keep the newest data; dropped points are counted
    DROP_NEWEST = "drop_newest"  # keep the oldest data; refused points are counted


class IngestSettings(Strict):
    """Batching, the disk buffer that carries InfluxDB outages, shutdown and self-metrics of ``alumon ingest``."""

    # Lines per InfluxDB write: 10 000 took 1.3 times the readings/s of 5000 (bench/ingest_throughput.py).
    max_batch_points: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    max_batch_wait_ms: Annotated[float, Field(ge=0, le=5000)] = 50.0  # fill a batch this long before writing
    max_pending_messages: Annotated[int, Field(ge=10)] = 20_000  # received, not yet written or buffered
    buffer_max_mb: Annotated[float, Field(gt=0)] = 2048.0  # disk buffer while InfluxDB is down or slow
    buffer_full: BufferFullPolicy = BufferFullPolicy.BLOCK
    retry_max_s: Annotated[float, Field(gt=0, le=300)] = 10.0  # back-off cap between write attempts
    shutdown_deadline_s: Annotated[float, Field(gt=0, le=300)] = 5.0  # SIGTERM: flush this long, then exit
    shared_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] | None = None  # $share group (scale-out)
    metrics_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    prometheus_port: Annotated[int, Field(ge=0, le=65535)] | None = None  # None: no endpoint; 0: any free port
    prometheus_bind: str = "127.0.0.1"


class ScorecardInputs(Strict):
    """Readings the seed scorecard needs beyond the process units (all counters)."""

    electricity_total: list[ReadingPath] = []  # every electricity supply into the site
    electricity_non_fossil: list[ReadingPath] = []  # the part from hydro, wind, solar, nuclear (metered or PPA)
    red_mud_produced: ReadingPath | None = None  # new red mud, t
    red_mud_utilised: ReadingPath | None = None  # of which utilised, t


EmailAddress = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
Language = Literal["zh", "en"]
SeverityName = Literal["info", "warning", "critical"]
AudienceName = Literal["engineers", "regulators", "both"]


class Recipient(Strict):
    address: EmailAddress
    language: Language | None = None  # None: the site's alerts.language
    min_severity: SeverityName = "info"  # e.g. a duty phone that only wants critical notices


class LimitRef(Strict):
    """Where a rule's threshold comes from; every kind resolves to a value with its source.

    ``gb21346``: GB 21346-2022 level of ``indicator`` (``{process}`` is the refinery's process);
    ``ndrc``: the NDRC ``benchmark`` or ``baseline``; ``ultra_low``: the ultra-low limit of ``pollutant``
    (default: the pollutant the KPI is named after); ``table``: any ``key`` of limits.yaml with its ``table``;
    ``setting``: a plant's own threshold ``value``, which must name its ``source``."""

    kind: Literal["gb21346", "ndrc", "ultra_low", "table", "setting"]
    indicator: str | None = None
    level: Annotated[int, Field(ge=1, le=3)] | None = None
    product: str = "electrolytic_aluminium"
    which: Literal["benchmark", "baseline"] | None = None
    pollutant: str | None = None
    key: str | None = None
    table: str | None = None
    name: str | None = None
    unit: str | None = None
    value: float | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> LimitRef:
        needs = {"gb21346": ("indicator", "level"), "ndrc": ("which",), "ultra_low": (),
                 "table": ("key", "table", "name", "unit"), "setting": ("value", "name", "unit", "source")}
        missing = [k for k in needs[self.kind] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.kind} limit needs {', '.join(missing)}")
        return self


class AlertRuleSpec(Strict):
    """One alert rule. In a site file only ``name`` is required: the entry changes the default rule of that
    name (alumon/data/alert_rules.yaml) or, with every field given, adds a rule."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    enabled: bool = True
    kind: Literal["limit", "data_quality"] = "limit"
    inhibits: bool = True  # a firing data-quality rule suspends the limit rules of its process unit
    kpi: Annotated[str, Field(pattern=r"^[a-z0-9_*]+$")] | None = None  # KPI name; '*' matches any part
    window: str | None = None  # None: the live rolling window (never the day, month, year rows)
    limit: LimitRef | None = None
    reset_ratio: Annotated[float, Field(gt=0, le=1)] = 1.0  # resolves below limit × reset_ratio (hysteresis)
    severity: SeverityName | None = None
    audience: AudienceName | None = None
    pending_s: Annotated[float, Field(ge=0)] | None = None  # None: analytics.alert_pending_s
    min_firing_s: Annotated[float, Field(ge=0)] = 0.0  # an incident lasts at least this long
    resolve_after_s: Annotated[float, Field(ge=0)] = 0.0  # the reset condition must hold this long
    flap_window_s: Annotated[float, Field(ge=0)] = 0.0  # flap damping: within this window ...
    flap_max_changes: Annotated[int, Field(ge=2)] = 4  # ... this many threshold crossings hold the incident open
    min_completeness: Annotated[float, Field(ge=0, le=1)] | None = None  # None: analytics.min_completeness
    description_zh: str | None = None  # ``{pollutant}`` is replaced by the pollutant's name
    description_en: str | None = None


class AlertSettings(Strict):
    """Who is told what, how notices are grouped and repeated, and the site's changes to the default rules."""

    engineers: list[EmailAddress | Recipient] = []
    regulators: list[EmailAddress | Recipient] = []
    language: Language = "zh"  # the default; a recipient may ask for the other one
    group_interval_s: Annotated[float, Field(ge=0, le=3600)] = 30.0  # notices to one recipient within this: one email
    repeat_interval_s: Annotated[float, Field(ge=0)] = 4 * 3600.0  # reminder for a long incident; 0: never
    evidence_hours: Annotated[float, Field(gt=0, le=72)] = 6.0  # history in the chart and CSV of an email
    rules: list[AlertRuleSpec] = []


class SiteInfo(Strict):
    id: Identifier
    name: str
    region: Literal["inland", "coastal"]
    permit_id: str = ""  # 排污许可证编号, shown to regulators
    timezone: str = "Asia/Shanghai"  # calendar day, month, year and shifts are local

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (IANA name, e.g. Asia/Shanghai)") from None
        return v


class SiteConfig(Strict):
    schema_version: Literal[1] = 1
    site: SiteInfo
    connections: Connections
    profiles_dir: Path | None = None  # site-specific profiles, searched before the built-in ones
    devices: Annotated[list[Device], Field(min_length=1)]
    process_units: list[ProcessUnit] = []
    limits_overrides: list[LimitOverride] = []
    analytics: AnalyticsSettings = AnalyticsSettings()
    alerts: AlertSettings = AlertSettings()
    edge: EdgeSettings = EdgeSettings()
    ingest: IngestSettings = IngestSettings()
    scorecard: ScorecardInputs = ScorecardInputs()

    def device(self, device_id: str) -> Device:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


# --- loading with every problem reported by key path and line ----------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. devices[2].timeout_s
    message: str
    line: int | None = None  # 1-based line in the site file

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}"


class SiteConfigError(Exception):
    def __init__(self, file: Path, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__(f"{file}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Site:
    """A validated site with its resolved device profiles."""

    config: SiteConfig
    profiles: dict[str, DeviceProfile]  # by device id
    path: Path

    @property
    def id(self) -> str:
        return self.config.site.id

    def profile_of(self, device_id: str) -> DeviceProfile:
        return self.profiles[device_id]


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map every key path in the YAML document to its 1-based line."""
    index: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                index[child] = key.start_mark.line + 1
                walk(value, child)
                index[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return index


def _line_for(index: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    # pydantic inserts discriminator tags (e.g. 'potline', 'tcp') into loc; drop parts YAML does not have.
    path: tuple[str | int, ...] = ()
    best = index.get(())
    for part in loc:
        if (*path, part) in index:
            path = (*path, part)
            best = index[path]
    return best


_DISCRIMINATOR_TAGS = {"tcp", "rtu", "rtu_over_tcp", "potline", "alumina_refinery", "cems_stack", "none", "o2_ref",
                       "excess_air"}


def _clean_loc(loc: tuple[str | int, ...], index: dict[tuple[str | int, ...], int]) -> tuple[str | int, ...]:
    path: tuple[str | int, ...] = ()
    for part in loc:
        if (*path, part) in index:
            path = (*path, part)
        elif isinstance(part, str) and (part in _DISCRIMINATOR_TAGS or part.startswith("function-")):
            continue  # pydantic's union tags are not keys of the YAML document
        else:
            path = (*path, part)
    return path


def _check_lines(devices: list[Device]) -> list[Problem]:
    """Devices on one serial line must agree on its settings and have distinct unit ids."""
    problems: list[Problem] = []
    first: dict[str, tuple[int, Device]] = {}
    units: dict[tuple[str, int], str] = {}
    for i, dev in enumerate(devices):
        if not dev.shares_line:
            continue
        line = dev.transport.line
        if (line, dev.unit_id) in units:
            problems.append(Problem(f"devices[{i}].unit_id", f"unit id {dev.unit_id} is already used on {line} by "
                                                             f"{units[(line, dev.unit_id)]!r}"))
        units.setdefault((line, dev.unit_id), dev.id)
        j, other = first.setdefault(line, (i, dev))
        if other.transport != dev.transport:
            problems.append(Problem(f"devices[{i}].transport", f"{line} is configured differently by "
                                                               f"devices[{j}] ({other.id!r}): one line, one setting"))
    return problems


def _check_references(cfg: SiteConfig, base: Path) -> tuple[dict[str, DeviceProfile], list[Problem]]:
    problems: list[Problem] = []
    available: dict[str, DeviceProfile] = {}
    search = [BUILTIN_PROFILES_DIR]
    if cfg.profiles_dir is not None:
        site_dir = (base / cfg.profiles_dir).resolve()
        if not site_dir.is_dir():
            problems.append(Problem("profiles_dir", f"directory {site_dir} does not exist"))
        else:
            search.append(site_dir)
    for directory in search:  # site profiles win over built-in ones of the same name
        try:
            available.update(load_profiles(directory))
        except (ValidationError, yaml.YAMLError) as exc:
            problems.append(Problem("profiles_dir", f"a profile in {directory} is invalid: {exc}"))

    problems += _check_lines(cfg.devices)
    profiles: dict[str, DeviceProfile] = {}
    seen: set[str] = set()
    for i, dev in enumerate(cfg.devices):
        if dev.id in seen:
            problems.append(Problem(f"devices[{i}].id", f"duplicate device id {dev.id!r}"))
        seen.add(dev.id)
        if dev.profile not in available:
            known = ", ".join(sorted(available)) or "none"
            problems.append(Problem(f"devices[{i}].profile", f"unknown profile {dev.profile!r} (known: {known})"))
        else:
            profiles[dev.id] = available[dev.profile]
        if dev.timeout_s >= dev.poll_interval_s:
            problems.append(
                Problem(
                    f"devices[{i}].timeout_s",
                    f"timeout {dev.timeout_s} s must be shorter than poll_interval_s {dev.poll_interval_s} s",
                )
            )

    def check_reading(path: str, ref: str, want_counter: bool | None = None) -> None:
        device_id, quantity = ref.split(".", 1)
        if device_id not in seen:
            problems.append(Problem(path, f"unknown device {device_id!r}"))
            return
        prof = profiles.get(device_id)
        if prof is None:
            return  # already reported as unknown profile
        try:
            f = prof.field(quantity)
        except KeyError:
            problems.append(Problem(path, f"profile {prof.profile!r} of {device_id!r} has no quantity {quantity!r}"))
            return
        if want_counter is True and f.kind is not Kind.COUNTER:
            problems.append(Problem(path, f"{ref} must be a counter (it is a {f.kind.value})"))

    sc = cfg.scorecard
    for key in ("electricity_total", "electricity_non_fossil"):
        for j, ref in enumerate(getattr(sc, key)):
            check_reading(f"scorecard.{key}[{j}]", ref, want_counter=True)
    for key in ("red_mud_produced", "red_mud_utilised"):
        if getattr(sc, key) is not None:
            check_reading(f"scorecard.{key}", getattr(sc, key), want_counter=True)
    for i, unit in enumerate(cfg.process_units):
        p = f"process_units[{i}]"
        if isinstance(unit, Potline):
            check_reading(f"{p}.ac_energy", unit.ac_energy, want_counter=True)
            check_reading(f"{p}.metal_tapped", unit.metal_tapped, want_counter=True)
            for name in ("line_current", "line_voltage"):
                ref = getattr(unit, name)
                if ref is not None:
                    check_reading(f"{p}.{name}", ref)
            for j, ref in enumerate(unit.auxiliary_energy):
                check_reading(f"{p}.auxiliary_energy[{j}]", ref, want_counter=True)
        elif isinstance(unit, AluminaRefinery):
            check_reading(f"{p}.alumina_output", unit.alumina_output, want_counter=True)
            for j, carrier in enumerate(unit.carriers):
                check_reading(f"{p}.carriers[{j}].reading", carrier.reading, want_counter=True)
        else:
            for pollutant, ref in unit.pollutants.items():
                check_reading(f"{p}.pollutants.{pollutant}", ref)
            for name in ("o2", "moisture", "temperature", "pressure", "flow", "flag"):
                ref = getattr(unit, name)
                if ref is not None:
                    check_reading(f"{p}.{name}", ref)
    ids = [u.id for u in cfg.process_units]
    for i, uid in enumerate(ids):
        if ids.index(uid) != i:
            problems.append(Problem(f"process_units[{i}].id", f"duplicate process unit id {uid!r}"))
    return profiles, problems


def _check_alert_rules(cfg: SiteConfig) -> list[Problem]:
    """A site rule either names a default rule (alumon/data/alert_rules.yaml) or gives every field itself."""
    text = resources.files("alumon").joinpath("data/alert_rules.yaml").read_text(encoding="utf-8")
    defaults = {r["name"] for r in yaml.safe_load(text)["rules"]}
    problems = []
    for i, rule in enumerate(cfg.alerts.rules):
        missing = [k for k in ("kpi", "limit", "severity", "audience", "description_zh", "description_en")
                   if getattr(rule, k) is None]
        if rule.name not in defaults and missing:
            problems.append(Problem(f"alerts.rules[{i}].name", f"{rule.name!r} is not a default rule "
                                    f"({', '.join(sorted(defaults))}), so it needs {', '.join(missing)}"))
    return problems


def _check_secrets(cfg: SiteConfig, environ: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    for conn_name in ("mqtt", "influxdb", "smtp"):
        conn = getattr(cfg.connections, conn_name)
        for key in ("username_env", "password_env"):
            var = getattr(conn, key)
            if var is not None and not environ.get(var):
                problems.append(
                    Problem(f"connections.{conn_name}.{key}", f"environment variable {var} is not set or empty")
                )
    return problems


def load_site(path: Path, environ: dict[str, str] | None = None, check_secrets: bool = True) -> Site:
    """Load and fully validate a site file; raise ``SiteConfigError`` listing every problem."""
    path = Path(path)
    env = dict(os.environ) if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteConfigError(path, [Problem("<file>", f"cannot read: {exc.strerror}")]) from exc
    try:
        data: Any = yaml.safe_load(text)
        index = _line_index(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SiteConfigError(path, [Problem("<yaml>", f"not valid YAML: {exc}", line)]) from exc
    if not isinstance(data, dict):
        raise SiteConfigError(path, [Problem("<root>", "the site file must be a YAML mapping", 1)])
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]), index)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(_format_loc(loc) or "<root>", msg, _line_for(index, loc)))
        raise SiteConfigError(path, problems) from exc

    profiles, problems = _check_references(cfg, path.parent)
    problems += _check_alert_rules(cfg)
    if check_secrets:
        problems += _check_secrets(cfg, env)
    if problems:
        located = [Problem(p.path, p.message, _line_for(index, _parse_path(p.path))) for p in problems]
        raise SiteConfigError(path, located)
    return Site(config=cfg, profiles=profiles, path=path.resolve())


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for chunk in text.split("."):
        name, *indices = chunk.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i.rstrip("]")) for i in indices)
    return tuple(parts)


def secret(var: str | None, environ: dict[str, str] | None = None) -> str | None:
    """Read a secret named by the config. The value is never logged or echoed by alumon."""
    if var is None:
        return None
    return (os.environ if environ is None else environ).get(var)
