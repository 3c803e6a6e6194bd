"""`spindle new`: a model added in one command builds and serves at once.

Each test works in a scratch copy of the project (the workspace's crates, no models), which shares
this checkout's `target/` so the function builds reuse its compiled dependencies; the checkout's
own `spin.toml`, `Cargo.toml` and `models/` are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from conftest import ROOT, SPINDLE, Spindle

sys.path.insert(0, str(ROOT / "models"))
import describe  # noqa: E402

DETECTOR = ROOT / "models/ppocr-det/model.onnx"
CNN = ROOT / "models/cifar10/model.onnx"
CNN_LABELS = ROOT / "models/cifar10/labels.txt"


def scaffold(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SPINDLE), "new", *args], cwd=project, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RUST_BACKTRACE": "0"})


def created(project: Path, *args: str) -> str:
    result = scaffold(project, *args)
    assert result.returncode == 0, result.stderr
    return result.stderr


def refused(project: Path, *args: str) -> str:
    result = scaffold(project, *args)
    assert result.returncode != 0, result.stderr
    return result.stderr


def copy_project(dest: Path) -> Path:
    """The workspace's crates (its members, the WIT, the toolchain), with `target/` shared."""
    dest.mkdir()
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    ignore = shutil.ignore_patterns("target", "__pycache__", "artifacts", "corpus")
    for name in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"]:
        shutil.copy2(ROOT / name, dest / name)
    for tree in [*workspace["members"], "wit", ".cargo"]:
        shutil.copytree(ROOT / tree, dest / tree, ignore=ignore)
    (dest / "target").symlink_to(ROOT / "target", target_is_directory=True)
    return dest


def snapshot(project: Path) -> dict[str, bytes]:
    """Every file a refused `spindle new` must leave as it was."""
    files = [project / "spin.toml", project / "Cargo.toml", *(project / "models").rglob("*"), *(project / "functions").rglob("*")]
    return {str(f.relative_to(project)): f.read_bytes() for f in files if f.is_file() and "target" not in f.parts}


