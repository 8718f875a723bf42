"""deploy/ checked offline (Docker does not run here): the compose file's structure and secrets, its agreement with
site.example.yaml and with what `alumon broker config` generates, every `alumon` command the deployment names,
the systemd units (systemd-analyze verify), install-edge.sh into a staging root, and make-certs.sh."""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from alumon.broker import DEFAULT_PASSWORD_ENV, DEFAULT_USERNAME_ENV, BrokerOptions, generate, read_env_file
from alumon.cli import app
from alumon.config import load_site
from alumon.stack import require_binary
from tests.conftest import REPO
from tests.deploy_support import COMPOSE, DEPLOY, SITE_EXAMPLE, compose, make_certs

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
INSTALL_EDGE = DEPLOY / "install-edge.sh"
ENV_EXAMPLE = DEPLOY / ".env.example"
# Where each service keeps the state that must survive a re-created container.
STATE = {"mosquitto": "/mosquitto/data", "influxdb": "/var/lib/influxdb", "grafana": "/var/lib/grafana",
         "ingest": "/var/lib/alumon", "analytics": "/var/lib/alumon"}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def interpolate(text: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with the values of .env.example."""
    values = env_example()

    def one(m: re.Match[str]) -> str:
        if m.group(1) in values:
            return values[m.group(1)]
        default = re.match(r"\$\{[A-Z0-9_]+:?-(.*)\}$", m.group(0))
        assert default is not None, f"{m.group(0)} has no value in .env.example and no default"
        return default.group(1)

    return VARIABLE.sub(one, text)


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def one_shot(svc: dict[str, Any]) -> bool:
    return svc.get("restart") == "no"


def mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume or a path relative to deploy/)."""
    out = {}
    for spec in svc.get("volumes", []):
        source, target, *_ = re.split(r":(?![^{}]*\})", spec)  # not the ":" of a ${VAR:-default}
        out[target] = source
    return out


# --- compose ---------------------------------------------------------------------------------------------------


def test_every_service_is_built_or_pulled_checked_and_keeps_state_in_volumes() -> None:
    data = compose()
    named = set(data["volumes"])
    for name, svc in services().items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert svc.get("restart") in {"unless-stopped", "no"}, name
        if not one_shot(svc):
            test = svc["healthcheck"]["test"]
            assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, name
            assert {"interval", "timeout", "retries", "start_period"} <= set(svc["healthcheck"]), name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in data["services"], (name, dep)
            wanted = "service_completed_successfully" if one_shot(services()[dep]) else "service_healthy"
            assert cond == {"condition": wanted}, (name, dep)
    for name, path in STATE.items():
        assert mounts(services()[name]).get(path) in named, f"{name}: {path} is not on a named volume"
    used = {src for svc in services().values() for src in mounts(svc).values() if not src.startswith((".", "$"))}
    assert used == named  # every declared volume holds something, nothing is an anonymous volume
    assert "ports" not in services()["influxdb"]  # the database is reached over the compose network only
    assert DEPLOY.joinpath("Dockerfile").is_file()


def test_compose_holds_no_secret_and_env_example_covers_every_variable() -> None:
    text = COMPOSE.read_text()
    for name, svc in services().items():
        for key, value in svc.get("environment", {}).items():
            if SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:\?[^}]*)?\}", str(value)), f"{name}.{key} = {value!r}"
        for path in svc.get("env_file", []):  # credential files made by `alumon broker config`, never committed
            assert path.startswith("./broker/credentials/"), (name, path)
    defined = env_example()
    for var in set(VARIABLE.findall(text)):
        has_default = re.search(r"\$\{" + var + r":-", text) is not None
        assert var in defined or has_default, f"${{{var}}} is neither in .env.example nor defaulted"
    # .env.example carries placeholders only.
    for key, value in defined.items():
        if SECRET_KEY.search(key):
            assert value == "change-me", key
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert {"/deploy/.env", "/deploy/pki/", "/deploy/broker/"} <= set(ignored)
    dockerignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in dockerignore and not any(line.startswith("!deploy") for line in dockerignore)


