"""Fixtures: the real `spindle` binary on port 0 with the real built components and models."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models" / "cifar10"))
import dataset  # noqa: E402

SPINDLE = ROOT / "target" / "release" / "spindle"
CIFAR10_WASM = ROOT / "target" / "wasm32-wasip2" / "release" / "cifar10.wasm"
MODEL = ROOT / "models" / "cifar10" / "model.onnx"
TEST_CACHE = ROOT / "target" / "test-component-cache"


class Spindle:
    """A running `spindle up`: its base URL and everything it logged to stderr."""

    def __init__(self, manifest: Path, *args: str, until: str = "Serving", env: dict | None = None, start_timeout: float = 120):
        """Starts it and returns once it prints `until` and its URL (`Listening on` comes before
        `--preload` has loaded everything; `Serving` after), within `start_timeout` seconds."""
        assert SPINDLE.exists(), f"{SPINDLE} is missing: run scripts/test (it builds the host first)"
        if "--no-cache" not in args and "--cache-dir" not in args:
            args = ("--cache-dir", str(TEST_CACHE), *args)
        if "--admin-listen" not in args:
            args = ("--admin-listen", "127.0.0.1:0", *args)
        self.proc = subprocess.Popen(
            [str(SPINDLE), "up", "-f", str(manifest), "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env if env is not None else {**os.environ, "NO_COLOR": "1", "RUST_LOG": "spindle=info"},
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.time() + start_timeout
        self.url = None
        self.metrics_url = None  # the admin listener's /metrics
        self.banner: list[str] = []  # what it printed before serving: the engine and component tables
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.banner.append(line.rstrip("\n"))
            if m := re.match(r"Metrics on (http://\S+)", line):
                self.metrics_url = m.group(1)
            m = re.match(rf"{until} (https?://[^\s,]+)", line)
            if m:
                self.url = m.group(1)
                break
        if self.url is None:
            self.stop()
            raise RuntimeError(f"spindle did not start:\n{self.stderr}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def spindle():
    server = Spindle(ROOT / "spin.toml")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def heldout():
    """The held-out split (uint8 CIFAR-format images, labels) and the label names."""
    _, (x, y), names = dataset.load_digits_split()
    return x, y, names


@pytest.fixture(scope="session")
def onnxruntime_probs():
    import onnxruntime as ort

    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return lambda x: sess.run(["probabilities"], {"input": np.asarray(x, dtype=np.float32)})[0]


def png(image_uint8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_uint8).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(image_uint8: np.ndarray, size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_uint8).resize((size, size), Image.NEAREST).save(buf, format="JPEG", quality=95)
    return buf.getvalue()
