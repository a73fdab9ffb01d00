"""`matte remove` against rembg's folder command (`rembg p`) on one folder of photos.

    .venv/bin/python benchmarks/cli.py [--photos 100] [--out benchmarks/CLI.md]
                                       [--work DIR] [--no-rembg]

Makes the photos first (deterministic: crops, flips and resizes of the four rembg
fixtures, 1 to 4 MP, JPEG q90), then times each command on the whole folder as a
user runs it, start-up and model load included, one after the other: `matte remove`
as it comes (the engine and precision `auto` picks here), `matte remove` on ONNX
Runtime in fp32 (the runtime rembg uses), and `rembg p` in its own virtualenv
(benchmarks/rembg_server.py) given Matte's fp32 graph as its isnet-general-use
weights, so all three run the same weights. Writes a markdown report with the
machine, the commands, images/s, CPU per image, peak memory, the CPU other
processes used meanwhile (the machine may be shared) and how alike the masks are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from load import machine_busy_s
from PIL import Image, ImageOps
from rembg_server import MODEL, ensure_venv, install_weights, versions
from report import machine

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"
MAX_PIXELS = 4_000_000  # under the server's 4,194,304-pixel limit, which the CLI shares
MIN_PIXELS = 1_000_000


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def make_photos(count: int, folder: Path) -> list[Path]:
    """`count` JPEGs from the fixtures, each a crop of 70-100% of each side, flipped
    every other time, resized to 1-4 MP; the same files on every run."""
    sources = sorted(FIXTURES.glob("*.jpg"))
    assert len(sources) == 4, f"expected the 4 rembg fixtures in {FIXTURES}"
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for index in range(count):
        source = sources[index % len(sources)]
        rng = np.random.default_rng(index)
        with Image.open(source) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        crop_w = int(width * rng.uniform(0.7, 1.0))
        crop_h = int(height * rng.uniform(0.7, 1.0))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        image = image.crop((left, top, left + crop_w, top + crop_h))
        if index % 2:
            image = ImageOps.mirror(image)
        # Spread evenly over 1-4 MP (the golden ratio's steps never repeat a size).
        pixels = MIN_PIXELS + (MAX_PIXELS - MIN_PIXELS) * ((index * 0.6180339887) % 1.0)
        scale = (pixels / (crop_w * crop_h)) ** 0.5
        size = (max(64, int(crop_w * scale)), max(64, int(crop_h * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        path = folder / f"{index:03d}-{source.stem}.jpg"
        image.save(path, "JPEG", quality=90)
        photos.append(path)
    return photos


@dataclass(frozen=True)
class Run:
    name: str
    argv: list[str]
    wall_s: float
    cpu_s: float  # the command's own (its threads and children)
    peak_rss_mib: int
    other_cores: float  # what every other process used meanwhile, on average
    outputs: int
    returncode: int
    summary: str  # matte's last line, or the tail of rembg's output

    @property
    def images_per_s(self) -> float:
        return self.outputs / self.wall_s if self.wall_s > 0 else 0.0


def timed(name: str, argv: list[str], env: Mapping[str, str], out: Path) -> Run:
    log(f"{name}: {shlex.join(argv)}")
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        busy0, started = machine_busy_s(), time.perf_counter()
        process = subprocess.Popen(argv, env=dict(env), cwd=ROOT, stdout=stdout, stderr=stderr)
        # wait4: this child's own CPU time (its threads and children) and peak RSS.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        busy = machine_busy_s() - busy0
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    # The last line, also of a progress bar that redraws itself with \r.
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]
    outputs = len(list(out.glob("*.png")))
    run = Run(
        name,
        argv,
        wall,
        cpu,
        usage.ru_maxrss // 1024,  # KiB on Linux
        max(0.0, busy - cpu) / wall,
        outputs,
        process.returncode,
        lines[-1] if lines else "",
    )
    log(f"{name}: {outputs} images in {wall:.1f} s, {run.images_per_s:.3f} images/s")
    if process.returncode != 0:
        log(f"{name}: exit status {process.returncode}; its output ended with:")
        print("\n".join(lines[-20:]), flush=True)
    return run


def mask_agreement(ours: Path, theirs: Path) -> tuple[float, float, int]:
    """Soft IoU of the two folders' alphas, file by file: (mean, lowest, files compared)."""
    ious = []
    for mine in sorted(ours.glob("*.png")):
        other = theirs / mine.name
        if not other.is_file():
            continue
        with Image.open(mine) as a, Image.open(other) as b:
            fa = np.asarray(a.convert("RGBA"))[:, :, 3].astype(np.float64) / 255
            fb = np.asarray(b.convert("RGBA"))[:, :, 3].astype(np.float64) / 255
        union = np.maximum(fa, fb).sum()
        ious.append(float(np.minimum(fa, fb).sum() / union) if union else 1.0)
    if not ious:
        return 0.0, 0.0, 0
    return float(np.mean(ious)), float(np.min(ious)), len(ious)


def _matte_env() -> dict[str, str]:
    # The caller's settings stay out (a stray MATTE_WORKERS would change what is measured),
    # but the model cache is kept.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTE_")}
    if "MATTE_CACHE_DIR" in os.environ:
        env["MATTE_CACHE_DIR"] = os.environ["MATTE_CACHE_DIR"]
    return env


def _cache_dir() -> Path:
    cache = os.environ.get("MATTE_CACHE_DIR") or str(Path.home() / ".cache" / "matte")
    return Path(cache).expanduser()


