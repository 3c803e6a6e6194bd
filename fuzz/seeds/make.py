#!/usr/bin/env python3
"""Writes the fuzz targets' seeds (fuzz/seeds/TARGET/*) from the test suite's own inputs, in each
target's layout (see fuzz/src/lib.rs). Rerun after changing a layout: `python3 fuzz/seeds/make.py`."""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(__file__).resolve().parent


def write(target, name, data):
    d = OUT / target
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


png = (ROOT / "models/cifar10/examples/digit-3.png").read_bytes()
jpg = (ROOT / "models/cifar10/examples/digit-7-128.jpg").read_bytes()

# The protocol: the CNN's JSON request (tests/test_oip.py), its binary form, the mixed model's.
pixels = [0.5] * (32 * 32 * 3)
cnn = {"id": "7", "inputs": [{"name": "input", "shape": [1, 32, 32, 3], "datatype": "FP32", "data": pixels}],
       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
write("oip_infer", "cnn-json", b"\x00" + json.dumps(cnn).encode())
nested = {"inputs": [{"name": "input", "shape": [1, 32, 32, 3], "datatype": "FP32",
                      "data": [[[[0.25] * 3] * 32] * 32]}], "parameters": {"binary_data_output": True}}
write("oip_infer", "cnn-nested", b"\x00" + json.dumps(nested).encode())
header = json.dumps({"inputs": [{"name": "input", "shape": [1, 32, 32, 3], "datatype": "FP32",
                                 "parameters": {"binary_data_size": 12288}}]}).encode()
write("oip_infer", "cnn-binary", b"\x02" + str(len(header)).encode() + b"\n" + header + struct.pack("<3072f", *pixels))
mixed = json.dumps({"inputs": [
    {"name": "a", "shape": [2, 2], "datatype": "INT64", "data": [1, -2, 3, 9007199254740991]},
    {"name": "b", "shape": [1, 2, 2], "datatype": "UINT8", "parameters": {"binary_data_size": 4}},
    {"name": "c", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": 6}}],
    "outputs": [{"name": "y"}]}).encode()
write("oip_infer", "mixed-binary", b"\x03" + str(len(mixed)).encode() + b"\n" + mixed + bytes(range(10)))
write("oip_infer", "cnn-empty-batch", b"\x00" + json.dumps(
    {"inputs": [{"name": "input", "shape": [0, 32, 32, 3], "datatype": "FP32", "data": []}]}).encode())

# JSON tensors, flat and nested.
write("json_tensor", "flat", json.dumps([1, 2.5, -3, 1e30]))
write("json_tensor", "nested", json.dumps([[[1, 2], [3, 4]], [[5, 6], [7, 8]]]))
write("json_tensor", "scalar", "3.5")
write("json_tensor", "mixed", json.dumps([[1, "two"], [None, True]]))

# Multipart, as curl -F sends it (tests/test_cifar10.py).
form = (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--XyZ--\r\n")
write("multipart", "curl-f", b"multipart/form-data; boundary=XyZ\nimage\n" + form)
write("multipart", "quoted-boundary", b"multipart/form-data; boundary=\"XyZ\"\nnote\n" + form)

# Images: the CNN's examples.
write("image", "digit.png", png)
write("image", "digit.jpg", jpg)

# Manifests: the repo's own.
for name, path in [("spin.toml", "spin.toml"), ("portable.toml", "spin.portable.toml"), ("fixtures.toml", "tests/fixtures/spin.toml")]:
    write("manifest", name, (ROOT / path).read_bytes())

# Routes, then paths (the router's unit tests' shapes, and traversal).
write("routes", "models", "/models/cifar10/...\n/v2/models/cifar10/...\n/models/cifar10/classify\n/...\n\n"
      "/models/cifar10/classify/\n/models/cifar10\n/models/cifar10x\n/models/cifar10/../../v2\n//v2/models/cifar10/infer\n/\n")
write("routes", "root", "/\n/a/...\n\n/\n/a\n/a/b\n/b\n")

# Tensors: type, length, dimensions.
def tensor(ty, length, dims):
    return bytes([ty]) + struct.pack("<Q", length) + b"".join(struct.pack("<I", d) for d in dims)
write("tensor", "cnn", tensor(1, 12288, [1, 32, 32, 3]))
write("tensor", "empty", tensor(4, 0, [0, 7]))
write("tensor", "large", tensor(6, 0, [65536, 65536, 65536]))
write("tensor", "rank9", tensor(0, 2, [1] * 9))
