"""Engines and their selection: every shipped model gives the same answers on every available
engine, and the host says which engine and device each component got, and why."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from conftest import ROOT, SPINDLE, Spindle, dataset, png

sys.path.insert(0, str(ROOT / "models" / "ppocr-det"))
import sample  # noqa: E402

CPU_ENGINES = ["tract", "onnxruntime"]
PPOCR = ROOT / "models" / "ppocr-det" / "model.onnx"
# PP-OCR's text map is 0-1 and deep: ONNX Runtime's own optimisation levels differ by 1.1e-4 on it.
PPOCR_ATOL = 1e-3


@pytest.fixture(scope="module")
def servers():
    started = {engine: Spindle(ROOT / "spin.toml", "--engine", engine, "--device", "cpu") for engine in CPU_ENGINES}
    yield started
    for server in started.values():
        server.stop()


def test_each_engine_serves_what_it_was_asked_for(servers):
    for engine, server in servers.items():
        models = requests.get(f"{server.url}/v2/models", timeout=30).json()["models"]
        assert sorted(m["name"] for m in models) == ["all-MiniLM-L6-v2", "cifar10", "cifar10-int8", "ppocr-det"]
        assert {(m["engine"], m["device"]) for m in models} == {(engine, "cpu")}


def cnn_answers(server, heldout):
    """The CNN's answers through the protocol (a batch) and the friendly endpoint (one by one)."""
    x, _, names = heldout
    pixels = dataset.to_model_input(x[:16])
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    inp = triton.InferInput("input", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    batch = client.infer("cifar10", [inp]).as_numpy("probabilities")
    single = [requests.post(f"{server.url}/models/cifar10/classify?top_k=10", data=png(image), timeout=30).json()
              for image in x[:8]]
    return batch, np.array([[dict((p["label"], p["probability"]) for p in a)[n] for n in names] for a in single])


def text_map(server, x):
    """PP-OCR's text map for `x`, through the generic protocol function with binary tensors."""
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=300)
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    out = triton.InferRequestedOutput("sigmoid_0.tmp_0", binary_data=True)
    return client.infer("ppocr-det", [inp], outputs=[out]).as_numpy("sigmoid_0.tmp_0")


