"""The Open Inference Protocol over gRPC, on the same listener as REST, with Triton's own gRPC
client (in .venv-grpc, through tests/grpc_client.py) and perf_analyzer -i grpc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import requests

from conftest import ROOT, Spindle, dataset
from test_edge import certificate

GRPC_PYTHON = ROOT / ".venv-grpc" / "bin" / "python"
PERF_ANALYZER = ROOT / ".venv" / "bin" / "perf_analyzer"


def grpc_calls(address: str, calls: list[dict], *options: str) -> list[dict]:
    """Makes `calls` with tritonclient.grpc against `address` (host:port); one answer each."""
    assert GRPC_PYTHON.exists(), f"{GRPC_PYTHON} is missing: run scripts/setup --python"
    run = subprocess.run([str(GRPC_PYTHON), str(ROOT / "tests" / "grpc_client.py"), address, *options],
                         input=json.dumps(calls), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(answers) == len(calls), run.stdout
    return answers


def address(server: Spindle) -> str:
    return server.url.split("://", 1)[1]


@pytest.fixture(scope="module")
def batch(heldout, tmp_path_factory):
    x = dataset.to_model_input(heldout[0][:3])
    path = tmp_path_factory.mktemp("grpc") / "batch.npy"
    np.save(path, x)
    return x, path


def infer_call(npy, out, **extra):
    return {"call": "infer", "model": "cifar10", "inputs": [{"name": "input", "datatype": "FP32", "npy": str(npy)}],
            "outputs": [{"name": "probabilities", "npy": str(out)}], **extra}


def test_health_metadata_config_index_and_infer_equal_onnxruntime(spindle, batch, onnxruntime_probs, tmp_path):
    x, npy = batch
    out = tmp_path / "probabilities.npy"
    answers = grpc_calls(address(spindle), [
        {"call": "is_server_live"},
        {"call": "is_server_ready"},
        {"call": "get_server_metadata"},
        {"call": "get_model_metadata", "args": ["cifar10"]},
        {"call": "get_model_metadata", "args": ["cifar10", "1"]},
        {"call": "get_model_config", "args": ["cifar10"]},
        {"call": "get_model_repository_index"},
        infer_call(npy, out, request_id="grpc-7"),
        {"call": "is_model_ready", "args": ["cifar10"]},
        {"call": "is_model_ready", "args": ["nope"]},
        {"call": "get_inference_statistics", "args": ["cifar10"]},
    ])
    ok = [a.get("ok") for a in answers]
    assert all("error" not in a for a in answers), answers
    assert ok[0] is True and ok[1] is True
    assert ok[2]["name"] == "spindle" and "binary_tensor_data" in ok[2]["extensions"]
    rest = requests.get(f"{spindle.url}/v2/models/cifar10", timeout=30).json()
    # The protobuf JSON mapping writes int64 as strings.
    assert [{**t, "shape": [int(d) for d in t["shape"]]} for t in ok[3]["inputs"]] == rest["inputs"]
    assert ok[3]["platform"] == rest["platform"] and ok[4]["versions"] == ["1"]
    config = ok[5]["config"]
    assert config["max_batch_size"] == 32 and config["input"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in config["input"][0]["dims"]] == [32, 32, 3]
    assert sorted(m["name"] for m in ok[6]["models"]) == ["all-MiniLM-L6-v2", "cifar10", "cifar10-int8", "ppocr-det"]
    assert ok[7]["id"] == "grpc-7" and ok[7]["model_name"] == "cifar10"
    np.testing.assert_allclose(np.load(out), onnxruntime_probs(x), atol=1e-4, rtol=0)
    assert ok[8] is True, "loaded by the inference before it"
    assert ok[9] is False, "an unknown model is not ready, as Triton answers it"
    assert int(ok[10]["model_stats"][0]["inference_count"]) >= 3


def test_errors_are_statuses_with_the_rest_messages(spindle, batch, tmp_path):
    x, _ = batch
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, x[:, :, :, 0].copy())
    answers = grpc_calls(address(spindle), [
        {"call": "get_model_metadata", "args": ["nope"]},
        {"call": "get_model_metadata", "args": ["cifar10", "7"]},
        {"call": "get_model_metadata", "args": ["../../v2"]},
        {"call": "infer", "model": "cifar10", "inputs": [{"name": "input", "datatype": "FP32", "npy": str(wrong)}]},
        {"call": "infer", "model": "cifar10", "inputs": [{"name": "pixels", "datatype": "FP32", "npy": str(wrong)}]},
        {"call": "unload_model", "args": ["cifar10"]},
    ])
    errors = [a.get("error") for a in answers]
    assert all(errors), answers
    assert errors[0]["status"] == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in errors[0]["message"]
    assert errors[1]["status"] == "StatusCode.NOT_FOUND" and "has no version '7'" in errors[1]["message"]
    assert errors[2]["status"] == "StatusCode.INVALID_ARGUMENT" and "not a model name" in errors[2]["message"]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 32, 32], "data": x[:, :, :, 0].reshape(-1).tolist()}]}
    rest = requests.post(f"{spindle.url}/v2/models/cifar10/infer", json=body, timeout=30)
    assert rest.status_code == 400
    assert errors[3] == {"status": "StatusCode.INVALID_ARGUMENT", "message": rest.json()["error"]}
    assert errors[4]["status"] == "StatusCode.INVALID_ARGUMENT" and "unknown input 'pixels'" in errors[4]["message"]
    assert errors[5]["status"] == "StatusCode.UNIMPLEMENTED" and "RepositoryModelUnload" in errors[5]["message"]
    assert requests.get(f"{spindle.url}/v2/health/ready", timeout=30).status_code == 200, "the host serves on"


def test_grpc_over_tls(tmp_path, batch, onnxruntime_probs):
    x, npy = batch
    cert, key = certificate(tmp_path)
    server = Spindle(ROOT / "spin.toml", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        out = tmp_path / "probabilities.npy"
        port = server.url.rsplit(":", 1)[1]
        answers = grpc_calls(f"localhost:{port}", [{"call": "is_server_ready"}, infer_call(npy, out)], "--ssl", str(cert))
        assert answers[0] == {"ok": True}, answers
        assert "ok" in answers[1], answers
        np.testing.assert_allclose(np.load(out), onnxruntime_probs(x), atol=1e-4, rtol=0)
        assert requests.get(f"https://localhost:{port}/v2/health/live", verify=str(cert), timeout=30).status_code == 200
    finally:
        server.stop()


def guarded_cifar10(tmp_path):
    """cifar10 behind tokens from a variable, and the host's endpoints behind others."""
    (tmp_path / "models" / "cifar10").mkdir(parents=True)
    for name in ("model.onnx", "model.json"):
        shutil.copy(ROOT / "models" / "cifar10" / name, tmp_path / "models" / "cifar10" / name)
    shutil.copy(ROOT / "target" / "wasm32-wasip2" / "release" / "cifar10.wasm", tmp_path / "cifar10.wasm")
    (tmp_path / "spin.toml").write_text("""spin_manifest_version = 2
[application]
name = "guarded-models"
[application.tool.spindle]
host_access = { tokens_env = "HOST_TOKENS" }
[[trigger.http]]
route = "/v2/models/cifar10/..."
component = "cifar10"
[component.cifar10]
source = "cifar10.wasm"
files = ["models/cifar10/model.onnx", "models/cifar10/model.json"]
[component.cifar10.tool.spindle]
access = { tokens_env = "MODEL_TOKENS" }
""")
    return tmp_path / "spin.toml"


