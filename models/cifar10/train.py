#!/usr/bin/env python3
"""Define, train, evaluate and export the seed's CIFAR-10 CNN to ONNX, with numpy alone.

    Conv2D 32 3x3 ReLU -> MaxPool 2 -> Conv2D 64 3x3 ReLU -> MaxPool 2 -> Conv2D 64 3x3 ReLU
    -> Flatten -> Dense 64 ReLU -> Dense 10 softmax

Input: float32 NHWC [N, 32, 32, 3] in [0, 1] (CIFAR-10's layout, pixels / 255). Output:
"probabilities" [N, 10]. Without --cifar10 it trains on scikit-learn's bundled digits in
CIFAR-10's format (see dataset.py); with --cifar10 DIR it reads CIFAR-10's python batches.

The exported graph is checked against this script's own forward pass (onnxruntime, 1e-5).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import dataset  # noqa: E402
import describe  # noqa: E402

MODEL_NAME = "cifar10"
MAX_BATCH_SIZE = 32
# Dynamic batching: how long a compute may wait for others (Triton's max_queue_delay_microseconds).
MAX_QUEUE_DELAY_US = 500
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
CONV_SPECS = [(32, 3), (64, 32), (64, 64)]  # (out channels, in channels), all 3x3, valid


# ---------------------------------------------------------------- layers (NCHW inside)

def conv_forward(x, w, b):
    n, c, h, wd = x.shape
    oh, ow = h - 2, wd - 2
    out = np.zeros((n, w.shape[0], oh, ow), dtype=np.float32)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", x[:, :, i:i + oh, j:j + ow], w[:, :, i, j], optimize=True)
    return out + b[None, :, None, None]


def conv_backward(x, w, dout):
    oh, ow = dout.shape[2], dout.shape[3]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for i in range(3):
        for j in range(3):
            patch = x[:, :, i:i + oh, j:j + ow]
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dout, patch, optimize=True)
            dx[:, :, i:i + oh, j:j + ow] += np.einsum("nohw,oc->nchw", dout, w[:, :, i, j], optimize=True)
    return dx, dw, dout.sum(axis=(0, 2, 3))


def pool_forward(x):
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    blocks = x[:, :, :h2 * 2, :w2 * 2].reshape(n, c, h2, 2, w2, 2).transpose(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(n, c, h2, w2, 4)
    arg = blocks.argmax(axis=-1)
    return np.take_along_axis(blocks, arg[..., None], axis=-1)[..., 0], (x.shape, arg)


def pool_backward(dout, cache):
    shape, arg = cache
    n, c, h, w = shape
    h2, w2 = h // 2, w // 2
    blocks = np.zeros((n, c, h2, w2, 4), dtype=np.float32)
    np.put_along_axis(blocks, arg[..., None], dout[..., None], axis=-1)
    blocks = blocks.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h2 * 2, w2 * 2)
    dx = np.zeros(shape, dtype=np.float32)
    dx[:, :, :h2 * 2, :w2 * 2] = blocks
    return dx


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- the model

def init_params(rng):
    p = {}
    for k, (o, c) in enumerate(CONV_SPECS, start=1):
        p[f"conv{k}.w"] = (rng.standard_normal((o, c, 3, 3)) * np.sqrt(2.0 / (c * 9))).astype(np.float32)
        p[f"conv{k}.b"] = np.zeros(o, dtype=np.float32)
    p["dense1.w"] = (rng.standard_normal((1024, 64)) * np.sqrt(2.0 / 1024)).astype(np.float32)
    p["dense1.b"] = np.zeros(64, dtype=np.float32)
    p["dense2.w"] = (rng.standard_normal((64, 10)) * np.sqrt(1.0 / 64)).astype(np.float32)
    p["dense2.b"] = np.zeros(10, dtype=np.float32)
    return p


def forward(p, x_nhwc, keep=False):
    x = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    caches = []
    a1 = conv_forward(x, p["conv1.w"], p["conv1.b"]); r1 = np.maximum(a1, 0)
    m1, pc1 = pool_forward(r1)
    a2 = conv_forward(m1, p["conv2.w"], p["conv2.b"]); r2 = np.maximum(a2, 0)
    m2, pc2 = pool_forward(r2)
    a3 = conv_forward(m2, p["conv3.w"], p["conv3.b"]); r3 = np.maximum(a3, 0)
    flat = r3.reshape(r3.shape[0], -1)
    a4 = flat @ p["dense1.w"] + p["dense1.b"]; r4 = np.maximum(a4, 0)
    logits = r4 @ p["dense2.w"] + p["dense2.b"]
    probs = softmax(logits)
    if keep:
        caches = (x, a1, r1, m1, pc1, a2, r2, m2, pc2, a3, r3, flat, a4, r4)
    return probs, caches


def backward(p, probs, y, caches):
    x, a1, r1, m1, pc1, a2, r2, m2, pc2, a3, r3, flat, a4, r4 = caches
    n = probs.shape[0]
    g = {}
    dlogits = probs.copy()
    dlogits[np.arange(n), y] -= 1.0
    dlogits /= n
    g["dense2.w"] = r4.T @ dlogits; g["dense2.b"] = dlogits.sum(0)
    da4 = (dlogits @ p["dense2.w"].T) * (a4 > 0)
    g["dense1.w"] = flat.T @ da4; g["dense1.b"] = da4.sum(0)
    da3 = (da4 @ p["dense1.w"].T).reshape(r3.shape) * (a3 > 0)
    dm2, g["conv3.w"], g["conv3.b"] = conv_backward(m2, p["conv3.w"], da3)
    da2 = pool_backward(dm2, pc2) * (a2 > 0)
    dm1, g["conv2.w"], g["conv2.b"] = conv_backward(m1, p["conv2.w"], da2)
    da1 = pool_backward(dm1, pc1) * (a1 > 0)
    _, g["conv1.w"], g["conv1.b"] = conv_backward(x, p["conv1.w"], da1)
    return g


def predict(p, x, batch=256):
    return np.concatenate([forward(p, x[i:i + batch])[0] for i in range(0, len(x), batch)])


def augment(rng, images):
    """Random shifts of up to 2 pixels, zero-filled: digits sit in different places in photos."""
    out = np.zeros_like(images)
    for k, img in enumerate(images):
        dy, dx = rng.integers(-2, 3, size=2)
        src = img[max(0, -dy):32 - max(0, dy), max(0, -dx):32 - max(0, dx)]
        out[k, max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out


def train(x_train_u8, y_train, epochs, batch, lr, seed, log=print):
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    for epoch in range(epochs):
        order = rng.permutation(len(x_train_u8))
        losses = []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            xb = dataset.to_model_input(augment(rng, x_train_u8[idx]))
            probs, caches = forward(p, xb, keep=True)
            losses.append(-np.log(probs[np.arange(len(idx)), y_train[idx]] + 1e-12).mean())
            grads = backward(p, probs, y_train[idx], caches)
            t += 1
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
                mhat = m[k] / (1 - b1 ** t)
                vhat = v[k] / (1 - b2 ** t)
                p[k] = (p[k] - lr * mhat / (np.sqrt(vhat) + eps)).astype(np.float32)
        log(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}")
    return p


# ---------------------------------------------------------------- ONNX export

def export_onnx(p, path: Path, opset=13):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(p[k], name=k) for k in sorted(p)]
    nodes = [
        helper.make_node("Transpose", [INPUT_NAME], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv1.w", "conv1.b"], ["c1"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.w", "conv2.b"], ["c2"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "conv3.w", "conv3.b"], ["c3"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Flatten", ["r3"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "dense1.w", "dense1.b"], ["d1"]),
        helper.make_node("Relu", ["d1"], ["r4"]),
        helper.make_node("Gemm", ["r4", "dense2.w", "dense2.b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cifar10_cnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 32, 32, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="spindle-models-cifar10")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def onnxruntime_probs(model_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar10", metavar="DIR", help="train on real CIFAR-10 (extracted cifar-10-batches-py)")
    ap.add_argument("--out", default=str(HERE), help="output folder for model.onnx, labels.txt, metrics.json")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke runs)")
    args = ap.parse_args(argv)

    if args.cifar10:
        (x_tr, y_tr), (x_te, y_te), names = dataset.load_cifar10(args.cifar10)
        source = "CIFAR-10 (data_batch_1..5 / test_batch)"
    else:
        (x_tr, y_tr), (x_te, y_te), names = dataset.load_digits_split()
        source = (f"scikit-learn digits as 32x32x3 uint8, stratified split "
                  f"{1 - dataset.HELDOUT_FRACTION:.0%}/{dataset.HELDOUT_FRACTION:.0%}, seed {dataset.SPLIT_SEED}")
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]

    params = train(x_tr, y_tr, args.epochs, args.batch, args.lr, args.seed)
    x_eval = dataset.to_model_input(x_te)
    ours = predict(params, x_eval)
    accuracy = float((ours.argmax(1) == y_te).mean())

    out = Path(args.out)
    model_path = out / "model.onnx"
    export_onnx(params, model_path)
    theirs = onnxruntime_probs(model_path, x_eval)
    max_diff = float(np.abs(theirs - ours).max())
    if max_diff > 1e-5:
        raise SystemExit(f"exported ONNX differs from the numpy model by {max_diff:.2e} (> 1e-5)")
    (out / "labels.txt").write_text("\n".join(names) + "\n")
    describe.write(model_path, MODEL_NAME, MAX_BATCH_SIZE, MAX_QUEUE_DELAY_US)
    metrics = {
        "data": source,
        "train_images": int(len(x_tr)),
        "heldout_images": int(len(x_te)),
        "heldout_top1_accuracy": accuracy,
        "epochs": args.epochs,
        "seed": args.seed,
        "onnx_vs_numpy_max_abs_diff": max_diff,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
