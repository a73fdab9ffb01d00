"""Prepare .stage/ for the GPU check (../shared/GPU.md) and print the device calls to make.

    .venv/bin/python benchmarks/gpu_stage.py --dry-run   # what it would do; downloads nothing
    .venv/bin/python benchmarks/gpu_stage.py             # download, split, write .stage/

Each device call carries the working tree plus at most 64 MiB, and the GPU machine
reaches no registry, so what it lacks travels in 55 MiB parts:
- model.part.*: the fp16 graph the server loads on CUDA (<cache>/isnet-general-use/cuda-fp16.onnx);
- wheels.part.*: a tar of the wheels for CPython 3.12: onnxruntime-gpu at the version this
  virtualenv has (it must satisfy pyproject.toml's range), and what Matte's server and
  the check import that the GPU machine lacks (starlette, uvicorn, scipy, pymatting
  with numba...) at this virtualenv's versions, so the device runs what CI tests.
  One tar rather than GPU.md's ort.part.* beside a second group: the wheel's last part
  has room for the others, which saves a device call (each costs device time);
- fixtures/: rembg's photos and references (../shared does not travel);
- install.sh: joins the parts, checks their sha256, installs into /tmp/ort.
/.stage/ is in .gitignore, so none of this is committed and only `carry` sends it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import itertools
import json
import re
import shlex
import shutil
import string
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from int8_mode import FIXTURES  # noqa: E402

STAGE = ROOT / ".stage"
PART_BYTES = 55 * 1024 * 1024  # `split -b 55M`, as GPU.md says
CARRY_LIMIT = 64 * 1024 * 1024  # per device call: the tree plus what `carry` names
COMMAND_LIMIT = 2000  # characters of one device command
DEVICE_STAGE = "/root/stage"  # where the parts gather on the GPU machine
DEVICE_SITE = "/tmp/ort"  # pip --target there; first on PYTHONPATH
PYTHON_TAGS = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
]
ORT = "onnxruntime-gpu"
# What the GPU machine lacks (../shared/GPU.md lists what it has), pinned below to
# this virtualenv's versions; numpy and pillow too, so masks and timings come from
# the same builds CI tests.
DEPENDENCIES = (
    "starlette",
    "uvicorn",
    "click",
    "python-multipart",
    "scipy",
    "pymatting",
    "numba",
    "llvmlite",
    "numpy",
    "pillow",
)
# For --dry-run's part count (the real sizes are read when staging): the onnxruntime-gpu
# wheel is about 255 MB, the others 123 MB (llvmlite 60, scipy 35, numpy 17, pillow 7).
WHEELS_ESTIMATE = 380 * 1000 * 1000
# The check's own limit, under the device's 600 s a command: install, then the budget.
RUN_TIMEOUT_S = 600
CHECK_TIMEOUT_S = 540
CHECK_BUDGET_S = 480


@dataclass(frozen=True)
class Call:
    """One device `run` call: the ignored paths it carries and its command."""

    carry: list[str]
    command: str
    timeout_s: int


def part_names(prefix: str, size: int, part_bytes: int = PART_BYTES) -> list[str]:
    """The names `split -b` gives: prefix.aa, prefix.ab, ... for a file of `size` bytes."""
    count = max(1, -(-size // part_bytes))
    return [f"{prefix}.{suffix}" for suffix in itertools.islice(_suffixes(), count)]


def _suffixes() -> Iterator[str]:
    for first, second in itertools.product(string.ascii_lowercase, repeat=2):
        yield first + second


def split_file(path: Path, prefix: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """`split -b part_bytes path prefix.`: parts in order; `cat prefix.*` joins them again."""
    names = part_names(prefix.name, path.stat().st_size, part_bytes)
    parts = []
    with path.open("rb") as source:
        for name in names:
            part = prefix.with_name(name)
            part.write_bytes(source.read(part_bytes))
            parts.append(part)
    return parts


def in_range(version: str, specifier: str) -> bool:
    """`version` against a comma-separated specifier of >=, >, <=, <, == clauses."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(number) for number in re.findall(r"\d+", text)[:3])

    checks = {
        ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a == b,
    }
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        operator = next(op for op in (">=", "<=", "==", ">", "<") if clause.startswith(op))
        have, want = key(version), key(clause[len(operator) :])
        width = max(len(have), len(want))
        if not checks[operator](
            have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ):
            return False
    return True