def toy_model(path: Path) -> None:
    """Two batched inputs (INT64 tokens, an FP32 scale per row), an initializer that ONNX also
    lists as an input, and two outputs of different types."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("weight", TensorProto.FLOAT, [6, 4], np.linspace(-1, 1, 24, dtype=np.float32))
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["tokens"], ["tokens_f"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["tokens_f", "weight"], ["raw"]),
            helper.make_node("Mul", ["raw", "scale"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0),
        ],
        "toy",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 6]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("weight", TensorProto.FLOAT, [6, 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("best", TensorProto.INT64, ["batch"])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def nchw_logits_model(path: Path) -> None:
    """An NCHW image model answering logits: per-channel means of an 8×8 RGB image, times a
    3×3 matrix."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("weight", TensorProto.FLOAT, [3, 3], [2.0, -1.0, 0.5, 0.0, 3.0, -2.0, 1.0, 1.0, 1.0])
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weight"], ["logits"])],
        "nchw",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project with five models added: the PP-OCR detector and a test-written model
    behind the generic protocol function (the latter twice, once under a Triton-style name with a
    dot), the CNN and an NCHW logits model as classifiers (the latter named `Colours.v1`, so its
    component and crate are `colours-v1`)."""
    base = tmp_path_factory.mktemp("new")
    project = copy_project(base / "app")
    toy_model(base / "toy.onnx")
    nchw_logits_model(base / "nchw.onnx")
    (base / "colours.txt").write_text("red\ngreen\nblue\n")
    created(project, "oip", "det", "--model", str(DETECTOR))
    created(project, "oip", "toy", "--model", str(base / "toy.onnx"), "--max-batch-size", "8", "--max-queue-delay-us", "200")
    created(project, "oip", "toy_v1.5", "--model", str(base / "toy.onnx"))
    created(project, "classifier", "digits", "--model", str(CNN), "--labels", str(CNN_LABELS))
    created(project, "classifier", "Colours.v1", "--model", str(base / "nchw.onnx"), "--labels", str(base / "colours.txt"),
            "--mean", "0.5,0.25,0", "--std", "0.5,0.5,2", "--softmax")
    return project


@pytest.fixture(scope="module")
def served(project):
    server = Spindle(project / "spin.toml", "--build", start_timeout=600)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(served):
    return triton.InferenceServerClient(served.url.removeprefix("http://"))


def test_model_json_is_what_describe_py_writes(project, tmp_path):
    """The Rust description of the graph equals the Python one (`models/describe.py`), on the
    detector (symbolic height and width) and on the test-written model (an initializer listed as
    an input, two types, dynamic batching)."""
    assert json.loads((project / "models/det/model.json").read_text()) == describe.describe(DETECTOR, "det", 0)
    toy = json.loads((project / "models/toy/model.json").read_text())
    assert toy == describe.describe(project / "models/toy/model.onnx", "toy", 8, max_queue_delay_us=200)
    assert [t["name"] for t in toy["inputs"]] == ["tokens", "scale"]
    assert (project / "models/det/model.onnx").read_bytes() == DETECTOR.read_bytes()


def test_the_manifest_gains_each_component_and_its_routes(project):
    manifest = tomllib.loads((project / "spin.toml").read_text())
    routes = {t["route"]: t["component"] for t in manifest["trigger"]["http"]}
    assert routes == {"/v2/models/det/...": "det", "/v2/models/toy/...": "toy", "/v2/models/toy_v1.5/...": "toy-v1-5",
                      "/models/digits/...": "digits",
                      "/v2/models/digits/...": "digits", "/models/Colours.v1/...": "colours-v1",
                      "/v2/models/Colours.v1/...": "colours-v1"}
    assert manifest["component"]["det"]["source"] == "target/wasm32-wasip2/release/oip.wasm"
    assert manifest["component"]["toy-v1-5"]["files"] == ["models/toy_v1.5/model.onnx", "models/toy_v1.5/model.json"]
    assert manifest["component"]["digits"]["build"]["command"] == "cargo build --target wasm32-wasip2 --release -p digits"
    members = tomllib.loads((project / "Cargo.toml").read_text())["workspace"]["members"]
    assert members[-2:] == ["functions/digits", "functions/colours-v1"]


def test_the_detector_answers_as_onnxruntime_does(client):
    import onnxruntime as ort

    image = np.random.default_rng(1).random((1, 3, 64, 96), dtype=np.float32)
    request = triton.InferInput("x", list(image.shape), "FP32")
    request.set_data_from_numpy(image, binary_data=True)
    result = client.infer("det", [request]).as_numpy("sigmoid_0.tmp_0")
    expected = ort.InferenceSession(str(DETECTOR), providers=["CPUExecutionProvider"]).run(None, {"x": image})[0]
    assert result.shape == expected.shape == (1, 1, 64, 96)
    np.testing.assert_allclose(result, expected, atol=1e-4)


def test_the_test_written_model_answers_as_onnxruntime_does(client, project):
    import onnxruntime as ort

    tokens = np.array([[1, 2, 3, 4, 5, 6], [6, 0, -2, 1, 0, 3]], dtype=np.int64)
    scale = np.array([[0.5], [-2.0]], dtype=np.float32)
    inputs = [triton.InferInput("tokens", [2, 6], "INT64"), triton.InferInput("scale", [2, 1], "FP32")]
    inputs[0].set_data_from_numpy(tokens, binary_data=False)
    inputs[1].set_data_from_numpy(scale, binary_data=True)
    result = client.infer("toy", inputs)
    expected = ort.InferenceSession(str(project / "models/toy/model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"tokens": tokens, "scale": scale})
    np.testing.assert_allclose(result.as_numpy("scores"), expected[0], rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("best"), expected[1])
    config = client.get_model_config("toy")
    assert config["max_batch_size"] == 8 and config["dynamic_batching"] == {"max_queue_delay_microseconds": 200}


def test_a_name_with_a_dot_is_served_under_that_name(served, client):
    """A Triton-style model name is kept as clients send it; only the component id is derived."""
    import requests

    assert client.get_model_metadata("toy_v1.5")["name"] == "toy_v1.5"
    tokens = triton.InferInput("tokens", [1, 6], "INT64")
    tokens.set_data_from_numpy(np.array([[1, 0, 0, 0, 0, 0]], dtype=np.int64))
    scale = triton.InferInput("scale", [1, 1], "FP32")
    scale.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
    np.testing.assert_allclose(client.infer("toy_v1.5", [tokens, scale]).as_numpy("scores"), [np.linspace(-1, 1, 24)[:4]], rtol=1e-6)
    assert client.is_model_ready("toy_v1.5")  # compiled and loaded by now
    listed = {m["name"]: m["component"] for m in requests.get(f"{served.url}/v2/models", timeout=30).json()["models"]}
    assert listed["toy_v1.5"] == "toy-v1-5"


def test_the_cnn_classifier_answers_as_onnxruntime_does(served, client):
    import onnxruntime as ort
    import requests
    from PIL import Image

    labels = [line.strip() for line in CNN_LABELS.read_text().splitlines() if line.strip()]
    session = ort.InferenceSession(str(CNN), providers=["CPUExecutionProvider"])
    for example in ["digit-3.png", "digit-7.png"]:
        path = ROOT / "models/cifar10/examples" / example
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[None] / 255.0
        probs = session.run(["probabilities"], {"input": pixels})[0][0]
        top = np.argsort(-probs)[:3]
        r = requests.post(f"{served.url}/models/digits/classify?top_k=3", data=path.read_bytes(),
                          headers={"content-type": "image/png"}, timeout=30)
        assert r.status_code == 200, r.text
        assert [p["label"] for p in r.json()] == [labels[i] for i in top]
        np.testing.assert_allclose([p["probability"] for p in r.json()], probs[top], atol=1e-5)
        request = triton.InferInput("input", list(pixels.shape), "FP32")
        request.set_data_from_numpy(pixels)
        np.testing.assert_allclose(client.infer("digits", [request]).as_numpy("probabilities")[0], probs, atol=1e-5)


def test_an_nchw_logits_classifier_is_normalised_and_softmaxed(served, project):
    """The template's NCHW transpose, per-channel mean and std, and softmax, against numpy."""
    import io

    import onnxruntime as ort
    import requests
    from PIL import Image

    rgb = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    x = ((rgb / 255.0 - [0.5, 0.25, 0.0]) / [0.5, 0.5, 2.0]).astype(np.float32).transpose(2, 0, 1)[None]
    session = ort.InferenceSession(str(project / "models/Colours.v1/model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": x})[0][0]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    r = requests.post(f"{served.url}/models/Colours.v1/classify", files={"image": ("x.png", buf.getvalue(), "image/png")}, timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [p["label"] for p in answer] == [["red", "green", "blue"][i] for i in np.argsort(-probs)]
    np.testing.assert_allclose([p["probability"] for p in answer], np.sort(probs)[::-1], atol=1e-5)
    described = requests.get(f"{served.url}/models/Colours.v1", timeout=30).json()
    assert described["name"] == "Colours.v1" and described["input"]["layout"] == "NCHW" and described["output"]["softmax"] is True


def test_bad_requests_to_a_classifier_get_clear_errors(served):
    import requests

    for headers, data, status, words in [
        ({"content-type": "text/plain"}, b"hello", 415, "not supported"),
        ({"content-type": "image/png"}, b"", 400, "empty request body"),
        ({"content-type": "image/png"}, b"\x89PNG\r\n\x1a\nbroken", 400, "could not decode"),
    ]:
        r = requests.post(f"{served.url}/models/digits/classify", data=data, headers=headers, timeout=30)
        assert r.status_code == status and words in r.json()["error"], r.text
    r = requests.post(f"{served.url}/models/digits/classify?top_k=11", data=b"x", headers={"content-type": "image/png"}, timeout=30)
    assert r.status_code == 400 and "top_k" in r.json()["error"]
    r = requests.get(f"{served.url}/models/digits/classify", timeout=30)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_running_it_twice_refuses_and_changes_nothing(project):
    before = snapshot(project)
    assert "already has a component 'det'" in refused(project, "oip", "det", "--model", str(DETECTOR))
    assert "already has a component 'digits'" in refused(project, "classifier", "digits", "--model", str(CNN), "--labels", str(CNN_LABELS))
    (project / "models/taken").mkdir()
    assert "models/taken already exists" in refused(project, "oip", "taken", "--model", str(DETECTOR))
    (project / "models/taken").rmdir()
    assert "already has a package 'spindle'" in refused(project, "classifier", "spindle", "--model", str(CNN), "--labels", str(CNN_LABELS))
    # Cargo gives `spindle_sdk` and `spindle-sdk` the same library and output file.
    assert "already has a package 'spindle-sdk'" in refused(project, "classifier", "spindle_sdk", "--model", str(CNN), "--labels", str(CNN_LABELS))
    # The id a dotted name becomes is taken: --id chooses another.
    assert "already has a component 'toy-v1-5'" in refused(project, "oip", "toy.v1.5", "--model", str(DETECTOR))
    # A folder that differs only in case could not be checked out on macOS or Windows.
    assert "only in case" in refused(project, "oip", "DET", "--id", "det-upper", "--model", str(DETECTOR))
    assert snapshot(project) == before


def external_data_model(path: Path) -> None:
    """A `Constant` node whose tensor says its values are in a file beside the model."""
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor("w", TensorProto.FLOAT, [2], [0.0, 0.0])
    value.ClearField("float_data")
    value.data_location = TensorProto.EXTERNAL
    value.external_data.add(key="location", value="/etc/passwd")
    graph = helper.make_graph([helper.make_node("Constant", [], ["c"], value=value), helper.make_node("Add", ["x", "c"], ["y"])],
                              "external", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph), path)


