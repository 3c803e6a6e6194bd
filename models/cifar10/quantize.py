#!/usr/bin/env python3
"""The pipeline's int8 step: onnxruntime's static quantisation of `model.onnx`, calibrated on
training images, written to `../cifar10-int8/model.onnx` with its declared description
(`model.json`, name `cifar10-int8`), and the held-out accuracy of int8 against fp32 recorded in
`metrics.json` (`quantized`).

    .venv/bin/python models/cifar10/quantize.py [--calibration-images 512]

QDQ format (QuantizeLinear/DequantizeLinear around each convolution and matrix product), int8
weights per output channel, uint8 activations, MinMax calibration; the final softmax stays in
float. Deterministic: the same inputs give the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import dataset  # noqa: E402
import describe  # noqa: E402
import train  # noqa: E402

OUT = HERE.parent / "cifar10-int8"
NAME = "cifar10-int8"


def accuracy(model: Path, images: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    predicted = session.run(["probabilities"], {"input": dataset.to_model_input(images)})[0].argmax(1)
    correct = int((predicted == labels).sum())
    return correct, correct / len(labels)


def calibration_images(n: int = 512) -> np.ndarray:
    """`n` training images, drawn with a fixed seed."""
    (x_train, _), _, _ = dataset.load_digits_split()
    return x_train[np.random.default_rng(0).permutation(len(x_train))[:n]]


def quantize(fp32: Path, int8: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": dataset.to_model_input(calibration[i:i + 32])} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv", "MatMul", "Gemm"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibration-images", type=int, default=512)
    args = ap.parse_args()
    (_, (x_held, y_held), _) = dataset.load_digits_split()
    calibration = calibration_images(args.calibration_images)
    OUT.mkdir(exist_ok=True)
    fp32, int8 = HERE / "model.onnx", OUT / "model.onnx"
    quantize(fp32, int8, calibration)
    describe.write(int8, NAME, train.MAX_BATCH_SIZE, train.MAX_QUEUE_DELAY_US)
    fp32_correct, fp32_accuracy = accuracy(fp32, x_held, y_held)
    int8_correct, int8_accuracy = accuracy(int8, x_held, y_held)
    metrics_path = HERE / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["quantized"] = {
        "file": "../cifar10-int8/model.onnx",
        "method": f"onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 activations, MinMax on "
                  f"{len(calibration)} training images",
        "heldout_top1_accuracy": int8_accuracy,
        "heldout_correct": int8_correct,
        "fp32_heldout_correct": fp32_correct,
        "bytes": int8.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
    }
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"int8: {int8_correct}/{len(y_held)} = {int8_accuracy:.4f} held-out top-1 ({int8.stat().st_size:,} bytes); "
          f"fp32: {fp32_correct}/{len(y_held)} = {fp32_accuracy:.4f} ({fp32.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