def run_all(args: argparse.Namespace) -> tuple[list[Run], list[str]]:
    work: Path = args.work
    photos = make_photos(args.photos, work / "photos")
    sizes = []
    for photo in photos:
        with Image.open(photo) as image:
            sizes.append(image.size[0] * image.size[1] / 1e6)
    notes = [
        f"Photos: {len(photos)} JPEGs (q90) made by benchmarks/cli.py from the 4 rembg "
        f"fixtures: crops of 70-100% of each side, every other one mirrored, resized to "
        f"{min(sizes):.2f}-{max(sizes):.2f} MP (mean {np.mean(sizes):.2f} MP), "
        f"{sum(p.stat().st_size for p in photos) / 2**20:.1f} MiB in all",
    ]
    env = _matte_env()
    python = sys.executable
    runs = []
    for name, extra in (
        ("matte", []),
        ("matte (onnxruntime fp32)", ["--engine", "onnxruntime", "--precision", "fp32"]),
    ):
        out = work / name.replace(" ", "-").replace("(", "").replace(")", "")
        argv = [
            python,
            "-m",
            "server",
            "remove",
            str(work / "photos"),
            "-o",
            str(out),
            "-q",
            "--overwrite",
            *extra,
        ]
        runs.append(timed(name, argv, env, out))
    model = _cache_dir() / MODEL / "cpu-fp32.onnx"
    if args.rembg:
        bench = _cache_dir() / "bench"
        rembg = ensure_venv(bench / "rembg-venv", work / "rembg-install.log")
        home = bench / "u2net"
        install_weights(model, home)
        rembg_env = {k: v for k, v in os.environ.items() if not k.startswith("MATTE_")}
        rembg_env.update(U2NET_HOME=str(home), MODEL_CHECKSUM_DISABLED="1")
        out = work / "rembg"
        # rembg p skips outputs that exist: a fresh folder each run.
        if out.exists():
            for old in out.glob("*.png"):
                old.unlink()
        argv = [str(rembg), "p", "-m", MODEL, str(work / "photos"), str(out)]
        runs.append(timed("rembg p", argv, rembg_env, out))
        notes.append(
            f"rembg: {versions(bench / 'rembg-venv')}, `rembg p` with its defaults "
            f"(one session, one image at a time), given Matte's {model.name} as "
            f"{MODEL}.onnx (U2NET_HOME={home})"
        )
        mean, low, compared = mask_agreement(work / "matte", out)
        notes.append(
            f"Masks: soft IoU of `matte remove`'s alpha against `rembg p`'s, "
            f"{compared} files: mean {mean:.4f}, lowest {low:.4f}"
        )
    else:
        notes.append("rembg: not run (--no-rembg)")
    return runs, notes


def render(runs: list[Run], notes: list[str], args: argparse.Namespace) -> str:
    from engines import cpu  # imports the server's engine code: only when run

    model, flags = cpu()
    command = "benchmarks/cli.py " + " ".join(shlex.quote(a) for a in args.argv)
    lines = [
        "# `matte remove` against `rembg p`",
        "",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- CPU: {model}; flags: {', '.join(flags) or 'none of ' + 'avx2/avx512/amx/vnni'}",
        f"- Command: `{command.strip()}`",
        "- Each command runs alone, one after the other, on the same folder: wall time from "
        "start to exit (start-up and model load included). This machine is shared with "
        'other sessions: "others" is the CPU every other process used meanwhile, in cores.',
        *[f"- {note}" for note in notes],
        _busy_note(runs),
        "",
        "## Results",
        "",
        "| tool | images | wall s | images/s | CPU s per image | peak RSS MiB | others (cores) "
        "| exit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        per_image = run.cpu_s / run.outputs if run.outputs else 0.0
        lines.append(
            f"| {run.name} | {run.outputs} | {run.wall_s:.1f} | {run.images_per_s:.3f} | "
            f"{per_image:.2f} | {run.peak_rss_mib} | {run.other_cores:.2f} | {run.returncode} |"
        )
    rembg = next((run for run in runs if run.name == "rembg p"), None)
    lines += ["", "## Ratios", "", "| ratio | images/s |", "| --- | ---: |"]
    for run in runs:
        if run is rembg:
            continue
        ratio = (
            f"{run.images_per_s / rembg.images_per_s:.2f}x"
            if rembg and rembg.images_per_s
            else "n/a"
        )
        lines.append(f"| {run.name} / rembg p | {ratio} |")
    lines += ["", "## Commands", ""]
    lines += [
        f"- {run.name}: `{shlex.join(_shown(run.argv))}`; its last line: `{run.summary}`"
        for run in runs
    ]
    return "\n".join(lines) + "\n"


def _busy_note(runs: list[Run]) -> str:
    others = [run.other_cores for run in runs]
    return (
        f"- Others used {min(others):.2f}-{max(others):.2f} of the {os.cpu_count()} cores "
        "while these ran (one run each, not repeated): the absolute figures are below an "
        "idle machine's; the rows compare with each other, each measured alike."
    )


def _shown(argv: list[str]) -> list[str]:
    """The command as a reader would type it: paths under the work folder shortened."""
    return [
        re.sub(r"^.*/(photos|matte[-\w]*|rembg)$", r"\1", a).replace(sys.executable, "python")
        for a in argv
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "CLI.md")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="where the photos and outputs go (default: a temporary folder)",
    )
    parser.add_argument("--no-rembg", dest="rembg", action="store_false")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="matte-cli-bench-") as scratch:
        if args.work is None:
            args.work = Path(scratch)
        runs, notes = run_all(args)
    args.out.write_text(render(runs, notes, args))
    log(f"wrote {args.out}")
    return 0 if all(run.returncode == 0 and run.outputs == args.photos for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
