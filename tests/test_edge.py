"""At the edge: bearer tokens per component, the audit log, TLS and HTTP/2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import ROOT, SPINDLE, Spindle, png

WASM = ROOT / "target" / "wasm32-wasip2" / "release"


def add_token(principal: str, file) -> str:
    run = subprocess.run([str(SPINDLE), "token", "add", principal, "--file", str(file)], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def guarded_app(tmp_path):
    """Two components, each with its own tokens: one from a tokens file, one from a variable."""
    shutil.copy(WASM / "p2_hello.wasm", tmp_path / "hello.wasm")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "greeting.txt").write_text("hi")
    (tmp_path / "spin.toml").write_text("""spin_manifest_version = 2
[application]
name = "guarded"
[[trigger.http]]
route = "/a/..."
component = "a"
[[trigger.http]]
route = "/b/..."
component = "b"
[[trigger.http]]
route = "/open"
component = "open"
[component.a]
source = "hello.wasm"
files = [{ source = "data", destination = "/data" }]
[component.a.tool.spindle]
access = { tokens_file = "a.tokens" }
[component.b]
source = "hello.wasm"
files = [{ source = "data", destination = "/data" }]
[component.b.tool.spindle]
access = { tokens_env = "B_TOKENS" }
[component.open]
source = "hello.wasm"
files = [{ source = "data", destination = "/data" }]
""")
    return tmp_path / "spin.toml"


def test_tokens_guard_each_component_and_the_audit_log_records_every_request(tmp_path):
    manifest = guarded_app(tmp_path)
    alice = add_token("alice", tmp_path / "a.tokens")
    stored = (tmp_path / "a.tokens").read_text()
    assert alice.startswith("spt_") and alice not in stored and "alice sha256:" in stored
    assert oct((tmp_path / "a.tokens").stat().st_mode & 0o777) == "0o600"
    audit = tmp_path / "audit.jsonl"
    env = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "spindle=info", "B_TOKENS": "bob:b-secret-0123456789,carol:c-secret-0123456789"}
    server = Spindle(manifest, "--audit-log", str(audit), env=env)
    try:
        def get(path, token=None):
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return requests.get(f"{server.url}{path}", headers=headers, timeout=30)

        none = get("/a/x")
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        assert none.json() == {"error": "this route needs a bearer token (Authorization: Bearer TOKEN)"}
        wrong = get("/a/x", "spt_" + "0" * 64)
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert "alice" not in wrong.text
        ok = get("/a/x", alice)
        assert ok.status_code == 200
        seen = ok.json()
        assert seen["path"] == "/a/x"
        assert get("/b/y", alice).status_code == 401, "another component's token"
        assert get("/a/x", "b-secret-0123456789").status_code == 401
        assert get("/b/y", "b-secret-0123456789").status_code == 200 and get("/b/y", "c-secret-0123456789").status_code == 200
        assert get("/open").status_code == 200, "a component without access stays open"
        assert get("/v2/health/ready").status_code == 200
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: get("/a/x", alice).status_code, range(40))) == {200}
        sent = 9 + 40
    finally:
        server.stop()
    lines = audit.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == sent, (len(records), sent)
    text = audit.read_text()
    assert alice not in text and "b-secret-0123456789" not in text and "c-secret-0123456789" not in text
    for r in records:
        assert set(r) >= {"time", "request_id", "principal", "client", "method", "path", "route", "component", "models",
                          "engine", "device", "status", "bytes_in", "bytes_out", "duration_us"}
        assert r["time"].endswith("Z") and r["client"].startswith("127.0.0.1:") and r["cancelled"] is False
    assert [r["principal"] for r in records[:3]] == [None, None, "alice"]
    assert [r["status"] for r in records[:3]] == [401, 401, 200]
    assert records[2]["component"] == "a" and records[2]["route"] == "/a/..." and records[2]["bytes_out"] > 0
    assert {r["principal"] for r in records if r["component"] == "b" and r["status"] == 200} == {"bob", "carol"}
    assert sum(r["principal"] == "alice" and r["status"] == 200 for r in records) == 41


def test_the_audit_log_names_the_models_a_request_loaded(tmp_path, heldout):
    audit = tmp_path / "audit.jsonl"
    server = Spindle(ROOT / "spin.toml", "--audit-log", str(audit))
    try:
        body = png(heldout[0][0])
        r = requests.post(f"{server.url}/models/cifar10/classify", data=body, headers={"x-request-id": "audit-1"}, timeout=30)
        assert r.status_code == 200
    finally:
        server.stop()
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert record["request_id"] == "audit-1" and record["models"] == ["cifar10"] and record["bytes_in"] == len(body)
    assert record["engine"] in ("onnxruntime", "tract") and record["device"] == "cpu" and record["principal"] is None


def test_no_function_sees_a_token_and_only_the_host_names_the_principal(tmp_path):
    hostile = ROOT / "target" / "wasm32-wasip2" / "release" / "hostile.wasm"
    (tmp_path / "spin.toml").write_text(f"""spin_manifest_version = 2
