"""Operating the host: readiness that means ready, reload on SIGHUP and with --watch (the swap
drops no request; a broken edit keeps the old version serving)."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import numpy as np
import requests
import tritonclient.http as triton

from conftest import ROOT, Spindle, dataset

WASM = ROOT / "target" / "wasm32-wasip2" / "release"


def wait_for(check, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_readiness_waits_for_preload_and_model_readiness_for_the_graph(heldout):
    # --no-cache: compiling the CNN's component takes long enough to see the host not ready yet.
    server = Spindle(ROOT / "spin.toml", "--preload", "--no-cache", until="Listening on")
    try:
        assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
        ready = requests.get(f"{server.url}/v2/health/ready", timeout=10)
        assert ready.status_code == 400 and ready.json()["ready"] is False
        assert wait_for(lambda: requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200, 120)
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_server_ready() and client.is_model_ready("cifar10") and client.is_model_ready("ppocr-det")
    finally:
        server.stop()

    lazy = Spindle(ROOT / "spin.toml")
    try:
        client = triton.InferenceServerClient(lazy.url.removeprefix("http://"))
        assert client.is_server_ready(), "without --preload the host is ready once the components validate"
        not_yet = requests.get(f"{lazy.url}/v2/models/cifar10/ready", timeout=10)
        assert not_yet.status_code == 400 and "not ready" in not_yet.json()["error"]
        assert not client.is_model_ready("cifar10")
        x = dataset.to_model_input(heldout[0][:1])
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        client.infer("cifar10", [inp])
        assert client.is_model_ready("cifar10") and client.is_model_ready("cifar10", "1")
        assert not client.is_model_ready("ppocr-det"), "one model's load does not make another ready"
        assert requests.get(f"{lazy.url}/v2/models/nope/ready", timeout=10).status_code == 404
        assert requests.post(f"{lazy.url}/v2/models/cifar10/ready", timeout=10).status_code == 405
    finally:
        lazy.stop()


def hello_app(tmp_path, variant: str, style: str = "plain"):
    """An app whose build copies the component named in variant.txt to app.wasm."""
    shutil.copy(WASM / "p2_hello.wasm", tmp_path / "p2_hello.wasm")
    shutil.copy(WASM / "hello.wasm", tmp_path / "hello.wasm")
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "greeting.txt").write_text("hi")
    (tmp_path / "variant.txt").write_text(variant)
    shutil.copy(tmp_path / variant, tmp_path / "app.wasm")
    write_manifest(tmp_path, style)
    return tmp_path / "spin.toml"


def write_manifest(tmp_path, style: str):
    (tmp_path / "spin.toml").write_text(f"""spin_manifest_version = 2
[application]
name = "reload"
[[trigger.http]]
route = "/hello"
component = "hello"
[component.hello]
source = "app.wasm"
files = [{{ source = "data", destination = "/data" }}]
environment = {{ GREETING_STYLE = "{style}" }}
[component.hello.build]
command = 'cp "$(cat variant.txt)" app.wasm'
watch = ["variant.txt"]
""")


class Load:
    """Requests in a loop on a few threads, counting anything but a 200."""

    def __init__(self, url: str, threads: int = 4):
        self.url, self.stop, self.failures, self.bodies = url, threading.Event(), [], []
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    r = session.get(self.url, timeout=30)
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text}")
                    self.bodies.append(r.text)
                except requests.RequestException as e:
                    self.failures.append(repr(e))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.failures


def test_sighup_reloads_the_manifest_and_a_bad_one_keeps_the_old_version(tmp_path):
    server = Spindle(hello_app(tmp_path, "p2_hello.wasm"))
    try:
        assert requests.get(f"{server.url}/hello", timeout=10).json()["env"]["GREETING_STYLE"] == "plain"
        write_manifest(tmp_path, "fancy")
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: requests.get(f"{server.url}/hello", timeout=10).json()["env"]["GREETING_STYLE"] == "fancy")
        (tmp_path / "spin.toml").write_text("spin_manifest_version = 2\n[application\n")
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed" in server.stderr)
        assert "invalid manifest" in server.stderr
        assert requests.get(f"{server.url}/hello", timeout=10).json()["env"]["GREETING_STYLE"] == "fancy"
    finally:
        server.stop()


def test_watch_rebuilds_and_swaps_under_load_without_failing_a_request(tmp_path):
    server = Spindle(hello_app(tmp_path, "p2_hello.wasm"), "--watch")
    try:
        assert requests.get(f"{server.url}/hello", timeout=10).json()["world"] == "wasip2"
        load = Load(f"{server.url}/hello")
        time.sleep(0.5)
        (tmp_path / "variant.txt").write_text("hello.wasm")
        saved = time.time()
        assert wait_for(lambda: requests.get(f"{server.url}/hello", timeout=10).text == "hello"), server.stderr
        swapped_after = time.time() - saved
        time.sleep(0.5)
        # A broken edit: the build fails, and the version that built last keeps serving.
        (tmp_path / "variant.txt").write_text("missing.wasm")
        assert wait_for(lambda: "rebuild failed" in server.stderr), server.stderr
        time.sleep(0.5)
        failures = load.finish()
        assert failures == [], failures[:5]
        assert len(load.bodies) > 50 and load.bodies[-1] == "hello"
        assert requests.get(f"{server.url}/hello", timeout=10).text == "hello"
        # And a mounted file's change is a reload too.
        (tmp_path / "variant.txt").write_text("p2_hello.wasm")
        assert wait_for(lambda: requests.get(f"{server.url}/hello", timeout=10).headers.get("content-type") == "application/json")
        reloads = server.stderr.count("reloaded")
        (tmp_path / "data" / "greeting.txt").write_text("hello again")
        assert wait_for(lambda: server.stderr.count("reloaded") > reloads)
        assert requests.get(f"{server.url}/hello", timeout=10).json()["greeting"] == "hello again"
        print(f"saved → new version serving: {swapped_after * 1000:.0f} ms")
    finally:
        server.stop()


def scrape(server) -> dict:
    """Every sample on /metrics, keyed by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(server.metrics_url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels) -> float:
    """How much the samples named `name` whose labels include `labels` moved, summed."""
    def total(samples):
        return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())
    return total(after) - total(before)