def test_compose_agrees_with_site_example_and_generated_broker_config(tmp_path: Path) -> None:
    site = load_site(SITE_EXAMPLE, check_secrets=False)
    env = env_example()
    assert env["ALUMON_SITE_ID"] == site.id and env["ALUMON_SITE_FILE"] == "./site.yaml"
    deploy = tmp_path / "deploy"  # generated as deploy/README.md says, with the defaults compose expects
    generate([site.config], deploy / "broker", BrokerOptions())
    mqtt = site.config.connections.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("mosquitto", BrokerOptions().port, True)
    assert (mqtt.username_env, mqtt.password_env) == (DEFAULT_USERNAME_ENV, DEFAULT_PASSWORD_ENV)
    assert services()["mosquitto"]["ports"] == [f"${{MQTT_PORT:-{mqtt.port}}}:{mqtt.port}"]
    influx = site.config.connections.influxdb
    assert influx.url == "http://influxdb:8086" and influx.database == env["INFLUXDB_DB"]

    # The broker finds what `alumon broker config` wrote where its entrypoint installs it.
    broker = services()["mosquitto"]
    script = " ".join(broker["command"])
    conf = (deploy / "broker" / "mosquitto.conf").read_text().splitlines()
    directive = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in conf if line and line[0] != "#"}
    assert mounts(broker)["/alumon/broker/mosquitto.conf"] == "./broker/mosquitto.conf"
    assert "exec /usr/sbin/mosquitto -c /alumon/broker/mosquitto.conf" in script
    for key, target in (("password_file", "/mosquitto/config/"), ("acl_file", "/mosquitto/config/"),
                        ("cafile", "/mosquitto/certs/"), ("certfile", "/mosquitto/certs/"),
                        ("keyfile", "/mosquitto/certs/")):
        path = Path(directive[key])
        assert str(path.parent) + "/" == target and f"/{path.name} " in script + " ", key
    assert directive["persistence_location"] == STATE["mosquitto"] + "/"
    for container, source in mounts(broker).items():
        if source.startswith("./broker/"):
            assert (deploy / source).is_file(), source
            assert container.startswith("/alumon/")  # copied from there, owned by mosquitto, at start

    # Every variable the site file names reaches ingest and analytics; their credential files exist.
    named = {getattr(c, k) for c in (mqtt, influx, site.config.connections.smtp)
             for k in ("username_env", "password_env")} - {None}
    for name in ("influx-init", "ingest", "analytics"):
        svc = services()[name]
        provided = set(svc.get("environment", {}))
        for path in svc["env_file"]:
            cred = deploy / interpolate(path)
            assert cred.is_file(), cred
            provided |= set(read_env_file(cred))
        assert named <= provided, (name, named - provided)
        assert mounts(svc)["/etc/alumon/site.yaml"] == "${ALUMON_SITE_FILE:-./site.yaml}"
        assert mounts(svc)[str(mqtt.ca_file)] == "./pki/ca.crt"
    assert f":{site.config.ingest.prometheus_port}/" in " ".join(services()["ingest"]["healthcheck"]["test"])
    analytics_cmd = services()["analytics"]["command"]
    state_dir = analytics_cmd[analytics_cmd.index("--state-dir") + 1]
    assert f"{state_dir}/ledgers.json" in " ".join(services()["analytics"]["healthcheck"]["test"])