def ort_version(pyproject: Path = ROOT / "pyproject.toml") -> tuple[str, str]:
    """(this virtualenv's onnxruntime-gpu version, pyproject's range), checked against it."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    specifier = next(
        d[len(ORT) :] for d in dependencies if d.startswith(ORT + ">") or d.startswith(ORT + "=")
    )
    version = metadata.version(ORT)
    if not in_range(version, specifier):
        raise SystemExit(f"{ORT} {version} is outside pyproject.toml's {specifier}")
    return version, specifier


def pins() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in DEPENDENCIES]


def download_command(requirements: list[str], into: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        *PYTHON_TAGS,
        "-d",
        str(into),
        *requirements,
    ]


def resolve(requirements: list[str]) -> list[str]:
    """The wheel files pip would download for the GPU machine, without downloading them
    (pip reads the registry's metadata only): proves each pin has a cp312 wheel."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            *PYTHON_TAGS,
            "--target",
            str(Path(scratch) / "t"),
            "--report",
            str(report),
            *requirements,
        ]
        subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
        installs = json.loads(report.read_text())["install"]
    return [item["download_info"]["url"].rsplit("/", 1)[1] for item in installs]


def install_script(
    model_sha: str, wheels_sha: str, device_stage: str = DEVICE_STAGE, site: str = DEVICE_SITE
) -> str:
    """install.sh: runs on the GPU machine in the checkout; joins, verifies, installs once."""
    return f"""#!/bin/bash
# Written by benchmarks/gpu_stage.py: joins the parts gathered in {device_stage},
# checks them and installs the wheels into {site} (once per machine).
set -euo pipefail
S={device_stage}
mkdir -p "$S"
cp .stage/*.part.* "$S"/ 2>/dev/null || true
if [ ! -e {site}/.installed ]; then
  cd "$S"
  mkdir -p cache/isnet-general-use wheels
  cat model.part.* > cache/isnet-general-use/cuda-fp16.onnx
  cat wheels.part.* > wheels.tar
  printf '%s  %s\\n' {model_sha} cache/isnet-general-use/cuda-fp16.onnx \\
    {wheels_sha} wheels.tar | sha256sum -c --quiet
  tar -x -C wheels -f wheels.tar
  "${{PYTHON:-python3}}" -m pip install --quiet --no-deps --no-index --target {site} wheels/*.whl
  touch {site}/.installed
fi
"""


def calls(parts: list[str]) -> list[Call]:
    """One call per part but the last, then one that carries the last part with the
    fixtures and install.sh, installs and runs the whole check."""
    *early, last = parts
    sequence = []
    for index, part in enumerate(early):
        command = f"mkdir -p {DEVICE_STAGE} && cp .stage/{part} {DEVICE_STAGE}/"
        if index == 0:  # the first call also says what the machine has, for the notes
            command += (
                " && nvidia-smi --query-gpu=name,driver_version,memory.total "
                "--format=csv && python3 -c 'import onnxruntime as o; "
                "print(o.__version__, o.get_available_providers())'"
            )
        sequence.append(Call([f".stage/{part}"], command, 120))
    run = (
        f"bash .stage/install.sh && PYTHONPATH={DEVICE_SITE}:$PWD "
        f"MATTE_CACHE_DIR={DEVICE_STAGE}/cache NUMBA_CACHE_DIR={DEVICE_STAGE}/numba "
        f'timeout -s TERM {CHECK_TIMEOUT_S} python3 benchmarks/gpu.py --out "$OUT" '
        f"--fixtures .stage/fixtures --budget-s {CHECK_BUDGET_S}; "
        'echo "exit $?"; tail -n 40 "$OUT/gpu-results.md"'
    )
    sequence.append(
        Call([f".stage/{last}", ".stage/fixtures", ".stage/install.sh"], run, RUN_TIMEOUT_S)
    )
    return sequence


