"""`matte remove` on the real model: the fixture photos' cut-outs match rembg's references."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import INHERITED, ROOT, fixture_photos, reference_alpha, soft_iou

pytestmark = pytest.mark.model


def test_remove_cuts_out_the_fixture_photos_as_rembg_does(tmp_path: Path) -> None:
    photos = fixture_photos()
    out = tmp_path / "out"
    # Only the model cache from this environment: the command's own defaults otherwise.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTE_")}
    env.update({name: os.environ[name] for name in INHERITED if name in os.environ})
    done = subprocess.run(
        [sys.executable, "-m", "server", "remove", *map(str, photos), "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert re.fullmatch(
        r"matte: \S+ \S+ on the (cpu|cuda), loaded in \d+\.\d s; "
        r"4 image\(s\) to cut out, \d+ at a time",
        lines[0],
    )
    assert re.fullmatch(r"matte: 4 done, 0 skipped, 0 failed in .* images/s\)", lines[-1])
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{p.stem}.png" for p in photos)
    for photo in photos:
        with Image.open(photo) as original, Image.open(out / f"{photo.stem}.png") as cutout:
            assert cutout.mode == "RGBA"
            assert cutout.size == original.size
            alpha = np.asarray(cutout)[:, :, 3]
        iou = soft_iou(alpha, reference_alpha(photo))
        assert iou >= 0.99, f"{photo.name}: soft IoU {iou:.4f} against rembg's reference"
