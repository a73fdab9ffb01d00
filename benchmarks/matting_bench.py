"""Cost and quality of alpha matting: server.matting.refine_alpha against full-resolution
pymatting (what rembg runs: estimate_alpha_cf + estimate_foreground_ml on the whole image).

Every case runs in a fresh Python process, so that its peak RSS (ru_maxrss) is its own. The
numba code is loaded by `warm_up` before the clock starts; the last table times that load
in a fresh process on a cold numba cache (an empty NUMBA_CACHE_DIR) and on a warm one.

    python benchmarks/matting_bench.py                        # cloth-1, plants-1; native, 4 MP
    python benchmarks/matting_bench.py --photos car-1 --sizes native --no-pymatting

Sizes: `native`, or a side N: photo and mask upscaled (bicubic) to N x N, e.g. 2048 = 4 MP.
Modes: `reduced` is refine_alpha with its default budget; `band` is refine_alpha with no
budget (full resolution, the block-wise system only); `pymatting` is the reference. Alpha MAD
is the mean |alpha - reference alpha| in 0-255 levels, over the image and over the unknown
band. Full-resolution pymatting takes minutes on plants-1 (its band is ~25% of the image).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"
MODES = ("reduced", "band", "pymatting")


def load(fixtures: Path, photo: str, size: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = Image.open(fixtures / f"{photo}.jpg").convert("RGB")
    mask = Image.open(fixtures / f"{photo}.isnet-general-use.png").getchannel("A")
    if size != "native":
        side = int(size)
        rgb = rgb.resize((side, side), Image.Resampling.BICUBIC)
        mask = mask.resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(rgb), np.asarray(mask)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(fixtures: Path, photo: str, size: str, mode: str, out: Path) -> None:
    """One case, in this (fresh) process: prints a JSON line and saves the alpha."""
    sys.path.insert(0, str(ROOT))
    from server import matting

    matting.warm_up()
    rgb, mask = load(fixtures, photo, size)
    baseline = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "pymatting":
        import pymatting

        tri = matting.trimap(mask, 240, 10, 10)
        alpha = pymatting.estimate_alpha_cf(rgb / 255.0, tri / 255.0)
        pymatting.estimate_foreground_ml(rgb / 255.0, alpha)
        alpha = np.rint(alpha * 255).astype(np.uint8)
    else:
        unlimited = {"max_unknown_pixels": 2**40, "working_pixels": 2**40}
        budget = {} if mode == "reduced" else unlimited
        result = matting.refine_alpha(rgb, mask, **budget)
        assert result is not None
        alpha = result[0]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    np.save(out, alpha)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "peak": peak, "baseline": baseline}))


def run_case(fixtures: Path, photo: str, size: str, mode: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{photo}-{size}-{mode}.npy"
    command = [sys.executable, __file__, "--worker", photo, size, mode, str(out)]
    command += ["--fixtures", str(fixtures)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    # pymatting prints ichol warnings on stdout: the result is the last line.
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["alpha"] = np.load(out)
    return result


def first_call(fixtures: Path, cache_dir: Path) -> dict[str, float]:
    """Import + warm_up, then one refine_alpha, in a fresh process on `cache_dir`."""
    code = (
        "import sys, time, json; t = time.perf_counter();"
        f"sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
        "from server import matting; matting.warm_up(); w = time.perf_counter() - t;"
        f"from matting_bench import load; rgb, mask = load(__import__('pathlib').Path("
        f"{str(fixtures)!r}), 'car-1', 'native');"
        "t = time.perf_counter(); matting.refine_alpha(rgb, mask);"
        "print(json.dumps({'warm_up': w, 'call': time.perf_counter() - t}))"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    timings: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--photos", default="cloth-1,plants-1")
    parser.add_argument("--sizes", default="native,2048")
    parser.add_argument("--modes", default="reduced,pymatting", help=f"of {','.join(MODES)}")
    parser.add_argument("--no-pymatting", action="store_true", help="skip the reference")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache timing")
    parser.add_argument("--worker", nargs=4, metavar=("PHOTO", "SIZE", "MODE", "OUT"))
    args = parser.parse_args()
    if args.worker:
        photo, size, mode, out = args.worker
        worker(args.fixtures, photo, size, mode, Path(out))
        return

    modes = [m for m in args.modes.split(",") if not (args.no_pymatting and m == "pymatting")]
    print(
        "| photo | size | mode | unknown px | wall s | CPU s | peak RSS MB (before call) "
        "| alpha MAD vs pymatting (band) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sys.path.insert(0, str(ROOT))
    from server import matting

    with tempfile.TemporaryDirectory() as tmp:
        for photo in args.photos.split(","):
            for size in args.sizes.split(","):
                _, mask = load(args.fixtures, photo, size)
                band = matting.trimap(mask, 240, 10, 10) == matting.UNKNOWN
                height, width = mask.shape
                label = f"{width}x{height} ({width * height / 1e6:.1f} MP)"
                results = {m: run_case(args.fixtures, photo, size, m, Path(tmp)) for m in modes}
                reference = results.get("pymatting", {}).get("alpha")
                for mode, r in results.items():
                    mad = "-"
                    if reference is not None:
                        diff = np.abs(r["alpha"].astype(np.int16) - reference)
                        mad = f"{diff.mean():.2f} ({diff[band].mean():.2f})"
                    print(
                        f"| {photo} | {label} | {mode} | {band.sum():,} | {r['wall']:.2f} "
                        f"| {r['cpu']:.2f} | {r['peak']:.0f} ({r['baseline']:.0f}) | {mad} |",
                        flush=True,
                    )
    if not args.no_cold:
        print("\n| numba cache | import + warm_up s | first refine_alpha s (car-1) |")
        print("|---|---|---|")
        with tempfile.TemporaryDirectory() as cache:
            for label in ("cold (empty)", "warm"):
                r = first_call(args.fixtures, Path(cache))
                print(f"| {label} | {r['warm_up']:.1f} | {r['call']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
