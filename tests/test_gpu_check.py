"""The GPU check's bundle and script, run here as a GPU machine would run them: the bundle fits in
64 MiB and holds everything gpu-check needs; gpu-check runs from it with only Python's standard
library, checks every engine's outputs against tract on the CPU, and says why a GPU row is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_bundle_runs_gpu_check_without_the_repo(tmp_path):
    bundle = tmp_path / "bundle"
    subprocess.run([str(ROOT / "scripts/gpu-bundle"), "--out", str(bundle)], check=True, capture_output=True, timeout=600)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    assert size < 64 << 20, size

    # moved away from the repo, run by a bare Python with nothing installed
    moved = shutil.move(bundle, tmp_path / "elsewhere")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    run = subprocess.run([sys.base_prefix + "/bin/python3", "-I", "gpu-check", "--seconds", "0.3", "--concurrency", "1", "2"],
                         cwd=moved, capture_output=True, text=True, timeout=600, env=env)
    print(run.stdout)
    has_gpu = Path("/dev/nvidia0").exists()
    assert run.returncode == (0 if has_gpu else 2), run.stdout + run.stderr
    rows = re.findall(r"^\| (\S+) \| (\S+) \| (cpu|gpu) \| (\S+) \|", run.stdout, re.M)
    assert {(m, e, d) for m, e, d, _ in rows} >= {(m, e, "cpu") for m in ("cifar10", "ppocr-det") for e in ("tract", "onnxruntime")}
    assert "MISMATCH" not in run.stdout
    if not has_gpu:
        assert "unavailable: tract on gpu: Error: component 'cifar10': device gpu was asked for but no GPU engine is ready" in run.stdout
        assert "CUDA driver library not found" in run.stdout
