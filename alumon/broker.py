"""Broker security for the central stack: mosquitto configuration derived from the site files.

``alumon broker config --site FILE --out DIR`` writes into DIR:

* ``mosquitto.conf``: one TLS listener, no anonymous clients, the password file and the ACL below;
* ``passwd``: mosquitto_passwd format (PBKDF2-SHA512, what mosquitto 2 itself writes), mode 0600;
* ``acl``: what each account may read and write, mode 0600;
* ``credentials/USER.env``: each account's plaintext credential as ``VAR=value`` lines (a systemd
  ``EnvironmentFile`` or a compose ``env_file``), mode 0600 in a 0700 directory, to hand to the gateway or
  service that uses it; ``credentials/monitor.mosquitto_sub`` holds the monitor credential as mosquitto_sub
  default options, so health checks never put a password on a command line.

Accounts are per MQTT *client*, not per meter. The edge agent is one process per site (client id
``alumon-edge-{site}``) that polls every device of the site and publishes for all of them (edge/agent.py,
edge/publisher.py), so a credential per device could not be used by anything that runs today. Each site gets:

* ``edge-{site}``: writes exactly ``{device}/telemetry`` and ``{device}/status`` for the devices in the site
  file, and its own ``edge/status`` (also its last will, which mosquitto silently drops unless the account may
  write it) and ``edge/metrics``. Nothing else: not another site, not a device missing from the file, no alerts.
* ``ingest-{site}``: reads the site's telemetry; writes its dead letters and ``ingest-{worker}/metrics``.
* ``analytics-{site}``: reads the site's telemetry and every service's metrics (it stores them for the health
  dashboard); the only account that may write ``alerts/#``.

and one ``monitor`` account reads everything under ``alumon/v1/#`` and ``$SYS/#`` (operators, health checks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alumon.config import SiteConfig
from alumon.telemetry import (
    TOPIC_ROOT,
    alert_topic,
    deadletter_topic,
    metrics_subscription,
    metrics_topic,
    status_topic,
    telemetry_subscription,
    telemetry_topic,
)
from edge.publisher import AGENT_ID as EDGE_AGENT_ID

DEFAULT_USERNAME_ENV = "ALUMON_MQTT_USERNAME"
DEFAULT_PASSWORD_ENV = "ALUMON_MQTT_PASSWORD"
MONITOR = "monitor"
# Device ids that would put a device's topics on top of a service's: the edge's own status/metrics, the alert
# subtree (a device "alerts" would let the gateway write alumon/v1/{site}/alerts/telemetry), the dead letters.
RESERVED_DEVICE_IDS = frozenset({EDGE_AGENT_ID, "alerts", "deadletter"})
# Letters and digits only: safe unquoted in env files, shells, YAML and mosquitto_sub option files; 32 of them
# are 190 bits, so mosquitto's default PBKDF2 work factor is ample.
_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default; what slows guessing here is the password's entropy
_SALT_BYTES = 12  # as mosquitto_passwd


class BrokerConfigError(ValueError):
    """The site files cannot be turned into a safe broker configuration."""


@dataclass(frozen=True)
class Account:
    user: str
    role: str  # edge | ingest | analytics | monitor
    site: str | None  # None: all sites (monitor)
    rules: tuple[tuple[str, str], ...]  # (read | write, topic filter)
    username_env: str
    password_env: str

    @property
    def credentials_file(self) -> str:
        return f"credentials/{self.user}.env"


@dataclass(frozen=True)
class BrokerOptions:
    """Where things are *as the broker sees them* (defaults: the eclipse-mosquitto image in deploy/compose.yaml)."""

    port: int = 8883
    bind: str | None = None  # None: every interface
    cafile: str = "/mosquitto/certs/ca.crt"
    certfile: str = "/mosquitto/certs/server.crt"
    keyfile: str = "/mosquitto/certs/server.key"
    config_dir: str = "/mosquitto/config"  # holds passwd and acl
    data_dir: str = "/mosquitto/data"
    log_file: str | None = None  # None: stdout (docker logs, journald)
    run_as: str | None = None  # mosquitto's `user`; None keeps its default (drop to "mosquitto")
    require_certificate: bool = False  # also demand a client certificate signed by cafile


@dataclass(frozen=True)
class Generated:
    out: Path
    accounts: list[Account]
    new_passwords: list[str]  # users whose password was generated now (the others were kept)


def _env_names(cfg: SiteConfig) -> tuple[str, str]:
    mqtt = cfg.connections.mqtt
    return mqtt.username_env or DEFAULT_USERNAME_ENV, mqtt.password_env or DEFAULT_PASSWORD_ENV


def site_accounts(cfg: SiteConfig, ingest_workers: Iterable[str] = ("1",)) -> list[Account]:
    site = cfg.site.id
    reserved = sorted(d.id for d in cfg.devices if d.id in RESERVED_DEVICE_IDS)
    if reserved:
        raise BrokerConfigError(f"site {site}: device id(s) {', '.join(reserved)} are reserved for the topics of "
                                f"alumon's services ({', '.join(sorted(RESERVED_DEVICE_IDS))}); rename the device")
    names = _env_names(cfg)
    edge: list[tuple[str, str]] = []
    for dev in cfg.devices:
        edge += [("write", telemetry_topic(site, dev.id)), ("write", status_topic(site, dev.id))]
    edge += [("write", status_topic(site, EDGE_AGENT_ID)), ("write", metrics_topic(site, EDGE_AGENT_ID))]
    telemetry = ("read", telemetry_subscription(site))
    ingest = [telemetry, ("write", deadletter_topic(site))]
    ingest += [("write", metrics_topic(site, f"ingest-{w}")) for w in ingest_workers]
    analytics = [telemetry, ("read", metrics_subscription(site)), ("write", alert_topic(site, "#"))]
    return [
        Account(f"edge-{site}", "edge", site, tuple(edge), *names),
        Account(f"ingest-{site}", "ingest", site, tuple(ingest), *names),
        Account(f"analytics-{site}", "analytics", site, tuple(analytics), *names),
    ]


def accounts_for(sites: list[SiteConfig], ingest_workers: Iterable[str] = ("1",)) -> list[Account]:
    workers = list(ingest_workers)
    for w in workers:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", w):
            raise BrokerConfigError(f"ingest worker id {w!r}: letters, digits, _ and - only (as `alumon ingest`)")
    seen: set[str] = set()
    accounts: list[Account] = []
    for cfg in sites:
        if cfg.site.id in seen:
            raise BrokerConfigError(f"site {cfg.site.id} is given twice")
        seen.add(cfg.site.id)
        accounts += site_accounts(cfg, workers)
    accounts.append(Account(MONITOR, "monitor", None, (("read", f"{TOPIC_ROOT}/#"), ("read", "$SYS/#")),
                            DEFAULT_USERNAME_ENV, DEFAULT_PASSWORD_ENV))
    return accounts


# --- file contents -------------------------------------------------------------------------------------------


def acl_text(accounts: list[Account]) -> str:
    # Nothing precedes the first `user` line: lines there would apply to anonymous clients.
    lines = ["# generated by `alumon broker config`; regenerate it instead of editing (see alumon/broker.py)", ""]
    for acc in accounts:
        lines.append(f"# {acc.role}" + (f" of site {acc.site}" if acc.site else ", all sites, read only"))
        lines.append(f"user {acc.user}")
        lines += [f"topic {access} {topic}" for access, topic in acc.rules]
        lines.append("")
    return "\n".join(lines)


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """mosquitto 2's ``$7$`` format: PBKDF2-HMAC-SHA512, base64 salt and digest."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    _, kind, iterations, salt, digest = hashed.split("$")
    if kind != "7":
        raise ValueError(f"unsupported mosquitto hash type ${kind}$")
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(got, base64.b64decode(digest))