def test_metrics_move_by_exactly_the_requests_sent(heldout):
    from conftest import png

    server = Spindle(ROOT / "spin.toml")
    try:
        assert server.metrics_url and server.metrics_url != server.url
        before = scrape(server)
        images = heldout[0][:5]
        for image in images:
            assert requests.post(f"{server.url}/models/cifar10/classify", data=png(image), timeout=30).status_code == 200
        for _ in range(3):
            assert requests.post(f"{server.url}/models/cifar10/classify", data=b"not an image", timeout=30).status_code == 400
        assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
        after = scrape(server)
        cifar = {"component": "cifar10"}
        assert moved(before, after, "spindle_requests_total", status="2xx", **cifar) == 5
        assert moved(before, after, "spindle_requests_total", status="4xx", **cifar) == 3
        assert moved(before, after, "spindle_requests_total", status="2xx", component="none") == 1
        assert moved(before, after, "spindle_request_duration_us_count", **cifar) == 8
        assert moved(before, after, "spindle_request_queue_duration_us_count", **cifar) == 8
        assert moved(before, after, "spindle_instance_creations_total", **cifar) == 8
        model = {"component": "cifar10", "model": "cifar10"}
        assert moved(before, after, "spindle_inference_request_success_total", **model) == 5
        assert moved(before, after, "spindle_inference_count_total", **model) == 5
        assert moved(before, after, "spindle_inference_compute_infer_duration_us_count", **model) == 5
        assert moved(before, after, "spindle_inference_batch_size_sum", **model) == 5
        assert moved(before, after, "spindle_component_loads_total", how="compiled", **cifar) + \
            moved(before, after, "spindle_component_loads_total", how="cache_hit", **cifar) == 1
        assert moved(before, after, "spindle_graph_compiles_total") == 1
        (engine,) = {dict(ls)["engine"] for (n, ls) in after if n == "spindle_inference_count_total"
                     and dict(ls)["component"] == "cifar10"}
        assert engine in ("onnxruntime", "tract")
        assert after[("spindle_process_resident_memory_bytes", ())] > 10 << 20
        assert after[("spindle_open_connections", ())] >= 0
        assert requests.get(server.metrics_url.replace("/metrics", "/nope"), timeout=10).status_code == 404
    finally:
        server.stop()

    hostile = Spindle(ROOT / "tests" / "fixtures" / "spin.toml", "--timeout-ms", "1000")
    try:
        before = scrape(hostile)
        for _ in range(2):
            assert requests.get(f"{hostile.url}/hostile/trap", timeout=30).status_code == 500
        assert requests.get(f"{hostile.url}/hostile/infinite-loop", timeout=30).status_code == 504
        after = scrape(hostile)
        assert moved(before, after, "spindle_request_failures_total", component="trap", cause="trap") == 2
        assert moved(before, after, "spindle_request_failures_total", component="infinite-loop", cause="deadline") == 1
        assert moved(before, after, "spindle_requests_total", component="trap", status="5xx") == 2
    finally:
        hostile.stop()