def check_calls(sequence: list[Call], sizes: dict[str, int], tree_bytes: int) -> list[str]:
    """Problems with `sequence`: a command too long, or a call carrying too much."""
    problems = []
    for number, call in enumerate(sequence, 1):
        if len(call.command) > COMMAND_LIMIT:
            problems.append(f"call {number}: command of {len(call.command)} characters")
        carried = tree_bytes + sum(sizes.get(path, 0) for path in call.carry)
        if carried > CARRY_LIMIT:
            problems.append(f"call {number}: carries {carried / 2**20:.1f} MiB with the tree")
    return problems


def tree_bytes() -> int:
    """What travels with every call: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum(
        (ROOT / name.decode()).stat().st_size
        for name in listed
        if name and (ROOT / name.decode()).is_file()
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage(stage_dir: Path, model: Path, version: str) -> list[str]:
    """Download, split and write everything; the part names in order."""
    shutil.rmtree(stage_dir, ignore_errors=True)
    download = stage_dir / "download"
    download.mkdir(parents=True)
    subprocess.run(download_command([f"{ORT}=={version}", *pins()], download), check=True)
    parts = assemble(stage_dir, model, download, FIXTURES)
    shutil.rmtree(download)  # the parts are enough; the whole files must not travel
    return parts


def assemble(
    stage_dir: Path,
    model: Path,
    wheels: Path,
    fixtures: Path,
    part_bytes: int = PART_BYTES,
    **install: str,
) -> list[str]:
    """Split the model and a tar of the wheels in `wheels` into `stage_dir`, copy the
    fixtures, write install.sh (`install`: its paths, for tests); the part names in order."""
    archive_path = stage_dir / "wheels.tar"
    with tarfile.open(archive_path, "w") as archive:  # the wheels keep their names: pip needs them
        for path in sorted(wheels.glob("*.whl")):
            archive.add(path, arcname=path.name)
    parts = [
        *split_file(model, stage_dir / "model.part", part_bytes),
        *split_file(archive_path, stage_dir / "wheels.part", part_bytes),
    ]
    script = install_script(sha256(model), sha256(archive_path), **install)
    (stage_dir / "install.sh").write_text(script)
    archive_path.unlink()
    shutil.copytree(fixtures, stage_dir / "fixtures")
    return [part.name for part in parts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, the wheels pip resolves (metadata only) and the "
        "calls, with part counts estimated; downloads nothing",
    )
    parser.add_argument("--stage", type=Path, default=STAGE)
    args = parser.parse_args(argv)
    from server.settings import Settings

    model = Settings.from_env().model_file("cuda")
    if not model.is_file():
        raise SystemExit(f"{model} is missing: run `make model` first")
    version, specifier = ort_version()
    print(f"model: {model} ({model.stat().st_size / 2**20:.0f} MiB)")
    print(f"{ORT}: {version} (pyproject {specifier}), cp312 manylinux_2_28")
    print(f"dependencies: {' '.join(pins())}")
    if args.dry_run:
        parts = [
            *part_names("model.part", model.stat().st_size),
            *part_names("wheels.part", WHEELS_ESTIMATE),
        ]
        sizes = dict.fromkeys((f".stage/{part}" for part in parts), PART_BYTES)
        sizes[".stage/fixtures"] = sum(p.stat().st_size for p in FIXTURES.iterdir())
        print(
            "would run: "
            + shlex.join(download_command([f"{ORT}=={version}", *pins()], args.stage / "download"))
        )
        print("wheels pip would fetch: " + ", ".join(resolve([f"{ORT}=={version}", *pins()])))
    else:
        parts = stage(args.stage, model, version)
        sizes = {
            f".stage/{p.relative_to(args.stage)}": p.stat().st_size
            for p in args.stage.iterdir()
            if p.is_file()
        }
        sizes[".stage/fixtures"] = sum(
            p.stat().st_size for p in (args.stage / "fixtures").iterdir()
        )
    sequence = calls(parts)
    problems = check_calls(sequence, sizes, tree_bytes())
    print(
        f"\n{len(sequence)} device calls, one right after another (a cold machine: start "
        "again from the first):"
    )
    for call in sequence:
        print(
            json.dumps({"carry": call.carry, "command": call.command, "timeout_s": call.timeout_s})
        )
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
