"""``alumon grafana push``: the data source and the dashboards into a running Grafana through its HTTP API
(grafana-client), idempotently: the data source is created or updated under its fixed uid, the folder is
created once, and each dashboard is saved under its own uid with ``overwrite`` so Grafana keeps one dashboard
and bumps its version.

The API token comes from an environment variable and goes only into the Authorization header: it is never
printed or logged, and neither is the InfluxDB password a data source may carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from alumon.config import InfluxConnection, secret
from alumon.dashboards.dataquery import DATASOURCE_NAME, DATASOURCE_TYPE, DATASOURCE_UID

FOLDER_UID = "alumon"
FOLDER_TITLE = "alumon"
# Grafana only reads: as in grafana/provisioning/datasources/alumon.yaml, InfluxDB's read-only user when given.
READ_USER_ENV, READ_PASSWORD_ENV = "ALUMON_INFLUX_READ_USER", "ALUMON_INFLUX_READ_PASSWORD"


@dataclass
class PushResult:
    datasource: str = ""  # created | updated | skipped
    folder: str = ""  # created | exists
    dashboards: list[tuple[str, int, str]] = field(default_factory=list)  # uid, version, url


def datasource(url: str, database: str, user: str | None = None, password: str | None = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The data source the dashboards reference: InfluxQL over HTTP POST, as provisioned by
    grafana/provisioning/datasources/alumon.yaml."""
    body: dict[str, Any] = {"uid": DATASOURCE_UID, "name": DATASOURCE_NAME, "type": DATASOURCE_TYPE,
                            "access": "proxy", "url": url,
                            "jsonData": {"dbName": database, "httpMode": "POST", "timeInterval": "1s"}}
    secure: dict[str, str] = {}
    if user:
        body["user"] = user
        secure["password"] = password or ""
    for i, (name, value) in enumerate((headers or {}).items(), start=1):  # InfluxDB 2.x/3.x token (DBRP mapping)
        body["jsonData"][f"httpHeaderName{i}"] = name
        secure[f"httpHeaderValue{i}"] = value
    if secure:
        body["secureJsonData"] = secure
    return body


def read_user() -> tuple[str | None, str | None]:
    return secret(READ_USER_ENV), secret(READ_PASSWORD_ENV)


def datasource_for(conn: InfluxConnection) -> dict[str, Any]:
    """From the site's InfluxDB connection; secrets are read from environment variables: the read-only user's
    when set, else those the site names."""
    if conn.api == "v2":
        token = secret(conn.token_env) or ""
        return datasource(conn.url, conn.bucket or "", headers={"Authorization": f"Token {token}"})
    user, password = read_user()
    if user is None:
        user, password = secret(conn.username_env), secret(conn.password_env)
    return datasource(conn.url, conn.database, user, password)


def connect(url: str, token: str | None, timeout_s: float = 10.0) -> Any:
    """A GrafanaApi; without a token, credentials may come from the URL (``http://user:pass@host:3000``)."""
    return GrafanaApi.from_url(url, credential=token, timeout=timeout_s)


def _status(exc: Any) -> int | None:
    return getattr(exc, "status_code", None)


def upsert_datasource(api: Any, body: dict[str, Any]) -> str:
    try:
        api.datasource.get_datasource_by_uid(body["uid"])
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise
        api.datasource.create_datasource(body)
        return "created"
    api.datasource.update_datasource_by_uid(body["uid"], body)
    return "updated"


def ensure_folder(api: Any, uid: str = FOLDER_UID, title: str = FOLDER_TITLE) -> str:
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise
        api.folder.create_folder(title, uid=uid)
        return "created"
    return "exists"


def push(api: Any, boards: list[dict[str, Any]], source: dict[str, Any] | None,
         folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE) -> PushResult:
    result = PushResult(datasource=upsert_datasource(api, source) if source is not None else "skipped")
    result.folder = ensure_folder(api, folder_uid, folder_title)
    for board in boards:
        # id and version belong to one Grafana instance; the uid is what identifies the dashboard everywhere.
        body = {k: v for k, v in board.items() if k not in ("id", "version")}
        answer = api.dashboard.update_dashboard({"dashboard": body, "folderUid": folder_uid, "overwrite": True,
                                                 "message": "alumon grafana push"})
        result.dashboards.append((str(answer.get("uid", body["uid"])), int(answer.get("version", 0)),
                                  str(answer.get("url", ""))))
    return result
