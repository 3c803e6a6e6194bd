#!/usr/bin/env python3
"""Fetch PP-OCRv4 text detection (`ch_PP-OCRv4_det_infer.onnx`, Apache-2.0) from its pinned PyPI
wheel, check both checksums, and write it here as `model.onnx` (its `model.json` is committed,
written by `models/describe.py`). Needs only Python and pip.

    python models/ppocr-det/fetch.py

Idempotent: does nothing when `model.onnx` is already there with the right checksum; the wheel
is downloaded once per machine (see models/wheels.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import wheels  # noqa: E402

WHEEL = ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
         "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf")
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
MODEL_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"

if __name__ == "__main__":
    wheels.install(*WHEEL, MEMBER, MODEL_SHA256, HERE / "model.onnx")