def test_grafana_gets_provisioning_and_the_generated_dashboards() -> None:
    grafana = mounts(services()["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "../grafana/provisioning"
    provider = yaml.safe_load((REPO / "grafana" / "provisioning" / "dashboards" / "alumon.yaml").read_text())
    assert grafana[provider["providers"][0]["options"]["path"]] == "../grafana/dashboards"
    # Grafana expands ${VAR} in its provisioning files from its own environment: compose must set each one.
    provisioning = " ".join(f.read_text() for f in (REPO / "grafana" / "provisioning").rglob("*.yaml"))
    wanted = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", provisioning))
    assert wanted and wanted <= set(services()["grafana"]["environment"]), wanted


# --- every alumon command named by the deployment exists ---------------------------------------------------------


def alumon_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `alumon`) for every alumon invocation in compose, the units, the scripts and the docs."""
    found: list[tuple[str, list[str]]] = []
    for name, svc in services().items():
        if "build" in svc:  # the image's entrypoint is `alumon`
            found.append((f"compose {name}", [str(a) for a in svc["command"]]))
    lines: list[tuple[str, str]] = []
    for unit in UNITS:
        lines += [(unit.name, line.split("=", 1)[1]) for line in unit.read_text().splitlines()
                  if line.startswith(("ExecStart=", "ExecStartPre="))]
    lines += [(INSTALL_EDGE.name, line) for line in INSTALL_EDGE.read_text().splitlines()]
    readme = (REPO / "README.md").read_text()
    deploying = readme[readme.index("## Deploying"):].split("\n## ", 1)[0]  # the other sections are not ours
    for where, text in (("deploy/README.md", (DEPLOY / "README.md").read_text()), ("README.md", deploying)):
        lines += [(where, line) for line in _code_lines(text)]
    for where, line in lines:
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            before = words[i - 1] if i else ";"
            starts = before.endswith(";") or before in {"&&", "||", "|", "(", "sudo", "exec", "then", "do"}
            if starts and (word == "alumon" or word.endswith("/bin/alumon")):  # not the user, not a test -x
                args = []
                for w in words[i + 1:]:
                    if w in {"&&", "||", ";", "|", ")"} or w.endswith(";"):
                        break
                    args.append(w)
                found.append((where, args))
    return found


def _code_lines(markdown: str) -> list[str]:
    """Shell lines of the fenced code blocks (continuation lines joined)."""
    out, block, inside = [], "", False
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            block += line.rstrip("\\") + " "
            if not line.endswith("\\"):
                out.append(block)
                block = ""
    return out


def test_every_alumon_command_in_deploy_exists() -> None:
    root = get_command(app)
    commands = alumon_commands()
    assert {where.split()[0] for where, _ in commands} >= {"compose", "install-edge.sh", "README.md",
                                                           "deploy/README.md"}
    assert sum(1 for where, _ in commands if where.endswith(".service")) >= 6  # ExecStartPre + ExecStart each
    runner = CliRunner()
    for where, args in commands:
        cmd: Any = root  # typer's own click: groups are the commands that have `commands`
        path: list[str] = []
        rest = list(args)
        while rest and rest[0] in getattr(cmd, "commands", {}):
            path.append(rest[0])
            cmd = cmd.commands[rest.pop(0)]
        assert path, f"{where}: `alumon {' '.join(args)}`: no such command"
        assert not hasattr(cmd, "commands") or cmd.invoke_without_command, f"{where}: `alumon {' '.join(args)}`"
        options = {opt for p in cmd.params for opt in p.opts + p.secondary_opts}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{where}: `alumon {' '.join(path)}` has no option {word}"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{where}: alumon {' '.join(path)} --help: {result.output}"


# --- systemd units and the edge installer ------------------------------------------------------------------------


def stub_alumon(tmp: Path) -> Path:
    stub = tmp / "opt" / "alumon" / "bin" / "alumon"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return stub


def verify_unit(unit: Path, tmp: Path) -> None:
    """systemd-analyze verify, with /opt/alumon/bin/alumon (not installed here) replaced by a stub."""
    tool = require_binary("systemd-analyze")
    local = tmp / unit.name
    local.write_text(unit.read_text().replace("/opt/alumon/bin/alumon", str(stub_alumon(tmp))))
    done = subprocess.run([tool, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", f"{unit.name}: {done.stderr}"


def unit_keys(unit: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return keys


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_unit(unit: Path, tmp_path: Path) -> None:
    verify_unit(unit, tmp_path)
    keys = unit_keys(unit)
    role = unit.stem.removeprefix("alumon-")
    assert keys["User"] == ["alumon"] and keys["Group"] == ["alumon"]  # never root
    assert keys["Restart"] == ["on-failure"] and keys["StateDirectory"] == ["alumon"]
    assert keys["EnvironmentFile"] == [f"/etc/alumon/{role}.env"]  # required: no "-" prefix
    assert keys["ExecStartPre"] == ["/opt/alumon/bin/alumon config check /etc/alumon/site.yaml"]
    (start,) = keys["ExecStart"]
    assert start.startswith(f"/opt/alumon/bin/alumon {role} --site /etc/alumon/site.yaml --")
    assert re.search(r"--(spool|buffer|state)-dir /var/lib/alumon/", start)  # state under StateDirectory
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert keys[key] == ["true"], key
    assert keys["ProtectSystem"] == ["strict"] and keys["CapabilityBoundingSet"] == [""]
    assert ("dialout" in keys.get("SupplementaryGroups", [""])[0]) == (role == "edge")  # RS-485 on the edge only


def test_install_edge_stages_config_with_private_modes(tmp_path: Path) -> None:
    pki, root = tmp_path / "pki", tmp_path / "root"
    make_certs(pki)
    site = SITE_EXAMPLE
    out = tmp_path / "broker"
    generate([load_site(site, check_secrets=False).config], out, BrokerOptions())
    creds = out / "credentials" / "edge-demo-plant.env"
    done = subprocess.run(["bash", str(INSTALL_EDGE), "--site", str(site), "--credentials", str(creds), "--ca",
                           str(pki / "ca.crt"), "--root", str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}
    assert modes["etc/alumon"] == 0o750
    assert modes["etc/alumon/edge.env"] == 0o600 and modes["etc/alumon/site.yaml"] == 0o640
    assert modes["etc/alumon/ca.crt"] == 0o644
    assert (root / "etc/alumon/edge.env").read_bytes() == creds.read_bytes()
    verify_unit(root / "etc/systemd/system/alumon-edge.service", tmp_path)
    refused = subprocess.run(["bash", str(INSTALL_EDGE), "--site", str(site)], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "--credentials" in refused.stdout


# --- make-certs.sh ---------------------------------------------------------------------------------------------


def sans(cert: Path) -> set[str]:
    text = subprocess.run([require_binary("openssl"), "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                          check=True, capture_output=True, text=True).stdout
    return {s.strip() for s in text.splitlines()[-1].split(",")}


def test_make_certs_issues_a_server_certificate_for_the_given_names(tmp_path: Path) -> None:
    openssl = require_binary("openssl")
    pki = tmp_path / "pki"
    make_certs(pki, "mqtt.plant.example", "10.20.0.5", clients=("gateway-1",))
    for name in ("server", "gateway-1"):
        check = subprocess.run([openssl, "verify", "-CAfile", str(pki / "ca.crt"), str(pki / f"{name}.crt")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    assert sans(pki / "server.crt") == {"DNS:localhost", "IP Address:127.0.0.1", "DNS:mosquitto",
                                        "DNS:mqtt.plant.example", "IP Address:10.20.0.5"}
    for key in ("ca.key", "server.key", "gateway-1.key"):
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600, key
    ca = (pki / "ca.crt").read_bytes()
    make_certs(pki, "mqtt2.plant.example")  # a new name: the CA stays, so gateways keep trusting the broker
    assert (pki / "ca.crt").read_bytes() == ca
    assert "DNS:mqtt2.plant.example" in sans(pki / "server.crt")
    assert subprocess.run([openssl, "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "server.crt")],
                          capture_output=True).returncode == 0