def test_every_engine_gives_the_same_answers_on_the_cnn(servers, heldout):
    (tb, ts), (ob, os_) = (cnn_answers(servers[e], heldout) for e in CPU_ENGINES)
    np.testing.assert_allclose(ob, tb, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(os_, ts, rtol=1e-4, atol=1e-7)


def squeeze_all(lines) -> str:
    return "".join("".join(line["text"] for line in lines).split())


def test_every_engine_runs_the_new_model_functions(servers, heldout):
    """The quantised CNN (QDQ int8) gives ONNX Runtime's held-out predictions on every engine, the
    int8 encoder behind /v1/embeddings the same vectors, Silero VAD the same probabilities, and
    PP-OCR the same lines."""
    import onnxruntime as ort

    x, _, _ = heldout
    pixels = dataset.to_model_input(x)
    session = ort.InferenceSession(str(ROOT / "models/cifar10-int8/model.onnx"), providers=["CPUExecutionProvider"])
    reference = session.run(["probabilities"], {"input": pixels})[0]
    texts = ["Engines must agree.", "Café 東京 🍕"]
    vectors = {}
    for engine, server in servers.items():
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        got = []
        for start in range(0, len(pixels), 32):
            inp = triton.InferInput("input", list(pixels[start:start + 32].shape), "FP32")
            inp.set_data_from_numpy(pixels[start:start + 32])
            got.append(client.infer("cifar10-int8", [inp]).as_numpy("probabilities"))
        got = np.concatenate(got)
        assert (got.argmax(1) == reference.argmax(1)).all(), engine
        np.testing.assert_allclose(got, reference, atol=2e-2, err_msg=engine)
        answer = requests.post(f"{server.url}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts}, timeout=120)
        vectors[engine] = np.array([d["embedding"] for d in answer.json()["data"]])
    for a, b in zip(vectors["tract"], vectors["onnxruntime"]):
        assert 1 - float(a @ b) < 1e-4
    # Silero VAD's LSTM, over 3 s of a chirp and noise: the same speech probability per window.
    rate = 16_000
    t = np.arange(3 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + np.random.default_rng(0).normal(0, 0.02, t.size)).clip(-1, 1)
    import io
    import wave

    body = io.BytesIO()
    with wave.open(body, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate), w.writeframes((audio * 32767).astype("<i2").tobytes())
    probabilities = {engine: requests.post(f"{server.url}/models/vad/segments?probabilities=true", data=body.getvalue(),
                                           timeout=120).json()["probabilities"] for engine, server in servers.items()}
    np.testing.assert_allclose(probabilities["tract"], probabilities["onnxruntime"], atol=1e-3)
    # PP-OCR's detector and recogniser in one pipeline: the same lines, boxes and confidences.
    from test_ocr import render

    page = render(["Engines read alike", "line two 42"], 32, 0)
    read = {engine: requests.post(f"{server.url}/models/ocr/read", data=page, timeout=300).json()["lines"]
            for engine, server in servers.items()}
    assert [line["text"] for line in read["tract"]] == [line["text"] for line in read["onnxruntime"]]
    assert squeeze_all(read["tract"]) == "Enginesreadalikelinetwo42"
    for a, b in zip(read["tract"], read["onnxruntime"]):
        assert a["box"] == b["box"] and abs(a["confidence"] - b["confidence"]) < 1e-3


def test_every_engine_gives_the_same_answers_on_text_detection(servers):
    import onnxruntime as ort

    # two shapes: tract compiles this model once per input shape
    for height, width in [(96, 320), (160, 160)]:
        x = sample.text_image(height, width)
        reference = ort.InferenceSession(str(PPOCR), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert reference.shape == (1, 1, height, width) and (reference > 0.3).mean() > 0.01, "the sample has text"
        for engine, server in servers.items():
            np.testing.assert_allclose(text_map(server, x), reference, rtol=1e-4, atol=PPOCR_ATOL, err_msg=engine)


def test_more_threads_per_engine_job_give_the_same_answers(servers, heldout):
    for engine in CPU_ENGINES:
        threaded = Spindle(ROOT / "spin.toml", "--engine", engine, "--device", "cpu", "--engine-threads", "2")
        try:
            (tb, ts), (mb, ms) = cnn_answers(servers[engine], heldout), cnn_answers(threaded, heldout)
            np.testing.assert_allclose(mb, tb, rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(ms, ts, rtol=1e-4, atol=1e-7)
            x = sample.text_image(96, 320)
            np.testing.assert_allclose(text_map(threaded, x), text_map(servers[engine], x), rtol=1e-4, atol=PPOCR_ATOL)
        finally:
            threaded.stop()
    assert "--engine-threads" in refused_start("--engine-threads", "0")


def test_a_shape_the_model_cannot_take_is_a_client_error(servers):
    x = sample.text_image(96, 320)[:, :, :90, :]
    for engine, server in servers.items():
        r = requests.post(f"{server.url}/v2/models/ppocr-det/infer", timeout=60, json={
            "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
        assert r.status_code == 400, (engine, r.text)
        assert "cannot run on input shapes [[1, 3, 90, 320]]" in r.json()["error"], engine
        x_ok = sample.text_image(96, 320)
        assert text_map(server, x_ok).shape == (1, 1, 96, 320), "the graph still serves after the failure"


def refused_start(*args):
    run = subprocess.run([str(SPINDLE), "up", "--listen", "127.0.0.1:0", "--admin-listen", "none", "--no-cache", *args],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0
    return run.stderr


def test_asking_for_what_is_missing_is_an_error_not_a_fallback():
    err = refused_start("--engine", "onnxruntime", "--onnxruntime", "/nonexistent/libonnxruntime.so")
    assert "component 'cifar10': engine onnxruntime was asked for but is unavailable: --onnxruntime /nonexistent" in err
    if gpu_reason():
        err = refused_start("--device", "gpu")
        assert "device gpu was asked for but no GPU engine is ready: onnxruntime on gpu: " in err
        assert "; tract on gpu: " in err
        err = refused_start("--device", "gpu", "--engine", "tract")
        assert "device gpu was asked for but no GPU engine is ready: tract on gpu: " in err


@pytest.mark.skipif(not os.environ.get("ONNXRUNTIME_GPU_LIBRARY"), reason="set ONNXRUNTIME_GPU_LIBRARY to the "
                    "onnxruntime-gpu wheel's libonnxruntime.so (255 MB, not part of the CI) to run this")
def test_a_cuda_provider_that_cannot_start_is_an_error_not_a_cpu_fallback():
    library = os.environ["ONNXRUNTIME_GPU_LIBRARY"]
    if gpu_reason():
        err = refused_start("--device", "gpu", "--engine", "onnxruntime", "--onnxruntime", library)
        assert "onnxruntime on gpu: the CUDA execution provider did not start: " in err, err
    server = Spindle(ROOT / "spin.toml", "--onnxruntime", library)
    try:
        banner = "\n".join(server.banner)
        ort_gpu = re.search(r"^  onnxruntime +gpu +(.*)$", banner, re.M).group(1)
        if gpu_reason():
            assert ort_gpu.startswith("unavailable: the CUDA execution provider did not start: "), ort_gpu
        else:
            assert ort_gpu == "available", ort_gpu
    finally:
        server.stop()


def test_the_start_up_table_says_why_each_engine_is_or_is_not_there(spindle, servers):
    banner = "\n".join(spindle.banner)
    assert re.search(r"^  tract +cpu +available \(built in\)$", banner, re.M), banner
    assert re.search(r"^  onnxruntime +cpu +available \(\S+libonnxruntime\.so\S*, loaded on first use\)$", banner, re.M), banner
    for engine in ("tract", "onnxruntime"):
        line = re.search(rf"^  {engine} +gpu +(.*)$", banner, re.M).group(1)
        assert line == "available" or (line.startswith("unavailable: ") and len(line) > 30), line
    if gpu_reason():
        assert "CUDA driver library not found" in banner
        assert "no libonnxruntime_providers_cuda.so beside" in banner
    chosen = "\n".join(servers["tract"].banner)
    assert re.search(r"^  cifar10 +tract on cpu: device cpu asked for$", chosen, re.M), chosen
    assert re.search(r"^  tract +gpu +unavailable: not probed: every component asks for device cpu$", chosen, re.M), chosen


def test_a_component_can_choose_its_engine(tmp_path):
    manifest = tmp_path / "spin.toml"
    text = (ROOT / "spin.toml").read_text().replace('source = "target/', f'source = "{ROOT}/target/')
    for model, files in [("cifar10", '["models/cifar10/model.onnx", "models/cifar10/model.json"]'),
                         ("ppocr-det", '["models/ppocr-det/model.onnx", "models/ppocr-det/model.json"]')]:
        text = text.replace(f"files = {files}", f'files = [{{ source = "{ROOT}/models/{model}", destination = "/models/{model}" }}]')
    text = text.replace('source = "models/embed"', f'source = "{ROOT}/models/embed"')
    text = text.replace('source = "models/cifar10-int8"', f'source = "{ROOT}/models/cifar10-int8"')
    text = text.replace('files = ["models/vad/model.onnx"]', f'files = [{{ source = "{ROOT}/models/vad", destination = "/models/vad" }}]')
    text = text.replace('files = ["models/ppocr-det/model.onnx", "models/ppocr-rec/model.onnx", "models/ppocr-rec/characters.txt"]',
                        f'files = [{{ source = "{ROOT}/models/ppocr-det", destination = "/models/ppocr-det" }}, '
                        f'{{ source = "{ROOT}/models/ppocr-rec", destination = "/models/ppocr-rec" }}]')
    text = text.replace("[application]\n", f'[application]\ntool.spindle.files_root = "{ROOT}"\n', 1)
    manifest.write_text(text + '\n[component.cifar10.tool.spindle]\nengine = "tract"\n')
    server = Spindle(manifest, "--device", "cpu")
    try:
        models = {m["name"]: m["engine"] for m in requests.get(f"{server.url}/v2/models", timeout=30).json()["models"]}
        assert models == {"cifar10": "tract", "ppocr-det": "onnxruntime", "all-MiniLM-L6-v2": "onnxruntime",
                          "cifar10-int8": "onnxruntime"}
    finally:
        server.stop()


def gpu_reason() -> str | None:
    if not Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (no /dev/nvidia0 or nvidia-smi)"
    return None


def test_gpu_answers_equal_cpu(servers, heldout):
    reason = gpu_reason()
    if reason:
        print(f"GPU test skipped: {reason}")
        pytest.skip(reason)
    gpu = Spindle(ROOT / "spin.toml", "--device", "gpu")
    try:
        models = requests.get(f"{gpu.url}/v2/models", timeout=30).json()["models"]
        assert {m["device"] for m in models} == {"gpu"}
        (gb, gs), (cb, cs) = cnn_answers(gpu, heldout), cnn_answers(servers["tract"], heldout)
        np.testing.assert_allclose(gb, cb, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gs, cs, rtol=1e-4, atol=1e-6)
        x = sample.text_image(160, 320)
        np.testing.assert_allclose(text_map(gpu, x), text_map(servers["tract"], x), rtol=1e-4, atol=PPOCR_ATOL)
    finally:
        gpu.stop()
