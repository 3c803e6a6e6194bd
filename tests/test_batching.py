"""Dynamic batching of cifar10 over real HTTP, and the statistics the host keeps of every compute
(Triton's statistics extension, read with tritonclient as perf_analyzer reads it)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from conftest import ROOT, Spindle, dataset, png


@pytest.fixture(scope="module")
def server():
    """A server of its own, so the statistics count only this module's requests."""
    server = Spindle(ROOT / "spin.toml")
    yield server
    server.stop()


def infer(url: str, x: np.ndarray) -> requests.Response:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    return requests.post(f"{url}/v2/models/cifar10/infer", json=body, timeout=60)


def stats(url: str) -> dict:
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    [model] = client.get_inference_statistics("cifar10")["model_stats"]
    return model


def test_config_shows_the_batching_the_host_does(server):
    config = requests.get(f"{server.url}/v2/models/cifar10/config", timeout=10).json()
    assert config["max_batch_size"] == 32
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 500}
    assert "statistics" in requests.get(f"{server.url}/v2", timeout=10).json()["extensions"]


def test_concurrent_requests_each_get_their_own_rows(server, onnxruntime_probs):
    rng = np.random.default_rng(7)
    # 200 distinct inputs of 1 to 3 rows; request 100 carries 33 rows, over max_batch_size.
    inputs = [rng.random((i % 3 + 1, 32, 32, 3), dtype=np.float32) for i in range(200)]
    inputs[100] = rng.random((33, 32, 32, 3), dtype=np.float32)
    before = stats(server.url)
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda x: infer(server.url, x), inputs))
    for i, (x, r) in enumerate(zip(inputs, answers)):
        if i == 100:
            assert r.status_code == 400, r.text
            assert "a batch of 33 exceeds model 'cifar10''s max_batch_size of 32" in r.json()["error"]
            continue
        assert r.status_code == 200, r.text
        got = np.array(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(len(x), 10)
        np.testing.assert_allclose(got, onnxruntime_probs(x), atol=1e-5, err_msg=f"request {i}")
    after = stats(server.url)
    rows = sum(len(x) for i, x in enumerate(inputs) if i != 100)
    assert after["inference_count"] - before["inference_count"] == rows
    ok, failed = (after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"] for k in ("success", "fail"))
    assert (ok, failed) == (199, 1)
    executions = after["execution_count"] - before["execution_count"]
    assert executions < 199, f"{executions} engine calls for 199 computes: nothing was merged"


def test_statistics_count_every_route_and_their_times(server, heldout):
    before = stats(server.url)
    x = dataset.to_model_input(heldout[0][:2])
    assert infer(server.url, x).status_code == 200
    # The friendly endpoint computes on the same model: the host counts it too.
    assert requests.post(f"{server.url}/models/cifar10/classify", data=png(heldout[0][0]), timeout=30).status_code == 200
    after = stats(server.url)
    assert after["name"] == "cifar10" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 3
    inference = after["inference_stats"]
    assert inference["success"]["count"] - before["inference_stats"]["success"]["count"] == 2
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[part]["count"] == inference["success"]["count"], part
    assert inference["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert after["last_inference"] >= before["last_inference"] > 0
    assert {b["batch_size"] for b in after["batch_stats"]} >= {1}
    everything = requests.get(f"{server.url}/v2/models/stats", timeout=10).json()["model_stats"]
    assert [m["name"] for m in everything] == ["all-MiniLM-L6-v2", "cifar10", "cifar10-int8", "ppocr-det", "ppocr-rec", "vad"]
    posted = requests.post(f"{server.url}/v2/models/cifar10/stats", timeout=10)
    assert posted.status_code == 405 and "use GET" in posted.json()["error"]
    missing = requests.get(f"{server.url}/v2/models/nope/stats", timeout=10)
    assert missing.status_code == 404 and "no statistics for model 'nope'" in missing.json()["error"]
