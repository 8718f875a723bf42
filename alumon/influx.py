"""A small InfluxDB 1.x HTTP client: ``/write`` (line protocol) and ``/query`` (InfluxQL).

influxdb-client cannot write to or query the InfluxDB 1.6 on these machines (its v2 endpoints 404) and its
batching drops its tail on exit (shared/anchors.md §10), so writers own batching and use this client, which
does one synchronous request and reports exactly what the server said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from alumon.config import InfluxConnection, secret


class InfluxError(Exception):
    """The server refused a request. ``retryable`` is False for problems resending cannot fix."""

    def __init__(self, message: str, status: int | None, retryable: bool):
        self.status = status
        self.retryable = retryable
        super().__init__(message)


class InfluxUnavailable(InfluxError):
    """Connection refused, timeout or 5xx: the data is fine, try again later."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message, status, retryable=True)


@dataclass(frozen=True)
class PartialWrite:
    """A 400 'partial write' answer: the server stored the good lines and names what it dropped."""

    message: str


class LineWriter(Protocol):
    """What ingest needs from a database: InfluxDB 1.x (``InfluxClient``) or 2.x/3.x (``InfluxV2Client``)."""

    database: str  # database (1.x) or bucket (2.x), for messages

    def write_lines(self, lines: list[str]) -> PartialWrite | None: ...

    def create_database(self) -> None: ...

    def close(self) -> None: ...


def open_writer(conn: InfluxConnection) -> LineWriter:
    """The writer for the configured ``api``."""
    if conn.api == "v2":
        from alumon.influx_v2 import InfluxV2Client  # influxdb-client is only imported where it is used

        return InfluxV2Client.from_config(conn)
    return InfluxClient.from_config(conn)


class InfluxClient:
    def __init__(self, url: str, database: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self._session = requests.Session()
        if username is not None and password is not None:
            self._session.auth = (username, password)

    @classmethod
    def from_config(cls, conn: InfluxConnection) -> InfluxClient:
        return cls(conn.url, conn.database, secret(conn.username_env), secret(conn.password_env), conn.timeout_s)

    def close(self) -> None:
        self._session.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self._session.request(method, f"{self.url}{path}", timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise InfluxUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if resp.status_code >= 500:
            raise InfluxUnavailable(f"{method} {path}: HTTP {resp.status_code} {resp.text[:200]}", resp.status_code)
        return resp

    def ping(self) -> bool:
        try:
            return self._request("GET", "/ping").status_code == 204
        except InfluxUnavailable:
            return False

    def create_database(self) -> None:
        resp = self._request("POST", "/query", data={"q": f'CREATE DATABASE "{self.database}"'})
        if resp.status_code != 200:
            raise InfluxError(f"CREATE DATABASE: HTTP {resp.status_code} {resp.text[:200]}", resp.status_code, False)

    def write_lines(self, lines: list[str]) -> PartialWrite | None:
        """Write a batch. Returns None when all lines were stored, PartialWrite when the server kept the
        good lines and refused some; raises InfluxUnavailable (retry) or InfluxError (do not retry)."""
        if not lines:
            return None
        body = ("\n".join(lines) + "\n").encode("utf-8")
        resp = self._request("POST", "/write", params={"db": self.database, "precision": "ms"}, data=body)
        if resp.status_code == 204:
            return None
        text = resp.text[:500]
        if resp.status_code == 400 and "partial write" in text:
            return PartialWrite(_error_text(text))
        if resp.status_code == 404:
            raise InfluxError(f"database {self.database!r} not found", 404, retryable=True)
        if resp.status_code in (401, 403):  # the data is fine, the credentials are not: keep it and retry
            raise InfluxUnavailable(f"write: HTTP {resp.status_code} {_error_text(text)} (check the credentials)",
                                    resp.status_code)
        raise InfluxError(f"write: HTTP {resp.status_code} {_error_text(text)}", resp.status_code, False)

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the list of series (each with name, tags, columns, values)."""
        resp = self._request("POST", "/query", data={"q": q, "db": self.database, "epoch": "ms"})
        if resp.status_code != 200:
            raise InfluxError(f"query: HTTP {resp.status_code} {_error_text(resp.text[:500])}", resp.status_code,
                              False)
        payload = resp.json()
        series: list[dict[str, Any]] = []
        for result in payload.get("results", []):
            if "error" in result:
                raise InfluxError(f"query: {result['error']}", resp.status_code, False)
            series.extend(result.get("series", []))
        return series

    def query_scalar(self, q: str) -> float | None:
        """First value of the first row (e.g. SELECT count(...)); None when there is no data."""
        series = self.query(q)
        if not series or not series[0].get("values"):
            return None
        value = series[0]["values"][0][1]
        return None if value is None else float(value)


def _error_text(text: str) -> str:
    try:
        return str(json.loads(text).get("error", text))
    except ValueError:
        return text
