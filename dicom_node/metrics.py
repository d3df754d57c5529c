"""Prometheus text-format metrics (exposition format 0.0.4) and ``/healthz``, stdlib only."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

_HELP = {
    "wbspine_instances_received_total": ("counter", "Instances stored and acknowledged"),
    "wbspine_instances_rejected_total": ("counter", "C-STORE requests answered with a failure status"),
    "wbspine_instances_duplicate_total": ("counter", "Identical resends acknowledged without a copy"),
    "wbspine_instances_quarantined_total": ("counter", "Conflicting resends kept in quarantine"),
    "wbspine_series_completed_total": ("counter", "Series completed and queued for processing"),
    "wbspine_jobs_finished_total": ("counter", "Jobs finished, by outcome"),
    "wbspine_job_duration_seconds": ("summary", "Processor run time per job"),
    "wbspine_send_failures_total": ("counter", "Failed C-STORE attempts to destinations"),
    "wbspine_results_sent_total": ("counter", "Result instances acknowledged by a destination"),
    "wbspine_results_failed_total": ("counter", "Result instances given up (refused for good or past "
                                                "send.give_up_after_s), by destination"),
    "wbspine_queue_depth": ("gauge", "Jobs queued or running"),
    "wbspine_outbox_pending": ("gauge", "Result instances waiting to be sent"),
}


class Metrics:
    """Thread-safe counters; gauges are read from callbacks when scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def observe(self, name: str, value: float) -> None:
        self.inc(name + "_sum", value)
        self.inc(name + "_count", 1)

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        with self._lock:
            values = dict(self._values)
        for name, fn in self.gauges.items():
            try:
                values[(name, ())] = float(fn())
            except Exception:  # a failing gauge must not break the scrape
                log.exception("gauge %s failed", name)
        lines: list[str] = []
        for base, (kind, text) in _HELP.items():
            lines += [f"# HELP {base} {text}", f"# TYPE {base} {kind}"]
            for (name, labels), value in sorted(values.items()):
                if name == base or (kind == "summary" and name in (base + "_sum", base + "_count")):
                    lab = ",".join(f'{k}="{v}"' for k, v in labels)
                    lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` (Prometheus) and ``GET /healthz`` (JSON from ``health()``)."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict], host: str, port: int) -> None:
        metrics_ref, health_ref = metrics, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path == "/metrics":
                    body, ctype, code = metrics_ref.render().encode(), "text/plain; version=0.0.4", 200
                elif self.path == "/healthz":
                    state = health_ref()
                    body, ctype = json.dumps(state).encode(), "application/json"
                    code = 200 if state.get("ok") else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("http " + fmt, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
