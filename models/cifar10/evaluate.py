#!/usr/bin/env python3
"""Top-1 accuracy of the cifar10 model (or its int8 version, `--model cifar10-int8`) on its
held-out split: offline (onnxruntime) and served through HTTP (each image sent as a PNG to
POST <url>/models/<model>/classify).

    python models/cifar10/evaluate.py --url http://127.0.0.1:3000 [--model cifar10-int8]

Exits non-zero when the served accuracy differs from the offline one or from metrics.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402


def png_bytes(image_uint8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_uint8).save(buf, format="PNG")
    return buf.getvalue()


def offline_predictions(model_path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"input": dataset.to_model_input(images)})[0].argmax(1)


def served_predictions(url: str, images: np.ndarray, labels: list[str], model: str = "cifar10") -> np.ndarray:
    import requests

    index = {name: i for i, name in enumerate(labels)}
    out = []
    with requests.Session() as http:
        for image in images:
            r = http.post(f"{url}/models/{model}/classify?top_k=1", data=png_bytes(image),
                          headers={"content-type": "image/png"}, timeout=30)
            r.raise_for_status()
            out.append(index[r.json()[0]["label"]])
    return np.asarray(out)


# Each model this script evaluates: its file, and where metrics.json records its accuracy.
MODELS = {
    "cifar10": (HERE / "model.onnx", lambda metrics: metrics["heldout_top1_accuracy"]),
    "cifar10-int8": (HERE.parent / "cifar10-int8" / "model.onnx", lambda metrics: metrics["quantized"]["heldout_top1_accuracy"]),
}


def evaluate(url: str, model: str = "cifar10") -> dict:
    _, (x_te, y_te), labels = dataset.load_digits_split()
    path, recorded_of = MODELS[model]
    recorded = recorded_of(json.loads((HERE / "metrics.json").read_text()))
    offline = float((offline_predictions(path, x_te) == y_te).mean())
    served = float((served_predictions(url, x_te, labels, model) == y_te).mean())
    return {"images": int(len(y_te)), "recorded": recorded, "offline_onnxruntime": offline, "served_http": served}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--model", default="cifar10", choices=sorted(MODELS))
    args = ap.parse_args(argv)
    result = evaluate(args.url, args.model)
    print(json.dumps(result, indent=2))
    if not (result["served_http"] == result["offline_onnxruntime"] == result["recorded"]):
        raise SystemExit("served accuracy differs from the offline accuracy")


if __name__ == "__main__":
    main()