def test_what_cannot_be_served_is_refused_with_the_reason_and_nothing_written(project, tmp_path):
    before = snapshot(project)
    external_data_model(tmp_path / "external.onnx")
    (tmp_path / "not.onnx").write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    (tmp_path / "two.txt").write_text("a\nb\n")
    for args, words in [
        (["oip", "junk", "--model", str(tmp_path / "not.onnx")], "not an ONNX model"),
        (["oip", "a/b", "--model", str(DETECTOR)], "invalid model name 'a/b'"),
        (["oip", "..", "--model", str(DETECTOR)], "invalid model name '..'"),
        (["oip", "stats", "--model", str(DETECTOR)], "statistics endpoint"),
        (["oip", "ok", "--id", "Bad_Id", "--model", str(DETECTOR)], "invalid component id 'Bad_Id'"),
        (["oip", "unbatched", "--model", str(DETECTOR), "--max-batch-size", "4"], "needs a batch axis"),
        (["oip", "external", "--model", str(tmp_path / "external.onnx")], "tensor 'w' refers to external data"),
        (["oip", "no-batch", "--model", str(CNN), "--max-batch-size", "0", "--max-queue-delay-us", "500"], "needs --max-batch-size above 0"),
        (["oip", "slow", "--model", str(CNN), "--max-batch-size", "8", "--max-queue-delay-us", "99999999999"], "over one minute"),
        (["classifier", "int-scores", "--model", str(CNN), "--labels", str(CNN_LABELS), "--output", "nope"], "no output 'nope'"),
        (["oip", "missing", "--model", str(tmp_path / "absent.onnx")], "reading the model"),
        (["classifier", "wrong-labels", "--model", str(CNN), "--labels", str(tmp_path / "two.txt")], "has 2 labels, but output 'probabilities' scores 10 classes"),
        (["classifier", "not-an-image", "--model", str(DETECTOR), "--labels", str(tmp_path / "two.txt")], "--size"),
        (["classifier", "odd-size", "--model", str(CNN), "--labels", str(CNN_LABELS), "--size", "64x64"], "differs"),
        (["classifier", "zero-std", "--model", str(CNN), "--labels", str(CNN_LABELS), "--std", "1,0,1"], "cannot be 0"),
    ]:
        assert words in refused(project, *args), args
    assert snapshot(project) == before
    assert not (project / "models/wrong-labels").exists() and not (project / "functions/wrong-labels").exists()


