"""CPU milliseconds per pipeline stage around the model, at 1 MP and 4 MP, PNG and WebP.

    .venv/bin/python benchmarks/stages.py [--runs 7] [--sizes 1,4]

The input is a real photo (the plants fixture, whose aspect is the issue's 1672x2508)
resized to each size and saved as a quality-90 JPEG. The model is left out: its
prediction is rembg's reference alpha at 1024x1024, so every stage after it sees a real
mask. Each stage calls what the server calls (server/pipeline.py), timed with
`time.process_time`: the CPU this process spent, on every thread (the resize and PNG
stages split each image across cores: server/cores.py), which other processes' load on
a shared machine barely moves, where wall time would. Prints a markdown table (min and median of
`--runs`) with the CPU's model and flags.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines import cpu  # noqa: E402

from server import compositing, isnet  # noqa: E402
from server.imaging import Limits, decode, encode  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"
PHOTO = "plants-1"
# The 4 MP photo, and a 1 MP one of the same aspect.
SIZES = {1: (816, 1224), 4: (1672, 2508)}
LIMITS = Limits(min_side=64, min_pixels=4_096, max_pixels=4_194_304)


def inputs(megapixels: int) -> tuple[bytes, np.ndarray]:
    """The photo as a JPEG of about `megapixels`, and the model's prediction for it."""
    photo = Image.open(FIXTURES / f"{PHOTO}.jpg").convert("RGB")
    buffer = io.BytesIO()
    photo.resize(SIZES[megapixels], Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    alpha = Image.open(FIXTURES / f"{PHOTO}.isnet-general-use.png").convert("RGBA")
    small = alpha.getchannel("A").resize((isnet.SIDE, isnet.SIDE), Image.Resampling.LANCZOS)
    prediction = np.asarray(small, dtype=np.float32) / 255
    return buffer.getvalue(), prediction


def timed(work: Callable[[], object], runs: int) -> tuple[float, float, object]:
    """(min ms, median ms, last result) of `runs` calls, in this process's CPU time."""
    times, result = [], None
    for _ in range(runs):
        started = time.process_time()
        result = work()
        times.append((time.process_time() - started) * 1000)
    return min(times), statistics.median(times), result


def stages(megapixels: int, runs: int) -> list[tuple[str, float, float, str]]:
    """(stage, min ms, median ms, note) for one input size."""
    jpeg, prediction = inputs(megapixels)
    rows: list[tuple[str, float, float, str]] = []

    def row(name: str, work: Callable[[], object], note: str = "") -> object:
        best, median, result = timed(work, runs)
        rows.append((name, best, median, note))
        return result

    picture = decode(jpeg, LIMITS)
    width, height = picture.size
    row("decode (JPEG -> RGB)", lambda: decode(jpeg, LIMITS), f"{width}x{height}")
    small = row("to model size (LANCZOS)", lambda: isnet.to_model_size(picture.rgb))
    assert isinstance(small, np.ndarray)
    row("float input (to_batch)", lambda: isnet.to_batch([small]))
    mask = row("mask up to the photo (to_mask)", lambda: isnet.to_mask(prediction, picture.size))
    assert isinstance(mask, np.ndarray)
    rgba = row("composite (cut-out)", lambda: compositing.composite(picture.rgb, mask))
    assert isinstance(rgba, np.ndarray)
    row("post-process (option)", lambda: compositing.post_process_mask(mask))
    for fmt in ("png", "webp"):
        data = row(f"encode {fmt}", lambda fmt=fmt: encode(rgba, fmt, 1, 90))  # type: ignore[misc]
        assert isinstance(data, bytes)
        rows[-1] = (*rows[-1][:3], f"{len(data) / 1e6:.2f} MB")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="1,4", help="megapixels: 1, 4 or 1,4")
    args = parser.parse_args()
    model, flags = cpu()
    print(f"CPU: {model}, {os.cpu_count()} cores; flags: {', '.join(flags) or 'none checked'}")
    print(f"command: .venv/bin/python benchmarks/stages.py --runs {args.runs} --sizes {args.sizes}")
    for megapixels in (int(size) for size in args.sizes.split(",")):
        print(f"\n{megapixels} MP, CPU ms of {args.runs} runs:\n")
        print("| stage | min ms | median ms | note |")
        print("| --- | ---: | ---: | --- |")
        total_png = total_webp = 0.0
        for name, best, median, note in stages(megapixels, args.runs):
            print(f"| {name} | {best:.1f} | {median:.1f} | {note} |", flush=True)
            if "option" not in name:
                total_png += median if name != "encode webp" else 0
                total_webp += median if name != "encode png" else 0
        print(f"| total, PNG (medians) | | {total_png:.0f} | |")
        print(f"| total, WebP (medians) | | {total_webp:.0f} | |")


if __name__ == "__main__":
    main()
