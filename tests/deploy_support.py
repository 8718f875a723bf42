"""Shared pieces of the deploy and broker-security tests: the repository's deploy/ files and their scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from alumon.stack import require_binary
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
MAKE_CERTS = DEPLOY / "tls" / "make-certs.sh"
SITE_EXAMPLE = DEPLOY / "site.example.yaml"
COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def healthcheck(service: str) -> list[str]:
    test: list[str] = compose()["services"][service]["healthcheck"]["test"]
    return test


def make_certs(out: Path, *hosts: str, clients: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run deploy/tls/make-certs.sh (a missing openssl fails loudly, as every missing binary in these tests)."""
    require_binary("openssl")
    argv = ["bash", str(MAKE_CERTS), "-o", str(out)]
    for name in clients:
        argv += ["-c", name]
    return subprocess.run([*argv, *hosts], check=True, capture_output=True, text=True, timeout=60)