def passwd_text(accounts: list[Account], passwords: dict[str, str]) -> str:
    return "".join(f"{acc.user}:{hash_password(passwords[acc.user])}\n" for acc in accounts)


def credentials_text(acc: Account, password: str) -> str:
    scope = f"site {acc.site}" if acc.site else "all sites"
    return (f"# MQTT credential of {acc.user} ({acc.role}, {scope}), generated by `alumon broker config`.\n"
            f"# Secret: keep it mode 0600 and out of version control.\n"
            f"{acc.username_env}={acc.user}\n{acc.password_env}={password}\n")


def mosquitto_sub_options(acc: Account, password: str) -> str:
    return f"-u {acc.user}\n-P {password}\n"


def _conf_value(name: str, value: str) -> str:
    # mosquitto.conf has no quoting: a line break would start a new directive, and a trailing comment would
    # become part of the value (shared/environment.md §5).
    if "\n" in value or "\r" in value or "#" in value:
        raise BrokerConfigError(f"{name} {value!r}: line breaks and # are not allowed in mosquitto.conf values")
    return value


def mosquitto_conf(opts: BrokerOptions) -> str:
    cfg_dir = _conf_value("config_dir", opts.config_dir.rstrip("/"))
    data_dir = _conf_value("data_dir", opts.data_dir.rstrip("/"))
    listener = f"listener {opts.port}" + (f" {_conf_value('bind', opts.bind)}" if opts.bind else "")
    log = f"log_dest file {_conf_value('log_file', opts.log_file)}" if opts.log_file else "log_dest stdout"
    lines = [
        "# generated by `alumon broker config`; regenerate it instead of editing (see alumon/broker.py)",
        "# No trailing comments: mosquitto would read them as part of the value.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {cfg_dir}/passwd",
        f"acl_file {cfg_dir}/acl",
        "# The only listener speaks TLS: credentials never cross the network in clear.",
        listener,
        "protocol mqtt",
        f"cafile {_conf_value('cafile', opts.cafile)}",
        f"certfile {_conf_value('certfile', opts.certfile)}",
        f"keyfile {_conf_value('keyfile', opts.keyfile)}",
        f"require_certificate {'true' if opts.require_certificate else 'false'}",
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_interval 60",
        log,
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "# Nothing is lost: the default queue limit (1000) drops messages for a consumer that is away or slow,",
        "# after the edge has already deleted them from its spool on PUBACK (shared/environment.md §5.4).",
        "max_queued_messages 0",
        "max_inflight_messages 20",
        "# Telemetry is at most 256 KiB (alumon/telemetry.py); a dead letter wraps one. Refuse anything far bigger.",
        "max_packet_size 1048576",
    ]
    if opts.run_as:
        lines.append(f"user {_conf_value('run_as', opts.run_as)}")
    return "\n".join(lines) + "\n"