def test_tokens_and_the_audit_log_apply_to_grpc_calls(tmp_path, batch):
    _, npy = batch
    manifest = guarded_cifar10(tmp_path)
    audit = tmp_path / "audit.jsonl"
    env = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "spindle=info",
           "HOST_TOKENS": "ops:ops-secret-0123456789", "MODEL_TOKENS": "alice:alice-secret-0123456789"}
    server = Spindle(manifest, "--audit-log", str(audit), env=env)
    out = tmp_path / "out.npy"
    calls = [{"call": "is_server_live"}, {"call": "get_server_metadata"}, infer_call(npy, out, request_id="audited")]
    try:
        anonymous = grpc_calls(address(server), [*calls, {"call": "unload_model", "args": ["cifar10"]}])
        alice = grpc_calls(address(server), calls, "--token", "alice-secret-0123456789")
        ops = grpc_calls(address(server), calls[1:2], "--token", "ops-secret-0123456789")
    finally:
        server.stop()
    assert anonymous[0] == {"ok": True}, "health stays open"
    for refused in (anonymous[1], anonymous[2], alice[1]):
        assert refused["error"]["status"] == "StatusCode.UNAUTHENTICATED", refused
    assert "bearer token" in anonymous[2]["error"]["message"]
    assert "ok" in alice[2] and np.load(out).shape == (3, 10)
    assert ops[0]["ok"]["name"] == "spindle"
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert "alice-secret" not in audit.read_text()
    infers = [r for r in records if r["path"] == "/inference.GRPCInferenceService/ModelInfer"]
    assert [(r["principal"], r["status"]) for r in infers] == [(None, 401), ("alice", 200)], infers
    done = infers[1]
    assert done["component"] == "cifar10" and done["route"] == "/v2/models/cifar10/..." and done["models"] == ["cifar10"]
    assert done["bytes_in"] > 3 * 32 * 32 * 3 * 4 and done["bytes_out"] > 3 * 10 * 4
    assert {r["principal"] for r in records if r["path"].endswith("/ServerMetadata")} == {None, "ops"}
    (unserved,) = [r for r in records if r["path"].endswith("/RepositoryModelUnload")]
    assert unserved["status"] == 501 and unserved["route"] is None


