#!/usr/bin/env python3
"""Fetch Silero VAD (the 16 kHz "sequence" export, `silero_vad_16k_sequence.onnx`, MIT) from its
pinned PyPI wheel `silero-vad`, check the wheel's and the file's checksums, and write it here as
`model.onnx`. Needs only Python and pip.

    python models/vad/fetch.py

Idempotent; the wheel is downloaded once per machine (see models/wheels.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import wheels  # noqa: E402

WHEEL = ("silero-vad==6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
         "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8")
MODEL_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"

if __name__ == "__main__":
    wheels.install(*WHEEL, "silero_vad/data/silero_vad_16k_sequence.onnx", MODEL_SHA256, HERE / "model.onnx")