def test_a_manifest_it_would_break_is_refused_before_anything_is_written(tmp_path):
    """A route another component already has is found when the new manifest is validated,
    which comes before any file is written: not even `models/` is left behind."""
    project = copy_project(tmp_path / "clash")
    (project / "spin.toml").write_text('spin_manifest_version = 2\n\n[application]\nname = "clash"\n\n'
                                       '[[trigger.http]]\nroute = "/v2/models/det/..."\ncomponent = "other"\n\n'
                                       '[component.other]\nsource = "other.wasm"\n')
    before = (project / "spin.toml").read_text()
    assert "/v2/models/det" in refused(project, "oip", "det", "--model", str(DETECTOR))
    assert (project / "spin.toml").read_text() == before and not (project / "models").exists()


def test_outputs_that_are_initializers_are_left_out_as_describe_py_does(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    bias = helper.make_tensor("bias", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["y"])], "init-out",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("bias", TensorProto.FLOAT, [2])], [bias])
    onnx.save(helper.make_model(graph), tmp_path / "init-out.onnx")
    project = copy_project(tmp_path / "app")
    created(project, "oip", "init-out", "-f", str(project), "--model", str(tmp_path / "init-out.onnx"))
    written = json.loads((project / "models/init-out/model.json").read_text())
    assert written == describe.describe(tmp_path / "init-out.onnx", "init-out", 0)
    assert [t["name"] for t in written["outputs"]] == ["y"]


def test_a_new_app_gets_its_own_manifest(tmp_path):
    """Where there is no `spin.toml` yet, `spindle new` starts one: a valid app with the model."""
    project = copy_project(tmp_path / "fresh")
    created(project, "oip", "det", "--model", str(DETECTOR))
    manifest = tomllib.loads((project / "spin.toml").read_text())
    assert manifest["spin_manifest_version"] == 2 and manifest["application"]["name"] == "fresh"
    assert list(manifest["component"]) == ["det"]


def test_the_written_functions_pass_clippy(project):
    """What the template writes is held to the workspace's own lint bar."""
    result = subprocess.run(["cargo", "clippy", "--target", "wasm32-wasip2", "-p", "digits", "-p", "colours-v1", "--", "-D", "warnings"],
                            cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