# --- writing ---------------------------------------------------------------------------------------------------


def new_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write atomically with ``mode`` from the first byte (a broker reloading on SIGHUP never sees half a file,
    and a secret is never briefly world-readable)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _existing_password(out: Path, acc: Account) -> str | None:
    path = out / acc.credentials_file
    if not path.exists():
        return None
    values = read_env_file(path)
    password = values.get(acc.password_env)
    if values.get(acc.username_env) != acc.user or not password or any(c not in _ALPHABET for c in password):
        return None
    return password


def generate(sites: list[SiteConfig], out: Path, opts: BrokerOptions, ingest_workers: Iterable[str] = ("1",),
             rotate: bool = False) -> Generated:
    """Write the broker files into ``out``. Existing credentials are kept (adding a device must not lock out
    every gateway) unless ``rotate``."""
    accounts = accounts_for(sites, ingest_workers)
    conf = mosquitto_conf(opts)
    out.mkdir(parents=True, exist_ok=True)
    creds = out / "credentials"
    creds.mkdir(mode=0o700, exist_ok=True)
    os.chmod(creds, 0o700)
    passwords: dict[str, str] = {}
    fresh: list[str] = []
    for acc in accounts:
        kept = None if rotate else _existing_password(out, acc)
        if kept is None:
            fresh.append(acc.user)
        passwords[acc.user] = kept or new_password()
    for acc in accounts:
        write_atomic(out / acc.credentials_file, credentials_text(acc, passwords[acc.user]))
        if acc.role == "monitor":
            write_atomic(creds / f"{acc.user}.mosquitto_sub", mosquitto_sub_options(acc, passwords[acc.user]))
    write_atomic(out / "passwd", passwd_text(accounts, passwords))
    write_atomic(out / "acl", acl_text(accounts))
    write_atomic(out / "mosquitto.conf", conf, 0o644)
    return Generated(out, accounts, fresh)
