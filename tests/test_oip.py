"""The Open Inference Protocol against the real host, with Triton's own Python client."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from conftest import dataset


@pytest.fixture(scope="module")
def client(spindle):
    return triton.InferenceServerClient(spindle.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def batch(heldout):
    return dataset.to_model_input(heldout[0][:3])


def infer(client, x, binary_in, binary_out, **kwargs):
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = triton.InferRequestedOutput("probabilities", binary_data=binary_out)
    return client.infer("cifar10", [inp], outputs=[out], **kwargs)


def test_health_and_server_metadata(client, batch):
    assert client.is_server_live() and client.is_server_ready()
    infer(client, batch, True, True)
    assert client.is_model_ready("cifar10") and client.is_model_ready("cifar10", "1")
    meta = client.get_server_metadata()
    assert meta["name"] == "spindle" and "binary_tensor_data" in meta["extensions"]
    assert sorted(m["name"] for m in client.get_model_repository_index()) == ["all-MiniLM-L6-v2", "cifar10", "cifar10-int8", "ppocr-det"]


def test_model_metadata_and_config_come_from_the_declared_description(client):
    meta = client.get_model_metadata("cifar10")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata("cifar10", model_version="1")["versions"] == ["1"]
    config = client.get_model_config("cifar10")
    assert config["max_batch_size"] == 32
    assert config["input"][0]["dims"] == [32, 32, 3]


@pytest.mark.parametrize("binary_in,binary_out", [(False, False), (True, True), (True, False), (False, True)])
def test_infer_equals_onnxruntime(client, batch, onnxruntime_probs, binary_in, binary_out):
    result = infer(client, batch, binary_in, binary_out, request_id="req-42")
    got = result.as_numpy("probabilities")
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, onnxruntime_probs(batch), atol=1e-4, rtol=0)
    assert result.get_response()["id"] == "req-42"


def expect_error(call, status, text):
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == str(status), caught.value
    assert text in caught.value.message(), caught.value.message()


def test_unknown_model_wrong_shape_wrong_datatype(client, batch):
    expect_error(lambda: client.get_model_metadata("nope"), 404, "unknown model 'nope'")
    expect_error(lambda: client.get_model_metadata("cifar10", model_version="7"), 404, "has no version '7'")
    wrong_shape = batch.transpose(0, 3, 1, 2).copy()
    expect_error(lambda: infer(client, wrong_shape, True, True), 400,
                 "input 'input': expected shape [-1, 32, 32, 3], got [3, 3, 32, 32]")
    inp = triton.InferInput("input", list(batch.shape), "FP64")
    inp.set_data_from_numpy(batch.astype(np.float64))
    expect_error(lambda: client.infer("cifar10", [inp]), 400, "input 'input': expected datatype FP32, got FP64")
    out = triton.InferRequestedOutput("logits")
    inp = triton.InferInput("input", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    expect_error(lambda: client.infer("cifar10", [inp], outputs=[out]), 400, "unknown output 'logits'")


def raw_binary_infer(spindle, declared_size, payload):
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 32, 32, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": declared_size}}]}).encode()
    return requests.post(f"{spindle.url}/v2/models/cifar10/infer", data=header + payload,
                         headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30)


def test_truncated_and_lying_binary_bodies(spindle, batch):
    data = batch[:1].tobytes()
    r = raw_binary_infer(spindle, len(data), data[:-100])
    assert r.status_code == 400 and "binary data is truncated: 12288 bytes declared, 12188 left" in r.json()["error"]
    r = raw_binary_infer(spindle, 1000, data)
    assert r.status_code == 400 and "binary_data_size is 1000 but shape [1, 32, 32, 3] of FP32 needs 12288 bytes" in r.json()["error"]
    r = requests.post(f"{spindle.url}/v2/models/cifar10/infer", data=b"{}",
                      headers={"Inference-Header-Content-Length": "5000"}, timeout=30)
    assert r.status_code == 400 and "the body has only 2 bytes" in r.json()["error"]
    r = requests.post(f"{spindle.url}/v2/models/cifar10/infer", data=b'{"inputs": [{"name": "input", "shape": [1], '
                      b'"datatype": "BYTES", "data": ["a"]}]}', timeout=30)
    assert r.status_code == 400 and "expected datatype FP32, got BYTES" in r.json()["error"]


def test_friendly_endpoint_still_answers(spindle, heldout):
    from conftest import png

    x, y, names = heldout
    r = requests.post(f"{spindle.url}/models/cifar10/classify", data=png(x[0]), timeout=30)
    assert r.json()[0]["label"] == names[y[0]]
