"""A minimal MLServer custom runtime: the ONNX model on onnxruntime's CPU provider, default
session options, JSON tensors (MLServer has no binary tensor extension).

perf_analyzer reads Triton's `GET /v2/models/{m}/config`, which MLServer does not serve. The
route is added beside MLServer's own as one of its custom endpoints (`@custom_handler`: MLServer
mounts it on its REST app when the model loads); the infer path is MLServer's, untouched.

    MLSERVER_HTTP_PORT=8080 mlserver start bench/mlserver
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from triton_config import triton_config  # noqa: E402

CONFIG = triton_config()


class OnnxModel(MLModel):
    async def load(self) -> bool:
        self._session = onnxruntime.InferenceSession(await get_model_uri(self._settings), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pixels = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        outputs = self._session.run(None, {self._input: pixels})
        # Not NumpyCodec.encode_output: the `content_type` parameter it adds makes Triton's client
        # (perf_analyzer) look for a `binary_data_size` parameter beside it and fail.
        return InferenceResponse(
            id=payload.id, model_name=self.name, model_version=self.version,
            outputs=[ResponseOutput(name=o.name, shape=list(value.shape), datatype="FP32", data=value.reshape(-1).tolist())
                     for o, value in zip(self._session.get_outputs(), outputs)])

    @custom_handler(rest_path=f"/v2/models/{CONFIG['name']}/config", rest_method="GET")
    async def config(self) -> dict:
        return CONFIG
