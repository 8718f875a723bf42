"""``alumon influx init``: database, retention policies and the rollups dashboards read, created idempotently.

Retention policies: ``raw`` (default, where ingest and analytics write), ``rollup_1m`` and ``rollup_1h``.
Continuous queries downsample ``telemetry`` into ``telemetry_1m`` / ``telemetry_1h`` (mean, min, max and count
of good and bad samples per series), so a year-long dashboard never scans raw 1 s data. Running it again
changes nothing; a retention period changed in the arguments is applied with ALTER.
"""

from __future__ import annotations

from dataclasses import dataclass

from alumon import schema
from alumon.influx import InfluxClient


@dataclass(frozen=True)
class RetentionPolicy:
    name: str
    duration: str  # InfluxQL duration, e.g. 90d; INF keeps forever
    default: bool = False


@dataclass(frozen=True)
class Rollup:
    name: str  # continuous query name
    every: str  # GROUP BY time(...)
    source_rp: str
    target_rp: str
    target_measurement: str


DEFAULT_POLICIES = (
    RetentionPolicy("raw", "400d", default=True),  # a statistical year plus a month to recompute it
    RetentionPolicy("rollup_1m", "1825d"),
    RetentionPolicy("rollup_1h", "INF"),
)
ROLLUPS = (
    Rollup("cq_telemetry_1m", "1m", "raw", "rollup_1m", f"{schema.TELEMETRY}_1m"),
    Rollup("cq_telemetry_1h", "1h", "rollup_1m", "rollup_1h", f"{schema.TELEMETRY}_1h"),
)


def _duration_matches(shown: str, wanted: str) -> bool:
    """SHOW RETENTION POLICIES prints 9600h0m0s for 400d and 0s for INF."""
    if wanted.upper() == "INF":
        return shown in ("0s", "0")
    units = {"d": 24, "h": 1}
    hours = int(wanted[:-1]) * units[wanted[-1]]
    return shown.startswith(f"{hours}h")


def rollup_select(db: str, r: Rollup, where: str = "") -> str:
    """The SELECT ... INTO a rollup runs: inside its continuous query, or alone with a time range (backfill)."""
    if r.source_rp == "raw":
        fields = "mean(value) AS value, min(value) AS min, max(value) AS max, count(value) AS samples"
    else:  # an hour of minute rollups: the mean of minute means (minutes weigh equally), extremes kept
        fields = "mean(value) AS value, min(min) AS min, max(max) AS max, sum(samples) AS samples"
    source = schema.TELEMETRY if r.source_rp == "raw" else f"{schema.TELEMETRY}_1m"
    return (f'SELECT {fields} INTO "{db}"."{r.target_rp}"."{r.target_measurement}" '
            f'FROM "{db}"."{r.source_rp}"."{source}" {where}GROUP BY time({r.every}), *')


def _cq_query(db: str, r: Rollup) -> str:
    return f'CREATE CONTINUOUS QUERY "{r.name}" ON "{db}" BEGIN {rollup_select(db, r)} END'


def backfill(client: InfluxClient, start_ms: int, end_ms: int) -> None:
    """Compute the rollups for a past range (continuous queries only cover time from their creation on)."""
    for r in ROLLUPS:  # in order: the hourly rollup reads the minute rollup
        client.query(rollup_select(client.database, r, f"WHERE time >= {start_ms}ms AND time < {end_ms}ms "))


def init_database(client: InfluxClient, policies: tuple[RetentionPolicy, ...] = DEFAULT_POLICIES) -> list[str]:
    """Bring the database to the wanted state; return what was done (empty when nothing was needed)."""
    db = client.database
    done: list[str] = []
    existing_dbs = {row[0] for s in client.query("SHOW DATABASES") for row in s.get("values", [])}
    if db not in existing_dbs:
        client.create_database()
        done.append(f"created database {db}")
    shown = {row[0]: row for s in client.query(f'SHOW RETENTION POLICIES ON "{db}"') for row in s.get("values", [])}
    for rp in policies:
        default = " DEFAULT" if rp.default else ""
        if rp.name not in shown:
            client.query(f'CREATE RETENTION POLICY "{rp.name}" ON "{db}" DURATION {rp.duration} REPLICATION 1{default}')
            done.append(f"created retention policy {rp.name} ({rp.duration})")
        else:
            _, duration, *_rest = shown[rp.name]
            is_default = bool(shown[rp.name][-1])
            if not _duration_matches(str(duration), rp.duration) or (rp.default and not is_default):
                client.query(f'ALTER RETENTION POLICY "{rp.name}" ON "{db}" DURATION {rp.duration}{default}')
                done.append(f"altered retention policy {rp.name} ({rp.duration})")
    cqs = {row[0] for s in client.query("SHOW CONTINUOUS QUERIES") if s.get("name") == db
           for row in s.get("values", [])}
    for r in ROLLUPS:
        if r.name not in cqs:
            client.query(_cq_query(db, r))
            done.append(f"created continuous query {r.name} -> {r.target_rp}.{r.target_measurement}")
    return done