def test_an_admin_port_already_taken_is_a_start_up_error_naming_it():
    import socket
    import subprocess

    from conftest import SPINDLE

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([str(SPINDLE), "up", "--listen", "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode != 0
    assert f"--admin-listen 127.0.0.1:{port}" in run.stderr, run.stderr


def test_request_ids_are_kept_or_made_and_returned():
    server = Spindle(ROOT / "spin.toml")
    try:
        given = requests.get(f"{server.url}/v2/health/live", headers={"x-request-id": "req-7"}, timeout=10)
        assert given.headers["x-request-id"] == "req-7"
        made = {requests.get(f"{server.url}/v2/models/cifar10", timeout=10).headers["x-request-id"] for _ in range(3)}
        assert len(made) == 3 and all(len(i) == 36 for i in made), made
        odd = requests.get(f"{server.url}/v2/health/live", headers={"x-request-id": "a" * 200}, timeout=10)
        assert odd.headers["x-request-id"] != "a" * 200
    finally:
        server.stop()


def test_json_logs_attribute_guest_output_and_failures_to_the_request_without_colour():
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}  # not a terminal: still no colour
    env["RUST_LOG"] = "spindle=info"
    server = Spindle(ROOT / "tests" / "fixtures" / "spin.toml", "--log-format", "json", env=env)
    try:
        assert requests.get(f"{server.url}/hostile/panic", headers={"x-request-id": "panic-1"}, timeout=30).status_code == 500
        assert wait_for(lambda: "guest failed" in server.stderr)
        assert "\x1b[" not in server.stderr
        lines = [json.loads(line) for line in server.stderr.splitlines() if line.strip()]
        failed = [e for e in lines if "guest failed" in e["fields"].get("message", "")]
        assert failed and failed[0]["span"]["request_id"] == "panic-1" and failed[0]["span"]["component"] == "panic"
        said = [e for e in lines if e["target"] == "spindle::guest" and e["fields"].get("component") == "panic"]
        assert said and any("panicked" in e["fields"]["message"] for e in said), said
        assert said[0]["span"]["request_id"] == "panic-1" and said[0]["fields"]["stream"] == "stderr"
    finally:
        server.stop()


def test_spans_are_exported_over_otlp_http_when_the_endpoint_is_set(heldout):
    import os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from conftest import png

    spans = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.path == "/v1/traces":
                export = ExportTraceServiceRequest.FromString(body)
                for resource in export.resource_spans:
                    for scope in resource.scope_spans:
                        spans.extend(scope.spans)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "spindle=info",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = Spindle(ROOT / "spin.toml", env=env)
    try:
        r = requests.post(f"{server.url}/models/cifar10/classify", data=png(heldout[0][0]),
                          headers={"x-request-id": "traced-1"}, timeout=30)
        assert r.status_code == 200

        def attrs(span):
            return {a.key: a.value.string_value or a.value.int_value for a in span.attributes}

        def request_span():
            return next((s for s in spans if s.name == "request" and attrs(s).get("request_id") == "traced-1"), None)

        assert wait_for(lambda: request_span() is not None and any(s.name == "wasi_nn.compute" for s in spans), 30)
        root = request_span()
        a = attrs(root)
        assert a["component"] == "cifar10" and a["route"] == "/models/cifar10/..." and a["status"] == 200
        assert a["engine"] in ("onnxruntime", "tract") and a["device"] == "cpu" and a["duration_us"] > 0
        children = [s for s in spans if s.parent_span_id == root.span_id]
        names = {s.name for s in children}
        assert {"wasi_nn.load", "wasi_nn.compute"} <= names, names
        compute = next(s for s in children if s.name == "wasi_nn.compute")
        assert attrs(compute)["model"] == "cifar10" and compute.trace_id == root.trace_id
    finally:
        server.stop()
        receiver.shutdown()


def test_a_reload_keeps_unchanged_graphs_compiled_and_shared(heldout):
    from conftest import png

    server = Spindle(ROOT / "spin.toml")
    try:
        classify = f"{server.url}/models/cifar10/classify"
        first = requests.post(classify, data=png(heldout[0][0]), timeout=30).json()
        before = scrape(server)
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: moved(before, scrape(server), "spindle_reloads_total", outcome="swapped") == 1)
        assert requests.post(classify, data=png(heldout[0][0]), timeout=30).json() == first
        after = scrape(server)
        assert moved(before, after, "spindle_graph_compiles_total") == 0, "the model did not change: no compile"
        assert moved(before, after, "spindle_graph_shared_total") >= 1
    finally:
        server.stop()
