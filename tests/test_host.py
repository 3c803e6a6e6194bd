"""Host behaviour around the function: limits, graph sharing, the file fallback, manifests."""

from __future__ import annotations

import re
import subprocess
import time

import numpy as np
import pytest
import requests

from conftest import CIFAR10_WASM, MODEL, ROOT, SPINDLE, Spindle, png

CLASSIFY = "/models/cifar10/classify"


def two_components_manifest(tmp_path):
    """Two components, same wasm and same model bytes, on different routes."""
    models = tmp_path / "models" / "cifar10"
    models.mkdir(parents=True)
    (models / "model.onnx").write_bytes(MODEL.read_bytes())
    (models / "labels.txt").write_text((ROOT / "models/cifar10/labels.txt").read_text())
    manifest = tmp_path / "spin.toml"
    manifest.write_text(f"""
spin_manifest_version = 2
[application]
name = "shared"
[[trigger.http]]
route = "/a/..."
component = "a"
[[trigger.http]]
route = "/b/..."
component = "b"
[component.a]
source = "{CIFAR10_WASM}"
files = [{{ source = "models", destination = "/models" }}]
[component.b]
source = "{CIFAR10_WASM}"
files = ["models/cifar10/*"]
""")
    return manifest


def test_one_compiled_graph_serves_all_components(tmp_path, heldout):
    x, y, names = heldout
    server = Spindle(two_components_manifest(tmp_path))
    try:
        answers = [requests.post(f"{server.url}/{c}/classify", data=png(x[i]), timeout=30).json()
                   for c in ("a", "b") for i in range(3)]
        assert [a[0]["label"] for a in answers] == [names[y[i]] for i in range(3)] * 2
    finally:
        server.stop()
    assert server.stderr.count("compiled model graph") == 1, server.stderr


def test_without_named_models_functions_load_their_mounted_file(spindle, heldout):
    x, _, _ = heldout
    fallback = Spindle(ROOT / "spin.toml", "--no-named-models")
    try:
        for image in x[:4]:
            named = requests.post(f"{spindle.url}{CLASSIFY}?top_k=10", data=png(image), timeout=30).json()
            loaded = requests.post(f"{fallback.url}{CLASSIFY}?top_k=10", data=png(image), timeout=30).json()
            assert [p["label"] for p in named] == [p["label"] for p in loaded]
            np.testing.assert_allclose([p["probability"] for p in named], [p["probability"] for p in loaded], atol=1e-6)
    finally:
        fallback.stop()
    # load(bytes) of the same bytes hits the graph cache: compiled once for all four requests
    assert fallback.stderr.count("compiled model graph") == 1, fallback.stderr


def test_body_over_the_limit_is_413(heldout):
    server = Spindle(ROOT / "spin.toml", "--max-body-bytes", "1000")
    try:
        r = requests.post(f"{server.url}{CLASSIFY}", data=b"x" * 5000, headers={"content-type": "image/png"}, timeout=30)
        assert r.status_code == 413
        assert "exceeds the 1000-byte limit" in r.json()["error"]
    finally:
        server.stop()


