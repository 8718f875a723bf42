"""The edge publishes through a TLS listener that requires a client certificate (mosquitto, certificates
made with openssl for the test); with a CA that did not sign the broker's certificate nothing is sent."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml

from alumon.config import Site, load_site
from alumon.stack import Server, free_port, require_binary, start_mosquitto
from tests.edge_support import Observer, edge, running, sim, small_site


def make_pki(d: Path) -> None:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    openssl = require_binary("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    d.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=alumon test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            "2", "-extfile", "san.ext", "-out", f"{name}.crt")


def with_mqtt(site: Site, path: Path, mqtt: dict[str, object]) -> Site:
    data = yaml.safe_load(site.path.read_text())
    data["connections"]["mqtt"] = mqtt
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


def test_edge_over_tls_with_client_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    plain, tls = free_port(), free_port()
    broker: Server = start_mosquitto(tmp_path / "broker", port=plain, extra_conf="\n".join([
        f"listener {tls} 127.0.0.1", f"cafile {pki / 'ca.crt'}", f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}", "require_certificate true"]))
    obs = Observer(plain, "obs-tls")
    try:
        base = small_site(tmp_path, plain)
        mqtt = {"host": "127.0.0.1", "port": tls, "tls": True, "ca_file": str(pki / "ca.crt"),
                "cert_file": str(pki / "client.crt"), "key_file": str(pki / "client.key")}
        good = with_mqtt(base, tmp_path / "good.yaml", mqtt)
        wrong_ca = with_mqtt(base, tmp_path / "wrong.yaml", {**mqtt, "ca_file": str(pki / "other-ca.crt")})
        with running(sim(base)):
            with running(edge(wrong_ca, tmp_path / "spool-wrong")):
                time.sleep(2.5)
            assert sum(len(obs.seqs(d.id)) for d in base.config.devices) == 0  # the broker was not trusted
            with running(edge(good, tmp_path / "spool-good")):
                time.sleep(2.5)
        time.sleep(0.5)
        for dev in base.config.devices:
            seqs = obs.seqs(dev.id)
            assert len(seqs) >= 4 and seqs == list(range(len(seqs))), (dev.id, seqs)
    finally:
        obs.close()
        broker.stop()
