"""The model pipeline: CIFAR-10's batch format, the digits stand-in, a short training run."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np

from conftest import ROOT, dataset

import train  # noqa: E402  (models/cifar10 is on sys.path via conftest)

sys.path.insert(0, str(ROOT / "models"))


def write_cifar_batch(path, images_hwc, labels):
    """A batch in CIFAR-10's own python format: rows of 1024 R, 1024 G, 1024 B bytes."""
    rows = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"labels": list(map(int, labels)), b"data": rows,
                     b"filenames": [b"x.png"] * len(labels)}, f)


def fake_cifar10(root, n=40, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": n}, f)
    made = {}
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        write_cifar_batch(root / name, images, labels)
        made[name] = (images, labels)
    return made


def test_cifar10_batches_load_in_hwc_rgb_order(tmp_path):
    made = fake_cifar10(tmp_path / "cifar-10-batches-py")
    (x_tr, y_tr), (x_te, y_te), names = dataset.load_cifar10(tmp_path / "cifar-10-batches-py")
    assert names[0] == "airplane" and len(names) == 10
    assert x_tr.shape == (80, 32, 32, 3) and x_tr.dtype == np.uint8
    np.testing.assert_array_equal(x_tr[:40], made["data_batch_1"][0])
    np.testing.assert_array_equal(x_te, made["test_batch"][0])
    np.testing.assert_array_equal(y_te, made["test_batch"][1])


def test_cifar10_batch_with_wrong_width_is_refused(tmp_path):
    with open(tmp_path / "bad", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    try:
        dataset.read_cifar10_batch(tmp_path / "bad")
    except ValueError as e:
        assert "expected data of shape [N, 3072]" in str(e)
    else:
        raise AssertionError("accepted a malformed batch")


def test_digits_become_cifar_format_with_a_fixed_split():
    (x_tr, y_tr), (x_te, y_te), names = dataset.load_digits_split()
    assert x_tr.shape[1:] == (32, 32, 3) and x_tr.dtype == np.uint8
    assert len(x_te) == 360 and names == [str(i) for i in range(10)]
    assert (x_te[..., 0] == x_te[..., 2]).all()
    again = dataset.load_digits_split()[1][0]
    np.testing.assert_array_equal(x_te, again)


def test_short_training_on_cifar_format_exports_matching_onnx(tmp_path):
    fake_cifar10(tmp_path / "c10")
    out = tmp_path / "out"
    train.main(["--cifar10", str(tmp_path / "c10"), "--epochs", "1", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["onnx_vs_numpy_max_abs_diff"] < 1e-5
    assert (out / "labels.txt").read_text().split() [:2] == ["airplane", "automobile"]
    assert (out / "model.onnx").stat().st_size > 400_000


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    p = train.init_params(rng)
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    y = np.array([3, 7])

    def loss(params):
        probs, _ = train.forward(params, x)
        return -np.log(probs[np.arange(2), y]).mean()

    probs, caches = train.forward(p, x, keep=True)
    grads = train.backward(p, probs, y, caches)
    for key, index in [("dense2.w", (5, 3)), ("conv1.w", (1, 2, 0, 1)), ("conv3.b", (4,))]:
        params = {k: v.astype(np.float64) for k, v in p.items()}
        eps = 1e-4
        params[key][index] += eps
        up = loss(params)
        params[key][index] -= 2 * eps
        down = loss(params)
        numeric = (up - down) / (2 * eps)
        assert abs(numeric - grads[key][index]) < 1e-3 + 1e-2 * abs(numeric), (key, numeric, grads[key][index])


def test_shipped_models_match_their_metrics():
    """The shipped ONNX files themselves, evaluated on the held-out split, score what
    metrics.json records for them (fp32 and int8), so a changed file cannot go unnoticed."""
    import quantize

    metrics = json.loads((ROOT / "models/cifar10/metrics.json").read_text())
    _, (x, y), _ = dataset.load_digits_split()
    assert metrics["heldout_images"] == len(y) == 360
    fp32_correct, fp32_accuracy = quantize.accuracy(ROOT / "models/cifar10/model.onnx", x, y)
    int8_correct, int8_accuracy = quantize.accuracy(ROOT / "models/cifar10-int8/model.onnx", x, y)
    assert fp32_accuracy == metrics["heldout_top1_accuracy"] > 0.95
    assert fp32_correct == metrics["quantized"]["fp32_heldout_correct"]
    assert int8_correct == metrics["quantized"]["heldout_correct"]
    assert int8_accuracy == metrics["quantized"]["heldout_top1_accuracy"]
    assert int8_correct >= fp32_correct - 3, "int8 costs at most 3 of 360 held-out images"


def test_quantisation_is_reproducible_and_described(tmp_path):
    import describe
    import quantize

    again = tmp_path / "model.onnx"
    quantize.quantize(ROOT / "models/cifar10/model.onnx", again, quantize.calibration_images())
    shipped = ROOT / "models/cifar10-int8/model.onnx"
    assert again.read_bytes() == shipped.read_bytes(), "models/cifar10/quantize.py no longer gives the shipped file"
    assert shipped.stat().st_size < (ROOT / "models/cifar10/model.onnx").stat().st_size / 3
    declared = json.loads((ROOT / "models/cifar10-int8/model.json").read_text())
    assert declared == describe.describe(shipped, "cifar10-int8", train.MAX_BATCH_SIZE, max_queue_delay_us=train.MAX_QUEUE_DELAY_US)


def test_declared_description_matches_the_onnx_file():
    import describe

    declared = json.loads((ROOT / "models/cifar10/model.json").read_text())
    assert declared == describe.describe(ROOT / "models/cifar10/model.onnx", "cifar10", train.MAX_BATCH_SIZE,
                                         max_queue_delay_us=train.MAX_QUEUE_DELAY_US)


def test_fetched_text_detector_is_the_pinned_one_and_matches_its_description():
    import hashlib

    import describe

    sys.path.insert(0, str(ROOT / "models/ppocr-det"))
    import fetch

    model = ROOT / "models/ppocr-det/model.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == fetch.MODEL_SHA256
    declared = json.loads((ROOT / "models/ppocr-det/model.json").read_text())
    assert declared == describe.describe(model, "ppocr-det", 0)


def test_fetched_embedding_model_and_tokenizer_are_the_pinned_ones():
    import hashlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("embed_fetch", ROOT / "models/embed/fetch.py")
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    assert hashlib.sha256((ROOT / "models/embed/model.onnx").read_bytes()).hexdigest() == fetch.MODEL_SHA256
    assert hashlib.sha256((ROOT / "models/embed/tokenizer.json").read_bytes()).hexdigest() == fetch.TOKENIZER_SHA256
