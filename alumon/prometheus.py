"""A Prometheus text-format endpoint (``GET /metrics``) for a service's self-metrics, on its own thread.

The standard library's HTTP server is enough for one scrape every few seconds; a service hands in a function
that renders its current figures, so the endpoint never holds state of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("alumon.prometheus")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(prefix: str, counters: Mapping[str, float], gauges: Mapping[str, float],
               labels: Mapping[str, str], help_texts: Mapping[str, str]) -> str:
    """Prometheus text format: counters get ``_total``, every sample carries the same labels."""
    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    out: list[str] = []
    for kind, figures, suffix in (("counter", counters, "_total"), ("gauge", gauges, "")):
        for name, value in figures.items():
            metric = f"{prefix}_{name}{suffix}"
            if name in help_texts:
                out.append(f"# HELP {metric} {help_texts[name]}")
            out.append(f"# TYPE {metric} {kind}")
            out.append(f"{metric}{{{label_text}}} {float(value)!r}")
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsEndpoint:
    """Serves ``render()`` at ``/metrics`` on ``bind:port`` (port 0: a free one, see ``.port``)."""

    def __init__(self, bind: str, port: int, render: Callable[[], str]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

        self._server = ThreadingHTTPServer((bind, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="prometheus", daemon=True)

    def start(self) -> MetricsEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