[application]
name = "headers"
[[trigger.http]]
route = "/guarded"
component = "guarded"
[[trigger.http]]
route = "/open"
component = "open"
[component.guarded]
source = "{hostile}"
environment = {{ MODE = "headers" }}
[component.guarded.tool.spindle]
access = {{ tokens_file = "tokens" }}
[component.open]
source = "{hostile}"
environment = {{ MODE = "headers" }}
""")
    token = add_token("alice", tmp_path / "tokens")
    server = Spindle(tmp_path / "spin.toml")
    try:
        forged = {"authorization": f"Bearer {token}", "spindle-principal": "root"}
        assert requests.get(f"{server.url}/guarded", headers=forged, timeout=30).text == 'authorization=None principal=Some("alice")'
        assert requests.get(f"{server.url}/open", headers=forged, timeout=30).text == "authorization=None principal=None"
    finally:
        server.stop()


def test_host_endpoints_can_be_guarded_but_health_stays_open(tmp_path):
    manifest = guarded_app(tmp_path)
    text = manifest.read_text().replace('name = "guarded"', 'name = "guarded"\n[application.tool.spindle]\nhost_access = { tokens_env = "HOST_TOKENS" }')
    manifest.write_text(text)
    env = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "spindle=info", "HOST_TOKENS": "ops:ops-secret-0123456789", "B_TOKENS": "bob:x-secret-0123456789"}
    add_token("alice", tmp_path / "a.tokens")
    server = Spindle(manifest, env=env)
    try:
        assert requests.get(f"{server.url}/v2", timeout=10).status_code == 401
        assert requests.get(f"{server.url}/v2/models/stats", timeout=10).status_code == 401
        assert requests.get(f"{server.url}/v2", headers={"authorization": "Bearer ops-secret-0123456789"}, timeout=10).status_code == 200
        assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
        assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    finally:
        server.stop()


def test_a_missing_tokens_source_is_a_start_up_error(tmp_path):
    manifest = guarded_app(tmp_path)
    run = subprocess.run([str(SPINDLE), "up", "-f", str(manifest), "--listen", "127.0.0.1:0", "--admin-listen", "none"],
                         capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "B_TOKENS"})
    assert run.returncode != 0
    assert "component 'a': access" in run.stderr and "a.tokens" in run.stderr, run.stderr


def certificate(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def curl(*args) -> str:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", *args],
                          capture_output=True, text=True, timeout=30, check=True).stdout


def test_tls_with_http2_and_http11_and_cleartext_http2(tmp_path, heldout):
    import ssl
    import http.client

    cert, key = certificate(tmp_path)
    server = Spindle(ROOT / "spin.toml", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert server.url.startswith("https://")
        port = int(server.url.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        conn.request("POST", "/models/cifar10/classify", body=png(heldout[0][0]))
        answer = conn.getresponse()
        assert answer.status == 200 and "label" in json.loads(answer.read())[0]
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert curl("--http2", "--cacert", str(cert), f"{server.url}/v2/health/ready") == "2 200"
        assert curl("--http1.1", "--cacert", str(cert), f"{server.url}/v2/health/ready") == "1.1 200"
        with socket_refused_plain(port):
            pass
    finally:
        server.stop()
    plain = Spindle(ROOT / "spin.toml")
    try:
        assert curl("--http2-prior-knowledge", f"{plain.url}/v2/health/ready") == "2 200"
        assert curl("--http1.1", f"{plain.url}/v2/health/ready") == "1.1 200"
    finally:
        plain.stop()


class socket_refused_plain:
    """Plain HTTP to a TLS listener gets no HTTP answer."""

    def __init__(self, port):
        self.port = port

    def __enter__(self):
        try:
            r = requests.get(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=5)
            raise AssertionError(f"plain HTTP was answered {r.status_code}")
        except requests.exceptions.ConnectionError:
            pass

    def __exit__(self, *exc):
        return False


def test_a_wrong_key_file_is_a_clear_start_up_error(tmp_path):
    cert, _ = certificate(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = certificate(tmp_path / "other")
    run = subprocess.run([str(SPINDLE), "up", "--listen", "127.0.0.1:0", "--admin-listen", "none",
                          "--tls-cert", str(cert), "--tls-key", str(other_key)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0 and "--tls-cert and --tls-key do not make a usable pair" in run.stderr, run.stderr
    run = subprocess.run([str(SPINDLE), "up", "--listen", "127.0.0.1:0", "--admin-listen", "none",
                          "--tls-cert", str(cert), "--tls-key", str(cert)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0 and "--tls-key" in run.stderr and "no PEM private key" in run.stderr, run.stderr


def test_an_idle_connection_is_closed_and_a_vanished_client_is_still_audited(tmp_path):
    import socket
    import time

    hostile = ROOT / "target" / "wasm32-wasip2" / "release" / "hostile.wasm"
    (tmp_path / "spin.toml").write_text(f"""spin_manifest_version = 2
[application]
name = "idle"
[[trigger.http]]
route = "/slow"
component = "slow"
[component.slow]
source = "{hostile}"
environment = {{ MODE = "sleepy" }}
""")
    audit = tmp_path / "audit.jsonl"
    server = Spindle(tmp_path / "spin.toml", "--idle-timeout-s", "1", "--audit-log", str(audit))
    try:
        host, port = server.url.removeprefix("http://").split(":")
        idle = socket.create_connection((host, int(port)), timeout=10)
        idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(2.5)
        assert idle.recv(4096) == b"", "the idle keep-alive connection was closed"
        idle.close()
        # A client that gives up on a 1.5 s request after 0.3 s.
        try:
            requests.get(f"{server.url}/slow", headers={"x-request-id": "gone-1"}, timeout=0.3)
        except requests.exceptions.ReadTimeout:
            pass
        time.sleep(2)
    finally:
        server.stop()
    records = {r["request_id"]: r for r in map(json.loads, audit.read_text().splitlines())}
    gone = records["gone-1"]
    assert gone["status"] == 499 and gone["cancelled"] is True and gone["component"] == "slow", gone
