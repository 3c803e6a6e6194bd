#!/usr/bin/env python3
"""Fetch PP-OCRv4 text recognition (`ch_PP-OCRv4_rec_infer.onnx`, Apache-2.0) from the pinned
PyPI wheel `rapidocr-onnxruntime` (the one the detector comes from), check the wheel's and the
file's checksums, write it here as `model.onnx`, and write its character list, which the model
carries in its metadata (`character`, one per line), to `characters.txt`. Needs only Python and
pip.

    python models/ppocr-rec/fetch.py

Idempotent; the wheel is downloaded once per machine (see models/wheels.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import wheels  # noqa: E402

WHEEL = ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
         "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf")
MODEL_SHA256 = "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"


def varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def fields(data: bytes):
    """The top-level fields of a protobuf message: (number, wire type, value)."""
    at = 0
    while at < len(data):
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(data, at)
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        elif wire == 2:
            length, at = varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire == 5:
            value, at = data[at:at + 4], at + 4
        else:
            raise ValueError(f"wire type {wire} in the ONNX file")
        yield number, wire, value


def metadata(model: bytes) -> dict[str, str]:
    """ModelProto.metadata_props (field 14): key (1) and value (2) of each entry."""
    entries = {}
    for number, wire, value in fields(model):
        if number == 14 and wire == 2:
            entry = {n: v for n, w, v in fields(value) if w == 2}
            entries[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return entries


if __name__ == "__main__":
    model = HERE / "model.onnx"
    wheels.install(*WHEEL, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", MODEL_SHA256, model)
    characters = HERE / "characters.txt"
    if not characters.exists():
        # One per line, split as the model's own runtime splits them (str.splitlines).
        listed = metadata(model.read_bytes())["character"].splitlines()
        characters.write_text("".join(c + "\n" for c in listed), encoding="utf-8")
        print(f"wrote {characters} ({len(listed):,} characters, from the model's metadata)")
