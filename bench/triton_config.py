"""Triton's model configuration from our model.json, as Spindle's function answers it: the
route both Python peers lack and perf_analyzer needs (`GET /v2/models/{m}/config`)."""

from __future__ import annotations

import json
from pathlib import Path

MODEL_JSON = Path(__file__).resolve().parents[1] / "models/cifar10/model.json"


def triton_config(description: dict | None = None) -> dict:
    description = description or json.loads(MODEL_JSON.read_text())
    batched = description["max_batch_size"] > 0

    def tensors(ts):
        return [{"name": t["name"], "data_type": f"TYPE_{t['datatype']}", "dims": t["shape"][1:] if batched else t["shape"]}
                for t in ts]

    return {"name": description["name"], "platform": description["platform"], "max_batch_size": description["max_batch_size"],
            "input": tensors(description["inputs"]), "output": tensors(description["outputs"])}
