"""The cifar10 function served by the real host: answers, agreement with onnxruntime, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from conftest import ROOT, dataset, jpeg, png

CLASSIFY = "/models/cifar10/classify"


def classify(server, body, content_type=None, query=""):
    headers = {"content-type": content_type} if content_type else {}
    return requests.post(f"{server.url}{CLASSIFY}{query}", data=body, headers=headers, timeout=30)


def as_vector(predictions, names):
    """Top-10 answer → probabilities in label order."""
    out = np.zeros(len(names), dtype=np.float64)
    for p in predictions:
        out[names.index(p["label"])] = p["probability"]
    return out


def test_png_gets_top5_labels_best_first(spindle, heldout):
    x, y, names = heldout
    r = classify(spindle, png(x[0]), "image/png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert [set(p) for p in answer] == [{"label", "probability"}] * 5
    probabilities = [p["probability"] for p in answer]
    assert probabilities == sorted(probabilities, reverse=True)
    assert answer[0]["label"] == names[y[0]]


def test_probabilities_equal_onnxruntime(spindle, heldout, onnxruntime_probs):
    x, _, names = heldout
    expected = onnxruntime_probs(dataset.to_model_input(x[:12]))
    for image, want in zip(x[:12], expected):
        r = classify(spindle, png(image), "image/png", "?top_k=10")
        assert r.status_code == 200, r.text
        got = as_vector(r.json(), names)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_multipart_upload_like_curl_dash_f(spindle, heldout):
    x, y, names = heldout
    r = requests.post(f"{spindle.url}{CLASSIFY}", files={"image": ("digit.png", png(x[3]), "image/png")}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()[0]["label"] == names[y[3]]


def test_larger_jpegs_are_resized(spindle, heldout):
    x, y, names = heldout
    right = sum(
        classify(spindle, jpeg(image, 96), "image/jpeg").json()[0]["label"] == names[label]
        for image, label in zip(x[:20], y[:20])
    )
    assert right >= 18, f"only {right}/20 resized JPEGs classified correctly"


def test_json_tensor_flat_and_nested(spindle, heldout, onnxruntime_probs):
    x, _, names = heldout
    pixels = dataset.to_model_input(x[5:6])
    want = onnxruntime_probs(pixels)[0]
    for body in (
        {"data": pixels.reshape(-1).tolist(), "shape": [1, 32, 32, 3]},
        {"data": pixels[0].tolist()},
    ):
        r = classify(spindle, json.dumps(body), "application/json", "?top_k=10")
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(as_vector(r.json(), names), want, atol=1e-4, rtol=0)


def test_top_k(spindle, heldout):
    x, _, _ = heldout
    assert len(classify(spindle, png(x[0]), "image/png", "?top_k=2").json()) == 2
    r = classify(spindle, png(x[0]), "image/png", "?top_k=11")
    assert r.status_code == 400 and "top_k" in r.json()["error"]


def test_describe(spindle):
    r = requests.get(f"{spindle.url}/models/cifar10", timeout=30)
    assert r.status_code == 200
    info = r.json()
    assert info["input"]["shape"] == [1, 32, 32, 3]
    assert info["labels"] == [str(i) for i in range(10)]


BAD_REQUESTS = [
    # (description, method, path, body, content type, status, error text)
    ("empty body", "POST", CLASSIFY, b"", None, 400, "empty request body"),
    ("not an image", "POST", CLASSIFY, b"hello world", "image/png", 400, "not a PNG or JPEG"),
    ("truncated PNG", "POST", CLASSIFY, None, "image/png", 400, "could not decode"),
    ("wrong tensor shape", "POST", CLASSIFY, json.dumps({"data": [[0.5] * 3] * 4}), "application/json", 400,
     "expected shape [1, 32, 32, 3] (or [32, 32, 3]), got [4, 3]"),
    ("too few values", "POST", CLASSIFY, json.dumps({"data": [0.5] * 10, "shape": [1, 32, 32, 3]}), "application/json",
     400, "needs 3072 values, got 10"),
    ("ragged tensor", "POST", CLASSIFY, json.dumps({"data": [[1, 2], [3]]}), "application/json", 400, "ragged"),
    ("bad JSON", "POST", CLASSIFY, b"{not json", "application/json", 400, "invalid JSON tensor"),
    ("unknown JSON key", "POST", CLASSIFY, json.dumps({"dta": []}), "application/json", 400, "unknown field `dta`"),
    ("form without image", "POST", CLASSIFY, b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--B--\r\n",
     "multipart/form-data; boundary=B", 400, "no 'image' field"),
    ("unsupported type", "POST", CLASSIFY, b"abc", "text/plain", 415, "content type 'text/plain' is not supported"),
    ("wrong method", "GET", CLASSIFY, None, None, 405, "use POST"),
    ("unknown endpoint", "GET", "/models/cifar10/nope", None, None, 404, "no such endpoint /models/cifar10/nope"),
    ("no route", "GET", "/elsewhere", None, None, 404, "no route matches /elsewhere"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_clear_json_errors(spindle, heldout, case):
    _, method, path, body, content_type, status, text = case
    if body is None and method == "POST":
        body = png(heldout[0][0])[:60]
    headers = {"content-type": content_type} if content_type else {}
    r = requests.request(method, f"{spindle.url}{path}", data=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert text in r.json()["error"]
    if status == 405:
        assert r.headers["allow"] == "POST"


def test_the_host_keeps_serving_after_bad_requests(spindle, heldout):
    x, y, names = heldout
    for case in BAD_REQUESTS:
        requests.request(case[1], f"{spindle.url}{case[2]}", data=case[3] or b"", timeout=30)
    assert classify(spindle, png(x[1]), "image/png").json()[0]["label"] == names[y[1]]


@pytest.mark.parametrize("model", ["cifar10", "cifar10-int8"])
def test_served_accuracy_equals_offline_accuracy(spindle, model):
    import evaluate

    result = evaluate.evaluate(spindle.url, model)
    assert result["images"] == 360
    assert result["served_http"] == result["offline_onnxruntime"] == result["recorded"], result
