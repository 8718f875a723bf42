"""The ``api: v2`` writer: InfluxDB 2.x, 3.x or Cloud (``/api/v2/write``, token, org, bucket) through
influxdb-client, with the same interface and error contract as the 1.x ``InfluxClient`` (alumon/influx.py).

Only the SYNCHRONOUS write API is used: its batching API buffers in a background thread and drops its tail on
exit (shared/anchors.md §10), and ingest already batches and keeps unwritten data in its disk buffer. The client
is built with no urllib3 retries, so an outage comes back to the caller within ``timeout_s`` instead of being
retried inside the library while ingest waits.

Errors map to what the caller does with the data:

- no connection, timeout, TLS failure, 5xx, 429 -> ``InfluxUnavailable`` (keep it, retry later)
- 401/403 -> ``InfluxUnavailable`` too: the data is fine, the token is not; it must be kept, not dropped
- 400/422 whose body says "partial write" -> ``PartialWrite`` (the server kept the good lines)
- 404 (bucket or org not found) -> ``InfluxError(status=404, retryable=True)``
- any other 4xx -> ``InfluxError(retryable=False)``: resending the same lines cannot succeed
"""

from __future__ import annotations

import json
import re
from typing import cast

import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.ping_service import PingService

from alumon.config import InfluxConnection, secret
from alumon.influx import InfluxError, InfluxUnavailable, PartialWrite

_PARTIAL = re.compile(r"partial write", re.IGNORECASE)
# The library declares its precision constants as plain ``str`` class attributes but ``write`` as taking the class.
_MS = cast(WritePrecision, WritePrecision.MS)


class InfluxV2Client:
    """Writes line protocol (millisecond timestamps) to one bucket. ``database`` holds the bucket name, so
    callers written for the 1.x client can name it in their messages."""

    def __init__(self, url: str, org: str, bucket: str, token: str | None, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.database = bucket  # LineWriter protocol: the name callers log
        self.timeout_s = timeout_s
        # token "" rather than None: the library's parameter is typed ``str``, and an empty token sends no
        # Authorization header, exactly as None would. retries=False: one attempt per call (see module doc).
        self._client = InfluxDBClient(url=self.url, token=token or "", org=org,
                                      timeout=max(1, round(timeout_s * 1000)), retries=False)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    @classmethod
    def from_config(cls, conn: InfluxConnection) -> InfluxV2Client:
        if conn.org is None or conn.bucket is None:  # the config validator requires both with api: v2
            raise ValueError("InfluxDB v2 connection needs `org` and `bucket`")
        return cls(conn.url, conn.org, conn.bucket, secret(conn.token_env), conn.timeout_s)

    def close(self) -> None:
        # Both unannotated in influxdb-client. SYNCHRONOUS: nothing is queued, closing loses nothing.
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]

    def write_lines(self, lines: list[str]) -> PartialWrite | None:
        """Write a batch. Returns None when all lines were stored, PartialWrite when the server kept the
        good lines and refused some; raises InfluxUnavailable (retry) or InfluxError (do not retry)."""
        if not lines:
            return None
        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=lines,
                                  write_precision=_MS)
        except ApiException as exc:
            partial = _partial_write(exc)
            if partial is not None:
                return partial
            raise self._error("write", exc) from exc
        except (InfluxDBError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error("write", exc) from exc
        return None

    def ping(self) -> bool:
        try:
            self._ping()
        except InfluxError:
            return False
        return True

    def create_database(self) -> None:
        """Only checks that the server answers. A v2 bucket is provisioned by the operator together with its
        retention and a token scoped to it; a write token usually may not create buckets, and creating one with a
        default retention behind the operator's back would hide a misconfigured bucket name. A missing bucket
        shows up as the 404 of the next write (retryable, so data is buffered until it exists)."""
        self._ping()

    def _ping(self) -> None:
        try:
            PingService(self._client.api_client).get_ping()  # type: ignore[no-untyped-call]  # unannotated
        except (InfluxDBError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._error("ping", exc) from exc

    def _error(self, what: str, exc: Exception) -> InfluxError:
        """The InfluxError (or InfluxUnavailable) the caller acts on, for anything but a partial write."""
        if not isinstance(exc, ApiException):  # no HTTP answer: refused, reset, timed out, DNS
            return InfluxUnavailable(f"{what} {self.url}: {type(exc).__name__}: {exc}")
        status = exc.status if isinstance(exc.status, int) else 0
        detail = _detail(exc)
        if status == 0:  # the library's code for a TLS failure: no HTTP answer either
            return InfluxUnavailable(f"{what} {self.url}: {detail}")
        if status >= 500 or status == 429:  # 429: InfluxDB Cloud rate limit; the data is fine, send it later
            return InfluxUnavailable(f"{what}: HTTP {status} {detail}", status)
        if status in (401, 403):  # the data is fine, the token is not: keep the data and retry
            return InfluxUnavailable(f"{what}: HTTP {status} {detail} (check the token in the variable named by "
                                     f"`token_env`, and that it may write to bucket {self.bucket!r})", status)
        if status == 404:
            return InfluxError(f"{what}: bucket {self.bucket!r} or org {self.org!r} not found: {detail}", 404,
                               retryable=True)
        return InfluxError(f"{what}: HTTP {status} {detail}", status, retryable=False)


def _body(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else ""


def _detail(exc: ApiException) -> str:
    """The server's own message (the library takes ``message`` from a JSON body), shortened for logs."""
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else _body(exc) or str(exc.reason)
    return text.strip()[:300]


def _partial_write(exc: ApiException) -> PartialWrite | None:
    """A 400/422 partial-write answer, its message ending in ``dropped=N`` where the server says how many.

    InfluxDB 2.x writes "partial write: ... dropped=N" in ``message``; InfluxDB 3.x answers
    ``{"error": "partial write of line protocol occurred", "data": [one entry per refused line]}``, so N is
    appended from ``data`` for ingest's count of refused lines."""
    body = _body(exc)
    if exc.status not in (400, 422) or not _PARTIAL.search(body):
        return None
    message = _detail(exc)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        message = str(payload.get("message") or payload.get("error") or message)
        refused = payload.get("data")
        if isinstance(refused, list) and refused and "dropped=" not in message:
            first = refused[0].get("error_message", "") if isinstance(refused[0], dict) else ""
            message = f"{message}: {first} dropped={len(refused)}" if first else f"{message} dropped={len(refused)}"
    return PartialWrite(message)