def test_grpc_needs_http2_and_a_huge_message_is_refused(spindle):
    h1 = requests.post(f"{spindle.url}/inference.GRPCInferenceService/ServerLive", data=b"\0\0\0\0\0",
                       headers={"content-type": "application/grpc"}, timeout=30)
    assert h1.status_code == 400 and "HTTP/2" in h1.json()["error"]
    # A message framed as 1 GiB, over HTTP/2 with prior knowledge: refused on its length prefix.
    head = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                           "-H", "content-type: application/grpc", "-H", "te: trailers",
                           "--data-binary", "@-", f"{spindle.url}/inference.GRPCInferenceService/ModelInfer"],
                          input=b"\0\x40\0\0\0" + b"\0" * 1000, capture_output=True, timeout=30)
    headers = head.stdout.decode().lower()
    assert "grpc-status: 8" in headers, headers  # RESOURCE_EXHAUSTED


def test_perf_analyzer_runs_over_grpc(spindle):
    cudart = next((ROOT / ".venv" / "lib").glob("python3*/site-packages/nvidia/cuda_runtime/lib"), None)
    assert PERF_ANALYZER.exists() and cudart, "perf_analyzer and its CUDA runtime: run scripts/setup --python"
    # Any three windows pass (stability 9999 %, as Triton's own CI): this checks that it works, not how steadily.
    run = subprocess.run([str(PERF_ANALYZER), "-m", "cifar10", "-u", address(spindle), "-i", "grpc",
                          "--concurrency-range", "2:2", "--measurement-interval", "500", "--stability-percentage", "9999",
                          "--max-trials", "3"],
                         env={**os.environ, "LD_LIBRARY_PATH": str(cudart)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Throughput:" in run.stdout and "Successful request count" in run.stdout, run.stdout
