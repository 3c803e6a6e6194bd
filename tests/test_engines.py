"""Engines and their selection: every shipped model gives the same answers on every available
engine, and the host says which engine and device each component got, and why."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from conftest import ROOT, SPINDLE, Spindle, dataset, png

CPU_ENGINES = ["tract", "onnxruntime"]


@pytest.fixture(scope="module")
def servers():
    started = {engine: Spindle(ROOT / "spin.toml", "--engine", engine) for engine in CPU_ENGINES}
    yield started
    for server in started.values():
        server.stop()


def test_each_engine_serves_what_it_was_asked_for(servers):
    for engine, server in servers.items():
        (entry,) = requests.get(f"{server.url}/v2/models", timeout=30).json()["models"]
        assert (entry["engine"], entry["device"]) == (engine, "cpu")


def test_every_engine_gives_the_same_answers(servers, heldout):
    x, _, names = heldout
    pixels = dataset.to_model_input(x[:16])
    answers = {}
    for engine, server in servers.items():
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        inp = triton.InferInput("input", list(pixels.shape), "FP32")
        inp.set_data_from_numpy(pixels)
        batch = client.infer("cifar10", [inp]).as_numpy("probabilities")
        single = [requests.post(f"{server.url}/models/cifar10/classify?top_k=10", data=png(image), timeout=30).json()
                  for image in x[:8]]
        single = np.array([[dict((p["label"], p["probability"]) for p in a)[n] for n in names] for a in single])
        answers[engine] = (batch, single)
    (tb, ts), (ob, os_) = answers["tract"], answers["onnxruntime"]
    np.testing.assert_allclose(ob, tb, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(os_, ts, rtol=1e-4, atol=1e-7)


def refused_start(*args):
    run = subprocess.run([str(SPINDLE), "up", "--listen", "127.0.0.1:0", "--no-cache", *args],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0
    return run.stderr


def test_asking_for_what_is_missing_is_an_error_not_a_fallback():
    err = refused_start("--engine", "onnxruntime", "--onnxruntime", "/nonexistent/libonnxruntime.so")
    assert "component 'cifar10': engine onnxruntime was asked for but is unavailable: --onnxruntime /nonexistent" in err
    err = refused_start("--device", "gpu")
    assert "component 'cifar10': device gpu was asked for but no GPU engine is ready" in err


def test_a_component_can_choose_its_engine(tmp_path):
    manifest = tmp_path / "spin.toml"
    text = (ROOT / "spin.toml").read_text().replace('source = "target/', f'source = "{ROOT}/target/')
    text = text.replace('files = ["models/cifar10/model.onnx"]', f'files = [{{ source = "{ROOT}/models/cifar10", destination = "/models/cifar10" }}]')
    manifest.write_text(text + '\n[component.cifar10.tool.spindle]\nengine = "tract"\n')
    server = Spindle(manifest)
    try:
        (entry,) = requests.get(f"{server.url}/v2/models", timeout=30).json()["models"]
        assert entry["engine"] == "tract"
    finally:
        server.stop()


def gpu_reason() -> str | None:
    if not Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (no /dev/nvidia0 or nvidia-smi)"
    return "this build has no GPU engine yet"


def test_gpu_answers_equal_cpu():
    reason = gpu_reason()
    if reason:
        print(f"GPU test skipped: {reason}")
        pytest.skip(reason)
