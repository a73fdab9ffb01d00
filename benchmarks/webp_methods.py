"""WebP's `method` (encoder effort, 0-6) against time and size, on a real 4 MP cut-out:
the car fixture scaled to 4 MP with rembg's reference alpha, encoded as the server
does (quality 90, lossless alpha), PNG level 1 beside it for scale.

    .venv/bin/python benchmarks/webp_methods.py

Prints one line per method: median milliseconds of 3 encodes and the file's size,
then the served method without the alpha plane, to show what lossless alpha costs.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.png import encode_png  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"


def cutout(pixels: int = 4_000_000) -> np.ndarray:
    photo = Image.open(FIXTURES / "car-1.jpg").convert("RGB")
    alpha = Image.open(FIXTURES / "car-1.isnet-general-use.png").convert("RGBA").getchannel("A")
    scale = (pixels / (photo.width * photo.height)) ** 0.5
    size = (round(photo.width * scale), round(photo.height * scale))
    rgba = photo.resize(size, Image.Resampling.LANCZOS)
    rgba.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
    return np.asarray(rgba)


def timed(encode: object) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(3):
        started = time.perf_counter()
        size = len(encode())  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, size


def main() -> None:
    pixels = cutout()
    print(f"cut-out {pixels.shape[1]}x{pixels.shape[0]} RGBA")
    ms, size = timed(lambda: encode_png(pixels, 1))
    print(f"png level 1: {ms:.0f} ms, {size / 1e6:.2f} MB")
    for method in range(7):

        def webp(method: int = method) -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(
                buffer, "WEBP", quality=90, alpha_quality=100, method=method
            )
            return buffer.getvalue()

        ms, size = timed(webp)
        print(f"webp method {method}: {ms:.0f} ms, {size / 1e6:.2f} MB", flush=True)
    # The colour alone at the served method: what the lossless alpha plane costs.
    rgb = np.ascontiguousarray(pixels[:, :, :3])

    def colour_only() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "WEBP", quality=90, method=2)
        return buffer.getvalue()

    ms, size = timed(colour_only)
    print(f"webp method 2, colour only (no alpha): {ms:.0f} ms, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
