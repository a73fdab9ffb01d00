"""benchmarks/cli.py end to end in a tiny mode: 3 photos, no rembg; the report has its rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.benchmark_scripts import benchmark_scripts, script_env
from tests.benchmarks.test_run import table_rows
from tests.conftest import ROOT

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    work = tmp_path_factory.mktemp("cli-bench")
    command = [
        sys.executable,
        "benchmarks/cli.py",
        "--photos",
        "3",
        "--no-rembg",
        "--work",
        str(work),
        "--out",
        str(work / "CLI.md"),
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (work / "CLI.md").read_text(), work


def test_the_photos_are_made_the_same_way_every_time(tmp_path: Path) -> None:
    with benchmark_scripts("cli") as (cli,):
        first = cli.make_photos(6, tmp_path / "a")
        second = cli.make_photos(6, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    sizes = []
    for photo in first:
        with Image.open(photo) as image:
            assert image.format == "JPEG"
            sizes.append(image.size[0] * image.size[1])
    assert all(1_000_000 * 0.98 <= pixels <= 4_000_000 for pixels in sizes), sizes
    assert len(set(sizes)) == 6  # not one size over and over


def test_each_matte_run_cut_out_every_photo(report: tuple[str, Path]) -> None:
    text, work = report
    rows = table_rows(text, "Results")
    assert [row[0] for row in rows] == ["matte", "matte (onnxruntime fp32)"]
    for row in rows:
        images, wall_s, images_per_s, cpu_per_image, rss, _others, exit_status = row[1:]
        assert int(images) == 3 and exit_status == "0"
        assert float(wall_s) > 0 and float(cpu_per_image) > 0 and int(rss) > 100
        # images/s is 3 over the unrounded wall time; the table shows it to 0.1 s.
        wall = float(wall_s)
        assert 3 / (wall + 0.05) - 0.001 <= float(images_per_s) <= 3 / (wall - 0.05) + 0.001
    assert sorted(path.name for path in (work / "matte").iterdir()) == [
        "000-anime-girl-1.png",
        "001-car-1.png",
        "002-cloth-1.png",
    ]


def test_the_header_says_where_and_how_it_was_measured(report: tuple[str, Path]) -> None:
    text, _ = report
    assert "- Machine: " in text and " cores, " in text and "- CPU: " in text
    assert "- Command: `benchmarks/cli.py --photos 3 --no-rembg" in text
    assert "shared" in text and "- rembg: not run (--no-rembg)" in text
    assert table_rows(text, "Ratios") == [
        ["matte / rembg p", "n/a"],
        ["matte (onnxruntime fp32) / rembg p", "n/a"],
    ]
    assert "its last line: `matte: 3 done, 0 skipped, 0 failed in " in text
