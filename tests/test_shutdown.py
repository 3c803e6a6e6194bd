"""Graceful shutdown: SIGTERM lets the requests in flight finish, refuses new connections, exits 0
and leaves no staging folder behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import ROOT, Spindle

HOSTILE = ROOT / "target" / "wasm32-wasip2" / "release" / "hostile.wasm"


def open_connections(server: Spindle) -> float:
    """The host's `spindle_open_connections` gauge."""
    text = requests.get(server.metrics_url, timeout=5).text
    return float(re.search(r"^spindle_open_connections(?:\{[^}]*\})? (\S+)$", text, re.M).group(1))


def sleepy_app(folder) -> os.PathLike:
    """`/slow`: a function that spins for 1.5 s a request, with a glob mount (which the host
    stages in the temporary folder) to see cleaned up."""
    (folder / "data").mkdir()
    (folder / "data" / "a.txt").write_text("a")
    manifest = folder / "spin.toml"
    manifest.write_text(f"""spin_manifest_version = 2
[application]
name = "drain"
[[trigger.http]]
route = "/slow"
component = "slow"
[component.slow]
source = "{HOSTILE}"
environment = {{ MODE = "sleepy" }}
files = ["data/*.txt"]
""")
    return manifest


def test_new_connections_are_taken_at_once_while_guests_keep_every_core_busy(tmp_path):
    """A guest runs up to an epoch tick (10 ms) before it yields; with tokio's default of 61
    task polls between looks for I/O, a new connection waited about 0.3 s (scripts/bench-
    responsiveness), and a signal as long. `--event-interval 4` makes it a few ticks."""
    server = Spindle(sleepy_app(tmp_path), "--preload")
    stop = threading.Event()
    statuses: list[int] = []

    def spin():  # one guest after another on a keep-alive connection, until told to stop
        with requests.Session() as session:
            while not stop.is_set():
                statuses.append(session.get(f"{server.url}/slow", timeout=60).status_code)

    clients = [threading.Thread(target=spin) for _ in range(20)]
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 10
        while open_connections(server) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # every guest running
        took = []
        for _ in range(10):
            began = time.monotonic()
            assert requests.get(f"{server.url}/v2/health/live", timeout=10).json() == {"live": True}
            took.append(time.monotonic() - began)
        stop.set()
        for c in clients:
            c.join()
        assert statuses and set(statuses) == {200}, statuses
        took.sort()
        # Here about 20 ms each; with tokio's default, 0.3-0.5 s for half of them.
        assert took[7] < 0.2, f"new connections waited {[round(t, 3) for t in took]} s: over 0.2 s for more than 2 of 10"
    finally:
        stop.set()
        server.stop()


def test_sigterm_drains_requests_in_flight(tmp_path, monkeypatch):
    manifest = sleepy_app(tmp_path)
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setenv("TMPDIR", str(staging))
    server = Spindle(manifest, "--shutdown-timeout-s", "20")
    try:
        assert any(staging.iterdir()), "the glob mount is staged in TMPDIR"
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = [pool.submit(requests.get, f"{server.url}/slow", timeout=60) for _ in range(20)]
            # Under load the host may take a while to accept them all: the signal comes once all
            # 20 are open (the function takes 1.5 s, so they are in flight).
            deadline = time.monotonic() + 10
            while open_connections(server) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.proc.send_signal(signal.SIGTERM)
            # The listener closes when the host sees the signal: within a moment, even with
            # both cores busy running the guests.
            host, port = server.url.removeprefix("http://").split(":")
            refused = False
            deadline = time.monotonic() + 3
            while not refused and time.monotonic() < deadline:
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                    time.sleep(0.05)
                except OSError:
                    refused = True
            statuses = [a.result().status_code for a in answers]
        assert statuses == [200] * 20, statuses
        assert refused, "a new connection was accepted while draining"
        # the signal came while all 20 were open (and perhaps a probe just before it)
        draining = re.search(r"draining: (\d+) connections open", server.stderr)
        assert draining and int(draining.group(1)) >= 20, server.stderr
        assert server.proc.wait(timeout=30) == 0
        assert not any(staging.iterdir()), list(staging.iterdir())
        assert "Shutting down" in server.stderr
    finally:
        if server.proc.poll() is None:
            server.stop()
