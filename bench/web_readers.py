"""What reads the web and notify processes in bench/bench_engine.py's --web-ab runs: Prometheus and a
browser (a /metrics scrape every second and the dashboard's event stream, in a process of their own, as they
would be), and a local webhook for `scalper notify`."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import redis


def wait_for(probe, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.002)
    raise TimeoutError("bench: waited too long")


class _WebWatchers:
    """A Prometheus scrape of /metrics every second and a dashboard's open event stream, on threads."""

    def __init__(self, base: str) -> None:
        import threading

        self.scrapes = self.events = 0
        self.stop = threading.Event()
        threading.Thread(target=self._scrape, args=(base,), daemon=True).start()
        threading.Thread(target=self._stream, args=(base,), daemon=True).start()

    def _scrape(self, base: str) -> None:
        import httpx

        # One client, its connection kept alive, as Prometheus scrapes: a new httpx client per scrape builds
        # an SSL context each time, and cost this process 4 times the CPU of the web process it measured.
        with httpx.Client(timeout=5) as prometheus:
            while not self.stop.is_set():
                try:
                    prometheus.get(f"{base}/metrics").raise_for_status()
                    self.scrapes += 1
                except httpx.HTTPError:
                    return  # the run is over
                self.stop.wait(1.0)

    def _stream(self, base: str) -> None:
        import httpx

        try:
            with httpx.stream("GET", f"{base}/api/stream", timeout=None) as events:
                for line in events.iter_lines():
                    self.events += line.startswith("data:")
                    if self.stop.is_set():
                        return
        except httpx.HTTPError:
            return  # the run is over


def read_web(base: str, stop: Any, reads: Any) -> None:
    """A process of its own reading the web process (throughput runs): says when it is reading, and at the
    end how many scrapes and events it got."""
    watchers = _WebWatchers(base)
    wait_for(lambda: watchers.scrapes > 0 and watchers.events > 0, timeout=20)
    reads.put(True)
    stop.wait()
    watchers.stop.set()
    reads.put((watchers.scrapes, watchers.events))


def start_reader(client: redis.Redis) -> tuple[Any, Any, Any]:
    """A process reading the web process (`read_web`), started once the first scrape and event arrived:
    the process, its stop event and its queue."""
    base = wait_for(lambda: client.get("scalper:web:url"), timeout=20).decode()
    wait_for(lambda: _answers(base), timeout=20)
    ctx = multiprocessing.get_context("spawn")
    reads, stop_reading = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=read_web, args=(base, stop_reading, reads), daemon=True)
    process.start()
    reads.get(timeout=30)
    return process, stop_reading, reads


def stop_reader(reader: tuple[Any, Any, Any]) -> None:
    process, stop_reading, reads = reader
    stop_reading.set()
    scrapes, events = reads.get(timeout=30)
    process.join(timeout=10)
    assert scrapes > 0 and events > 0, "the web process was not being read"


def _answers(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Webhook:
    """A local webhook for `scalper notify` (apprise's json://): counts what it is sent."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        webhook = self
        self.received = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                webhook.received += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
