"""``alumon broker ...``: the central mosquitto's security configuration (alumon/broker.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

broker_app = typer.Typer(help="Central MQTT broker: TLS listener, passwords and ACL generated from the site files",
                         no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


@broker_app.command("config")
def broker_config(
    site: Annotated[list[Path], typer.Option("--site", help="site YAML file (repeat for every site on this broker)",
                                             exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="output directory (mosquitto.conf, passwd, acl, credentials/)",
                                      file_okay=False)],
    port: Annotated[int, typer.Option(help="TLS listener port", min=1, max=65535)] = 8883,
    bind: Annotated[str | None, typer.Option(help="listen address (default: every interface)")] = None,
    cafile: Annotated[str, typer.Option(help="CA certificate, as the broker sees it")] = "/mosquitto/certs/ca.crt",
    certfile: Annotated[str, typer.Option(help="server certificate, as the broker sees it")]
    = "/mosquitto/certs/server.crt",
    keyfile: Annotated[str, typer.Option(help="server key, as the broker sees it")] = "/mosquitto/certs/server.key",
    config_dir: Annotated[str, typer.Option(help="where the broker finds passwd and acl")] = "/mosquitto/config",
    data_dir: Annotated[str, typer.Option(help="broker persistence directory")] = "/mosquitto/data",
    log_file: Annotated[str | None, typer.Option(help="broker log file (default: stdout)")] = None,
    run_as: Annotated[str | None, typer.Option(help="user mosquitto drops to when started as root")] = None,
    require_certificate: Annotated[bool, typer.Option(help="also require client certificates")] = False,
    ingest_worker: Annotated[list[str] | None, typer.Option(
        help="ingest worker id allowed to publish its metrics (repeatable; default 1)")] = None,
    rotate: Annotated[bool, typer.Option(help="new passwords for every account (default: keep existing ones)")]
    = False,
) -> None:
    """Generate mosquitto.conf (TLS only, no anonymous clients), a password file and an ACL with one account per
    edge gateway (site), ingest and analytics, plus a read-only monitor; plaintext credentials go to
    OUT/credentials/USER.env (mode 0600) for the gateways and services. Passwords are never printed."""
    from alumon.broker import BrokerConfigError, BrokerOptions, generate
    from alumon.config import SiteConfigError, load_site

    try:
        # Secrets are not needed to derive accounts and topics: the broker host need not hold them.
        sites = [load_site(path, check_secrets=False).config for path in site]
    except SiteConfigError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from exc
    opts = BrokerOptions(port=port, bind=bind, cafile=cafile, certfile=certfile, keyfile=keyfile,
                         config_dir=config_dir, data_dir=data_dir, log_file=log_file, run_as=run_as,
                         require_certificate=require_certificate)
    try:
        result = generate(sites, out, opts, ingest_worker or ["1"], rotate=rotate)
    except BrokerConfigError as exc:
        err.print(f"alumon broker config: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    print(f"wrote {out}/mosquitto.conf, {out}/passwd (0600), {out}/acl (0600), {out}/credentials/ (0700)")
    for acc in result.accounts:
        state = "new password" if acc.user in result.new_passwords else "password kept"
        print(f"  {acc.user:28} {acc.role:9} {len(acc.rules):3} ACL rules  {acc.credentials_file} ({state})")
    for cfg in sites:
        mqtt = cfg.connections.mqtt
        if mqtt.username_env is None or mqtt.password_env is None:
            print(f"note: site {cfg.site.id} names no MQTT credential variables; add `username_env: "
                  f"ALUMON_MQTT_USERNAME, password_env: ALUMON_MQTT_PASSWORD` to connections.mqtt so the services "
                  f"read the credential files")
        if not mqtt.tls:
            print(f"note: site {cfg.site.id} has connections.mqtt.tls false; the broker only speaks TLS")
