"""Portable builds: the cifar10 function composed with the wasi:nn provider runs where no
wasi:nn exists — Spindle with `--no-wasi-nn`, and `wasmtime serve` — with the same answers."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from conftest import ROOT, SPINDLE, Spindle, dataset, png

PORTABLE_MANIFEST = ROOT / "spin.portable.toml"
PORTABLE_WASM = ROOT / "target/wasm32-wasip2/release/cifar10.portable.wasm"


def answers(url, images, pixels):
    single = [requests.post(f"{url}/models/cifar10/classify?top_k=10", data=png(i), timeout=120).json() for i in images]
    client = triton.InferenceServerClient(url.removeprefix("http://"), connection_timeout=120, network_timeout=120)
    inp = triton.InferInput("input", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    batch = client.infer("cifar10", [inp]).as_numpy("probabilities")
    names = [str(i) for i in range(10)]
    single = np.array([[dict((p["label"], p["probability"]) for p in a)[n] for n in names] for a in single])
    return single, batch


@pytest.fixture(scope="module")
def reference(spindle, heldout):
    x = heldout[0][:6]
    return x, answers(spindle.url, x, dataset.to_model_input(x))


def test_the_build_writes_a_manifest_for_spin():
    import tomllib

    assert PORTABLE_WASM.exists(), "scripts/test runs `spindle build --portable` first"
    manifest = tomllib.loads(PORTABLE_MANIFEST.read_text())
    original = tomllib.loads((ROOT / "spin.toml").read_text())
    assert manifest["component"]["cifar10"]["source"] == "target/wasm32-wasip2/release/cifar10.portable.wasm"
    assert manifest["trigger"] == original["trigger"]
    assert manifest["component"]["cifar10"]["files"] == original["component"]["cifar10"]["files"]


def test_without_wasi_nn_only_portable_builds_start():
    run = subprocess.run([str(SPINDLE), "up", "--no-wasi-nn", "--preload", "--no-cache", "--listen", "127.0.0.1:0", "--admin-listen", "none"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode != 0
    # every component imports wasi:nn; whichever preload fails first is reported
    assert re.search(r"component '(cifar10|cifar10-int8|ppocr-det|embed|vad|ocr)': linking imports", run.stderr) and "wasi:nn" in run.stderr


def test_portable_build_under_spindle_without_wasi_nn(reference):
    x, (want_single, want_batch) = reference
    server = Spindle(PORTABLE_MANIFEST, "--no-wasi-nn")
    try:
        single, batch = answers(server.url, x, dataset.to_model_input(x))
    finally:
        server.stop()
    np.testing.assert_allclose(single, want_single, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(batch, want_batch, rtol=1e-4, atol=1e-7)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_portable_build_under_wasmtime_serve(reference, tmp_path):
    wasmtime = shutil.which("wasmtime")
    assert wasmtime, "scripts/setup --python installs wasmtime-cli 48.0.8"
    x, (want_single, want_batch) = reference
    port = free_port()
    cache = tmp_path / "wasmtime-cache.toml"
    cache.write_text(f'[cache]\ndirectory = "{ROOT / "target/test-wasmtime-cache"}"\n')
    proc = subprocess.Popen([wasmtime, "serve", "--addr", f"127.0.0.1:{port}", "-C", "cache=y", "-C", f"cache-config={cache}",
                             "-Wcomponent-model-async=y", "-Sp3=y", "-Scli=y",
                             "--dir", f"{ROOT / 'models/cifar10'}::/models/cifar10", str(PORTABLE_WASM)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/v2/models/cifar10", timeout=120)
                break
            except requests.ConnectionError:
                assert time.time() < deadline and proc.poll() is None, "wasmtime serve did not start"
                time.sleep(0.2)
        single, batch = answers(f"http://127.0.0.1:{port}", x, dataset.to_model_input(x))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    np.testing.assert_allclose(single, want_single, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(batch, want_batch, rtol=1e-4, atol=1e-7)
