"""Graceful shutdown: SIGTERM lets the requests in flight finish, refuses new connections, exits 0
and leaves no staging folder behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import ROOT, Spindle

HOSTILE = ROOT / "target" / "wasm32-wasip2" / "release" / "hostile.wasm"


def open_connections(server: Spindle) -> float:
    """The host's `spindle_open_connections` gauge."""
    text = requests.get(server.metrics_url, timeout=5).text
    return float(re.search(r"^spindle_open_connections(?:\{[^}]*\})? (\S+)$", text, re.M).group(1))


def test_sigterm_drains_requests_in_flight(tmp_path, monkeypatch):
    # A function that takes 1.5 s a request, with a glob mount (which the host stages in the
    # temporary folder) to see cleaned up.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    manifest = tmp_path / "spin.toml"
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
