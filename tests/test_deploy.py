"""The deployment files parse, agree with each other, and describe a host that really starts."""

from __future__ import annotations

import json
import re
import tomllib

import requests
import yaml

from conftest import ROOT, Spindle

KUBE = ROOT / "deploy/kubernetes/spindle.yaml"
CONTAINERFILE = ROOT / "deploy/Containerfile"


def documents():
    return {d["kind"]: d for d in yaml.safe_load_all(KUBE.read_text())}


def container():
    (c,) = documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def test_kubernetes_objects_fit_together():
    docs = documents()
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"}
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    port_names = {p["name"] for p in container()["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    policy = docs["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == port_names
    metrics = next(c for c in container()["ports"] if c["name"] == "metrics")
    args = container()["args"]
    assert args[args.index("--admin-listen") + 1].endswith(f":{metrics['containerPort']}")
    metrics_rule = next(r for r in policy["ingress"] if r["ports"] == [{"port": "metrics"}])
    assert metrics_rule["from"], "the metrics port is not open to every pod"


def test_the_image_runs_what_the_deployment_runs_and_holds_what_the_manifest_needs():
    text = CONTAINERFILE.read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd == container()["args"]
    copied = set(re.findall(r"^COPY --from=build \S+ (\S+)$", text, re.M))
    manifest = tomllib.loads((ROOT / "spin.toml").read_text())
    for component in manifest["component"].values():
        assert component["source"] in copied
        for mount in component.get("files", []):
            source = mount["source"] if isinstance(mount, dict) else mount
            assert source in copied, mount
    exposed = int(re.search(r"^EXPOSE (\d+)$", text, re.M).group(1))
    assert exposed == container()["ports"][0]["containerPort"]


def test_the_deployments_command_starts_and_its_probes_answer(tmp_path):
    args = container()["args"]
    assert args[:2] == ["spindle", "up"]
    flags = args[2:]
    del flags[flags.index("--listen"):flags.index("--listen") + 2]  # the fixture listens on port 0
    del flags[flags.index("--admin-listen"):flags.index("--admin-listen") + 2]
    flags[flags.index("--cache-dir") + 1] = str(tmp_path / "cache")
    server = Spindle(ROOT / "spin.toml", *flags)
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            path = container()[probe]["httpGet"]["path"]
            assert requests.get(f"{server.url}{path}", timeout=30).status_code == 200, path
    finally:
        server.stop()


def test_spinapp_runs_the_portable_build():
    (app,) = yaml.safe_load_all((ROOT / "deploy/spinkube/spinapp.yaml").read_text())
    assert app["apiVersion"] == "core.spinkube.dev/v1alpha1" and app["kind"] == "SpinApp"
    assert app["spec"]["executor"] == "containerd-shim-spin"
    assert re.fullmatch(r"[\w./-]+/spindle-models:[\w.]+", app["spec"]["image"])
    assert "spin.portable.toml" in (ROOT / "deploy/spinkube/spinapp.yaml").read_text()
