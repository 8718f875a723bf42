"""``alumon grafana push`` against a stand-in for Grafana's HTTP API.

Why not a real Grafana: none can be installed on these machines or in CI (not in Debian, PyPI or npm:
shared/environment.md §1.3). The stand-in below implements the handful of endpoints grafana-client calls for a
push (data source by uid, folders, ``/api/dashboards/db``) with Grafana's documented answers, keeps what it
was sent, and bumps a dashboard's version on every overwrite as Grafana does, so idempotency is checked on
what actually went over the wire.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from alumon.cli import app
from alumon.dashboards.dataquery import DATASOURCE_UID
from tests.conftest import EXAMPLE_SITE, REPO

TOKEN = "glsa_test-token-never-printed"


@dataclass
class FakeGrafana:
    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)  # method, path, auth, body
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, version, folderUid}
    url: str = ""

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            ds = self.datasources.get(path.rsplit("/", 1)[1])
            return (200, ds) if ds else (404, {"message": "Data source not found"})
        if method == "POST" and path == "/api/datasources":
            if body["uid"] in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            self.datasources[body["uid"]] = {**body, "id": len(self.datasources) + 1}
            return 200, {"message": "Datasource added", "id": len(self.datasources), "datasource": body}
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            self.datasources[uid] = {**body, "id": self.datasources[uid]["id"]}
            return 200, {"message": "Datasource updated", "datasource": body}
        if method == "GET" and path.startswith("/api/folders/"):
            folder = self.folders.get(path.rsplit("/", 1)[1])
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": len(self.folders) + 1}
            return 200, self.folders[body["uid"]]
        if method == "POST" and path == "/api/dashboards/db":
            board = body["dashboard"]
            old = self.dashboards.get(board["uid"])
            if old is not None and not body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            version = (old["version"] + 1) if old else 1
            self.dashboards[board["uid"]] = {"dashboard": board, "version": version, "folderUid": body["folderUid"]}
            return 200, {"id": len(self.dashboards), "uid": board["uid"], "status": "success", "version": version,
                         "url": f"/d/{board['uid']}/x", "slug": "x"}
        return 404, {"message": f"not implemented in the stand-in: {method} {path}"}


def _handler(fake: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.requests.append((self.command, self.path, self.headers.get("Authorization", ""), body))
            status, answer = fake.handle(self.command, self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _serve  # http.server dispatches on these names

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
            pass

    return Handler


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def push(fake: FakeGrafana, *args: str, token: str | None = TOKEN, **env_vars: str) -> Any:
    env = {"NO_PROXY": "127.0.0.1", "GRAFANA_TOKEN": token or "", **env_vars}
    return CliRunner().invoke(app, ["grafana", "push", "--url", fake.url, *args], env=env)


def test_push_creates_then_overwrites_in_place(grafana: FakeGrafana) -> None:
    first = push(grafana, "--site", str(EXAMPLE_SITE))
    assert first.exit_code == 0, first.output
    assert TOKEN not in first.output
    assert f"data source {DATASOURCE_UID}: created; folder alumon: created" in first.output
    calls = [(m, p) for m, p, _, _ in grafana.requests]
    assert calls[:4] == [("GET", f"/api/datasources/uid/{DATASOURCE_UID}"), ("POST", "/api/datasources"),
                         ("GET", "/api/folders/alumon"), ("POST", "/api/folders")]
    assert calls[4:] == [("POST", "/api/dashboards/db")] * 6
    assert {auth for _, _, auth, _ in grafana.requests} == {f"Bearer {TOKEN}"}
    ds = grafana.datasources[DATASOURCE_UID]
    assert (ds["type"], ds["url"], ds["jsonData"]["dbName"]) == ("influxdb", "http://127.0.0.1:8086", "alumon")
    uids = sorted(grafana.dashboards)
    assert len(uids) == 6 and all(d["version"] == 1 and d["folderUid"] == "alumon"
                                  for d in grafana.dashboards.values())
    bodies = [b for m, p, _, b in grafana.requests if p == "/api/dashboards/db"]
    assert all(b["overwrite"] is True and "id" not in b["dashboard"] for b in bodies)

    grafana.requests.clear()
    second = push(grafana, "--site", str(EXAMPLE_SITE))
    assert second.exit_code == 0, second.output
    assert f"data source {DATASOURCE_UID}: updated; folder alumon: exists" in second.output
    calls = [(m, p) for m, p, _, _ in grafana.requests]
    assert calls[:3] == [("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
                         ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"), ("GET", "/api/folders/alumon")]
    # Same uids, overwritten: still six dashboards, each now at version 2; one data source, one folder.
    assert sorted(grafana.dashboards) == uids and {d["version"] for d in grafana.dashboards.values()} == {2}
    assert len(grafana.datasources) == 1 and len(grafana.folders) == 1
    assert second.output.count("version 2") == 6


def test_push_a_prebuilt_directory_with_the_read_only_user(grafana: FakeGrafana) -> None:
    result = push(grafana, "--dir", str(REPO / "grafana" / "dashboards"), "--influx-url", "http://influx:8086",
                  "--database", "plant", ALUMON_INFLUX_READ_USER="grafana_ro",
                  ALUMON_INFLUX_READ_PASSWORD="ro-secret-42")
    assert result.exit_code == 0, result.output
    committed = {json.loads(p.read_text())["uid"] for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    assert set(grafana.dashboards) == committed
    ds = grafana.datasources[DATASOURCE_UID]
    assert (ds["url"], ds["jsonData"]["dbName"], ds["user"]) == ("http://influx:8086", "plant", "grafana_ro")
    assert ds["secureJsonData"] == {"password": "ro-secret-42"} and "ro-secret-42" not in result.output


def test_push_without_a_token_is_refused_before_any_request(grafana: FakeGrafana) -> None:
    result = push(grafana, "--site", str(EXAMPLE_SITE), token=None)
    assert result.exit_code == 2
    assert "GRAFANA_TOKEN" in result.output
    assert grafana.requests == []


def test_a_refusal_is_reported_without_the_token(grafana: FakeGrafana) -> None:
    grafana.folders["alumon"] = {"uid": "alumon", "title": "alumon", "id": 1}
    grafana.handle = lambda method, path, body: (403, {"message": "Access denied"})  # type: ignore[method-assign]
    result = push(grafana, "--site", str(EXAMPLE_SITE))
    assert result.exit_code == 1
    assert "Access denied" in result.output and TOKEN not in result.output