def test_a_bad_manifest_names_the_file_and_key(tmp_path):
    bad = tmp_path / "spin.toml"
    bad.write_text('spin_manifest_version = 2\n[application]\nname = "x"\n[component.a]\nsource = "a.wasm"\nfilez = []\n')
    run = subprocess.run([str(SPINDLE), "up", "-f", str(bad), "--listen", "127.0.0.1:0", "--admin-listen", "none"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert str(bad) in run.stderr and "unknown field `filez`" in run.stderr


def test_a_missing_build_says_how_to_build(tmp_path):
    manifest = tmp_path / "spin.toml"
    manifest.write_text('spin_manifest_version = 2\n[application]\nname = "x"\n'
                        '[[trigger.http]]\nroute = "/..."\ncomponent = "a"\n[component.a]\nsource = "missing.wasm"\n')
    run = subprocess.run([str(SPINDLE), "up", "-f", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "spindle build" in run.stderr


@pytest.mark.parametrize("grant, ok", [
    ("", False),
    ('allowed_outbound_hosts = ["http://127.0.0.1:9"]', True),
    ('[component.a.tool.spindle]\nimports = ["wasi:http/client"]', True),
    ('[component.a.tool.spindle]\nimports = ["wasi:sockets/*"]', False),
])
def test_the_build_refuses_a_component_that_imports_what_it_is_not_granted(tmp_path, grant, ok):
    """The hostile fixture imports outbound HTTP (wasi:http/client): granted by
    allowed_outbound_hosts or by name, refused otherwise."""
    hostile = ROOT / "target" / "wasm32-wasip2" / "release" / "hostile.wasm"
    manifest = tmp_path / "spin.toml"
    manifest.write_text('spin_manifest_version = 2\n[application]\nname = "x"\n'
                        f'[[trigger.http]]\nroute = "/..."\ncomponent = "a"\n[component.a]\nsource = "{hostile}"\n{grant}\n')
    run = subprocess.run([str(SPINDLE), "build", "-f", str(manifest)], capture_output=True, text=True, timeout=60)
    if ok:
        assert run.returncode == 0, run.stderr
    else:
        assert run.returncode != 0
        assert "component 'a' imports an interface that it is not granted: wasi:http/client@0.3.0" in run.stderr
        assert "[component.a.tool.spindle] imports" in run.stderr



def test_the_build_says_where_it_is_and_how_long_each_component_took(tmp_path):
    hello = ROOT / "target" / "wasm32-wasip2" / "release" / "hello.wasm"
    manifest = tmp_path / "spin.toml"
    manifest.write_text('spin_manifest_version = 2\n[application]\nname = "x"\n[[trigger.http]]\nroute = "/..."\ncomponent = "a"\n'
                        + "".join(f'[component.{c}]\nsource = "{hello}"\n[component.{c}.build]\ncommand = ["sleep 0.2", "true"]\n'
                                  for c in "abc")
                        + f'[component.d]\nsource = "{hello}"\n')
    run = subprocess.run([str(SPINDLE), "build", "-f", str(manifest)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("Building component a in ") == 2, "each command announced"
    built = re.findall(r"^\[(\d+)/(\d+)\] Built component (\S+) in [\d.]+ s \(total ", run.stderr, re.M)
    assert built == [("1", "3", "a"), ("2", "3", "b"), ("3", "3", "c")], run.stderr
    assert re.search(r"^Finished building 3 components in [\d.]+ s; their imports are granted$", run.stderr, re.M)


VARIABLES_MANIFEST = """spin_manifest_version = 2
[application]
name = "variables"
[variables]
api_host = {{ default = "api.example.com" }}
api_token = {{ required = true, secret = true }}
[[trigger.http]]
route = "/..."
component = "reader"
[component.reader]
source = "{hostile}"
environment = {{ MODE = "variables", LITERAL = "{{{{ api_host }}}}" }}
allowed_outbound_hosts = ["https://{{{{ api_host }}}}"]
[component.reader.variables]
endpoint = "https://{{{{ api_host }}}}/v1"
token = "{{{{ api_token }}}}"
"""


def test_variables_resolve_from_spin_variable_environment_and_reach_the_guest(tmp_path):
    """Spin's variables: app [variables] from SPIN_VARIABLE_* or their default, component
    variables as templates over them, read by the guest through spin-sdk's variables::get."""
    manifest = tmp_path / "spin.toml"
    manifest.write_text(VARIABLES_MANIFEST.format(hostile=ROOT / "target" / "wasm32-wasip2" / "release" / "hostile.wasm"))
    base = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SPIN_VARIABLE_")}
    missing = subprocess.run([str(SPINDLE), "up", "-f", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none"],
                             capture_output=True, text=True, timeout=60, env=base)
    assert missing.returncode != 0
    assert "variable 'api_token' is required: set SPIN_VARIABLE_API_TOKEN in the environment" in missing.stderr

    env = {**base, "NO_COLOR": "1", "RUST_LOG": "spindle=info", "SPIN_VARIABLE_API_TOKEN": "s3cret",
           "SPIN_VARIABLE_API_HOST": "eu.example.com"}
    server = Spindle(manifest, "--no-cache", env=env)
    try:
        r = requests.get(f"{server.url}/?endpoint,token,api_host", timeout=30)
        assert r.status_code == 200, r.text
        lines = r.text.splitlines()
        assert lines[0] == "endpoint=https://eu.example.com/v1"
        assert lines[1] == "token=s3cret"
        # Only the component's own variables: app variables are reached through them.
        assert lines[2].startswith("api_host: ") and "undefined" in lines[2].lower(), lines[2]
        assert "s3cret" not in server.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("extra, field", [
    ('key_value_stores = ["default"]', "component.a.key_value_stores"),
    ('ai_models = ["llama2-chat"]', "component.a.ai_models"),
    ('dependencies = {{ "x:y" = "1.0.0" }}', "component.a.dependencies"),
])
def test_a_spin_field_spindle_does_not_implement_is_refused_by_name_at_start(tmp_path, extra, field):
    manifest = tmp_path / "spin.toml"
    manifest.write_text('spin_manifest_version = 2\n[application]\nname = "x"\n'
                        '[[trigger.http]]\nroute = "/..."\ncomponent = "a"\n[component.a]\nsource = "a.wasm"\n'
                        + extra.replace("{{", "{").replace("}}", "}") + "\n")
    run = subprocess.run([str(SPINDLE), "up", "-f", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert f"{field}: not supported by Spindle (" in run.stderr, run.stderr
    assert "unknown field" not in run.stderr


def wait_for(predicate, seconds=5.0):
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_compiled_components_are_cached_and_bad_entries_rebuilt(tmp_path, heldout):
    x, y, names = heldout
    cache = tmp_path / "cache"

    def start_and_classify():
        server = Spindle(ROOT / "spin.toml", "--cache-dir", str(cache))
        try:
            r = requests.post(f"{server.url}{CLASSIFY}", data=png(x[0]), timeout=30)
            assert r.json()[0]["label"] == names[y[0]]
        finally:
            server.stop()
        return server.stderr

    assert 'how="compiled"' in start_and_classify()
    assert 'how="cache hit"' in start_and_classify()
    (entry,) = cache.glob("*.cwasm")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    assert 'how="rebuilt (bad cache entry)"' in start_and_classify()
    entry.write_bytes(b"")
    assert 'how="rebuilt (bad cache entry)"' in start_and_classify()
    assert 'how="cache hit"' in start_and_classify()


def test_components_load_lazily_unless_preloaded(heldout):
    x, _, _ = heldout
    lazy = Spindle(ROOT / "spin.toml")
    try:
        assert not wait_for(lambda: "component ready" in lazy.stderr, 0.5)
        requests.post(f"{lazy.url}{CLASSIFY}", data=png(x[0]), timeout=30)
        assert wait_for(lambda: "component ready" in lazy.stderr and "compiled model graph" in lazy.stderr)
    finally:
        lazy.stop()
    eager = Spindle(ROOT / "spin.toml", "--preload")
    try:
        assert wait_for(lambda: "component ready" in eager.stderr and "compiled model graph" in eager.stderr, 1)
    finally:
        eager.stop()


def test_open_connections_are_capped_and_the_next_is_served_when_one_closes():
    import socket

    server = Spindle(ROOT / "spin.toml", "--max-connections", "2")
    try:
        host, port = server.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
        time.sleep(0.2)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{server.url}/v2/health/live", timeout=1)
        idle.pop().close()
        assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
        for s in idle:
            s.close()
    finally:
        server.stop()


def test_a_client_that_never_finishes_its_body_gets_408():
    import socket

    server = Spindle(ROOT / "spin.toml", "--body-timeout-s", "1")
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /models/cifar10/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            answer = s.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within 1000 ms" in answer
    finally:
        server.stop()
