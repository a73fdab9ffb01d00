"""`matte remove` end to end on the fake engine: files, folders, -r, skipping, stdin and
stdout, failures and the exit status, the summary, the progress bar, and the options
reaching the pipeline. (The real model: tests/server/test_cli_model.py.)"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

import server.__main__ as cli
from server.cli_remove import Terminal
from server.engine import Engine, ModelMissing
from server.settings import Settings
from tests.conftest import decode, jpeg, png, post
from tests.fakes import BrightnessEngine, FailingOnceEngine

SUMMARY = re.compile(
    r"matte: (\d+) done, (\d+) skipped, (\d+) failed in \d+\.\d s \(\d+\.\d\d images/s\)"
)


class TerminalText(io.StringIO):
    """stderr as a terminal (the progress bar is drawn only on one)."""

    def isatty(self) -> bool:
        return True


@dataclass
class Ran:
    status: int
    stdout: bytes
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    @property
    def tally(self) -> tuple[int, int, int]:
        """(done, skipped, failed) from the summary, which is the last line."""
        match = SUMMARY.fullmatch(self.lines[-1])
        assert match, self.stderr
        done, skipped, failed = match.groups()
        return int(done), int(skipped), int(failed)


@pytest.fixture(autouse=True)
def process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() sets NUMBA_CACHE_DIR and configures logging: neither may outlive the test."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", "unset")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)


def run(
    *argv: str,
    stdin: bytes = b"",
    tty: bool = False,
    engine: Callable[[Settings], Engine] = lambda _: BrightnessEngine(),
) -> Ran:
    stdout = io.BytesIO()
    stderr = TerminalText() if tty else io.StringIO()
    status = cli.main(
        ["remove", *argv], terminal=Terminal(io.BytesIO(stdin), stdout, stderr), engine=engine
    )
    return Ran(status, stdout.getvalue(), stderr.getvalue())


def no_model(_: Settings) -> Engine:
    raise AssertionError("the model was loaded with nothing to do")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def assert_cutout_of_the_disc(data: bytes, size: tuple[int, int] = (320, 240)) -> None:
    """The fake engine's cut-out of conftest.jpeg(): an RGBA PNG, opaque on the bright
    disc in the middle, transparent in the corners."""
    image = decode(data)
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", size)
    alpha = np.asarray(image)[:, :, 3]
    height, width = alpha.shape
    assert alpha[height // 2, width // 2] == 255
    assert alpha[2, 2] == 0 and alpha[-3, -3] == 0


def test_a_folder_is_cut_out_under_out_with_its_names(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())
    write(tmp_path / "in/b.png", png(200, 100))
    write(tmp_path / "in/sub/c.jpg", jpeg())
    write(tmp_path / "in/notes.txt", b"not an image, and not taken from a folder")
    ran = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert ran.status == 0, ran.stderr
    assert files_under(tmp_path / "out") == ["a.png", "b.png"]  # no -r: not sub/
    assert_cutout_of_the_disc((tmp_path / "out/a.png").read_bytes())
    assert decode((tmp_path / "out/b.png").read_bytes()).size == (200, 100)
    assert ran.tally == (2, 0, 0)
    assert ran.stdout == b""


def test_recursive_keeps_relative_paths(tmp_path: Path) -> None:
    for name in ("a.jpg", "sub/b.jpg", "sub/deeper/c.jpeg"):
        write(tmp_path / "in" / name, jpeg())
    ran = run("-r", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert ran.status == 0, ran.stderr
    assert files_under(tmp_path / "out") == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    assert_cutout_of_the_disc((tmp_path / "out/sub/deeper/c.png").read_bytes())
    assert ran.tally == (3, 0, 0)


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())
    write(tmp_path / "in/b.jpg", jpeg())
    out = tmp_path / "out"
    write(out / "a.png", b"kept")
    ran = run(str(tmp_path / "in"), "-o", str(out))
    assert ran.status == 0 and ran.tally == (1, 1, 0)
    assert (out / "a.png").read_bytes() == b"kept"
    assert_cutout_of_the_disc((out / "b.png").read_bytes())
    # Nothing left to do: the model is not even loaded.
    again = run(str(tmp_path / "in"), "-o", str(out), engine=no_model)
    assert again.status == 0 and again.tally == (0, 2, 0)
    assert again.lines == ["matte: 0 done, 2 skipped, 0 failed in 0.0 s (0.00 images/s)"]
    replaced = run("--overwrite", str(tmp_path / "in"), "-o", str(out))
    assert replaced.status == 0 and replaced.tally == (2, 0, 0)
    assert_cutout_of_the_disc((out / "a.png").read_bytes())
    # Written beside the output and renamed over it: no partial file is left behind.
    assert files_under(out) == ["a.png", "b.png"]


def test_a_second_run_into_a_folder_inside_the_input_skips_what_it_did(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())
    write(tmp_path / "in/sub/b.jpg", jpeg())
    out = str(tmp_path / "in" / "cutouts")
    assert run("-r", str(tmp_path / "in"), "-o", out).tally == (2, 0, 0)
    # The cut-outs under in/cutouts are not taken as inputs the second time.
    assert run("-r", str(tmp_path / "in"), "-o", out).tally == (0, 2, 0)


def test_stdin_to_stdout(tmp_path: Path) -> None:
    ran = run("-", stdin=jpeg(), tty=True)  # -o defaults to - for stdin
    assert ran.status == 0, ran.stderr
    assert_cutout_of_the_disc(ran.stdout)
    assert ran.tally == (1, 0, 0)
    assert run("-", "-o", "-", stdin=jpeg()).stdout == ran.stdout


def test_a_file_to_stdout_and_stdin_to_a_file(tmp_path: Path) -> None:
    photo = write(tmp_path / "a.jpg", jpeg())
    ran = run(str(photo), "-o", "-")
    assert ran.status == 0
    assert_cutout_of_the_disc(ran.stdout)
    to_file = run("-", "-o", str(tmp_path / "from-stdin.webp"), stdin=jpeg())
    assert to_file.status == 0 and to_file.stdout == b""
    assert decode((tmp_path / "from-stdin.webp").read_bytes()).format == "WEBP"


@pytest.mark.parametrize(
    ("name", "pillow_format"), [("cut.webp", "WEBP"), ("cut.png", "PNG"), ("CUT.PNG", "PNG")]
)
def test_one_file_to_a_named_file_takes_the_format_of_its_extension(
    tmp_path: Path, name: str, pillow_format: str
) -> None:
    photo = write(tmp_path / "a.jpg", jpeg())
    ran = run(str(photo), "-o", str(tmp_path / "x" / name))
    assert ran.status == 0, ran.stderr
    assert files_under(tmp_path / "x") == [name]
    assert decode((tmp_path / "x" / name).read_bytes()).format == pillow_format


def test_format_names_the_extension_of_folder_outputs(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())
    ran = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--format", "webp")
    assert ran.status == 0
    assert files_under(tmp_path / "out") == ["a.webp"]
    assert decode((tmp_path / "out/a.webp").read_bytes()).format == "WEBP"


def test_failures_are_told_and_counted_and_the_status_is_1(tmp_path: Path) -> None:
    write(tmp_path / "in/good.jpg", jpeg())
    write(tmp_path / "in/text.jpg", b"hello, I am not a photo")
    write(tmp_path / "in/tiny.png", png(10, 10))
    write(tmp_path / "in/gif.png", b"GIF89a" + bytes(64))
    missing = tmp_path / "missing.jpg"
    ran = run(str(tmp_path / "in"), str(missing), "-o", str(tmp_path / "out"))
    assert ran.status == 1
    assert ran.tally == (1, 0, 4)
    folder = tmp_path / "in"
    # The API's own messages, each on one line naming the file; the summary last.
    assert sorted(ran.lines[1:-1]) == sorted(
        [
            f"{folder / 'text.jpg'}: image: must be a jpeg, png or webp image",
            f"{folder / 'tiny.png'}: image: width and height must be at least 64 pixels",
            f"{folder / 'gif.png'}: image: gif is not supported: must be a jpeg, png or webp image",
            f"{missing}: cannot read it: No such file or directory",
        ]
    )
    assert files_under(tmp_path / "out") == ["good.png"]


def test_a_file_over_the_upload_limit_fails(tmp_path: Path) -> None:
    big = write(tmp_path / "in/big.jpg", jpeg(640, 480, quality=95))
    write(tmp_path / "in/small.png", png(64, 64))
    assert len(big.read_bytes()) > 4000 > len((tmp_path / "in/small.png").read_bytes())
    ran = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--max-body-bytes", "4000")
    assert ran.status == 1 and ran.tally == (1, 0, 1)
    assert (
        f"{big}: larger than 4000 bytes, the upload limit "
        "(--max-body-bytes or MATTE_MAX_BODY_BYTES raise it)"
    ) in ran.lines


def test_an_output_that_cannot_be_written_fails_that_image(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())
    write(tmp_path / "in/sub/b.jpg", jpeg())
    write(tmp_path / "out/sub", b"a file where the folder should be")
    ran = run("-r", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert ran.status == 1 and ran.tally == (1, 0, 1)
    [told] = ran.lines[1:-1]
    target = tmp_path / "out/sub/b.png"
    assert told.startswith(f"{tmp_path / 'in/sub/b.jpg'}: cannot write {target}: ")


def test_two_inputs_with_one_output_name_fail_the_second(tmp_path: Path) -> None:
    write(tmp_path / "in/photo.jpg", jpeg())
    write(tmp_path / "in/photo.png", png(100, 100))
    ran = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert ran.status == 1 and ran.tally == (1, 0, 1)
    first, second = tmp_path / "in/photo.jpg", tmp_path / "in/photo.png"
    assert f"{second}: its output would overwrite the output of {first}" in ran.lines
    assert_cutout_of_the_disc((tmp_path / "out/photo.png").read_bytes())


def test_a_model_fault_fails_only_its_image(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write(tmp_path / "in" / name, jpeg())
    ran = run(
        str(tmp_path / "in"), "-o", str(tmp_path / "out"), engine=lambda _: FailingOnceEngine()
    )
    assert ran.status == 1 and ran.tally == (2, 0, 1)
    assert [line.split(": ", 1)[1] for line in ran.lines[1:-1]] == [
        f"unexpected error: RuntimeError: {FailingOnceEngine.SECRET}"
    ]


def test_a_model_that_does_not_load_is_status_1_with_its_reason(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())

    def missing(_: Settings) -> Engine:
        raise ModelMissing("model file /nowhere.onnx not found: run `make model`")

    ran = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), engine=missing)
    assert ran.status == 1
    assert ran.lines == [
        "matte: the model could not be loaded: model file /nowhere.onnx not found: run `make model`"
    ]
    assert not (tmp_path / "out").exists()


def test_the_load_line_names_the_engine_and_the_servers_bound(tmp_path: Path) -> None:
    write(tmp_path / "in/a.jpg", jpeg())
    ran = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--max-pending", "3")
    assert re.fullmatch(
        r"matte: fake fp32 on the fake, loaded in \d+\.\d s; 1 image\(s\) to cut out, 3 at a time",
        ran.lines[0],
    )
    quiet = run("-q", "--overwrite", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert len(quiet.lines) == 1 and quiet.tally == (1, 0, 0)  # the summary alone


def test_images_overlap_in_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images are fed several at a time: with room for batches (as on a GPU) the model
    gets more than one image per run, which a one-by-one loop could never give it."""
    engine = BrightnessEngine()
    for index in range(8):
        write(tmp_path / "in" / f"{index}.jpg", jpeg())
    monkeypatch.setenv("MATTE_BATCH_TIMEOUT_MS", "300")
    ran = run(
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--batch-size",
        "4",
        "--max-pending",
        "8",
        engine=lambda _: engine,
    )
    assert ran.status == 0 and ran.tally == (8, 0, 0)
    runs = engine.batches[1:]  # after the warm-up's
    assert sum(runs) == 8 and max(runs) > 1 and max(runs) <= 4, runs


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write(tmp_path / "in" / name, jpeg())
    write(tmp_path / "in/bad.jpg", b"nope")
    out = str(tmp_path / "out")
    drawn = run(str(tmp_path / "in"), "-o", out, tty=True)
    assert drawn.status == 1
    final = drawn.stderr.split("\r")[-1]  # tqdm redraws in place with \r
    assert re.search(r"100%\|.+\| 4/4 \[\d\d:\d\d<00:00, +\d+\.\d\d images/s\]", final), final
    # A failure is told on a line of its own, above the bar.
    assert f"{tmp_path / 'in/bad.jpg'}: image: must be a jpeg, png or webp image\n" in drawn.stderr
    assert drawn.tally == (3, 0, 1)
    for plain in (
        run("--overwrite", str(tmp_path / "in"), "-o", out),
        run("--overwrite", "--no-progress", str(tmp_path / "in"), "-o", out, tty=True),
        run("--overwrite", "-q", str(tmp_path / "in"), "-o", out, tty=True),
    ):
        assert "images/s]" not in plain.stderr and "\r" not in plain.stderr
        assert plain.tally == (3, 0, 1)


@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (["--only-mask"], lambda image: image.mode == "L" and image.getpixel((160, 120)) == 255),
        (
            ["--bgcolor", "255,0,0"],
            lambda image: image.convert("RGBA").getpixel((1, 1)) == (255, 0, 0, 255),
        ),
        (
            ["--bgcolor", "blue"],  # the shared colour parser: names and hex too
            lambda image: image.convert("RGBA").getpixel((1, 1)) == (0, 0, 255, 255),
        ),
        (["--inverse-mask"], lambda image: image.mode == "L" and image.getpixel((1, 1)) == 255),
        (["--format", "webp"], lambda image: image.format == "WEBP"),
    ],
    ids=["only-mask", "bgcolor", "bgcolor-name", "inverse-mask", "webp"],
)
def test_options_reach_the_pipeline(
    tmp_path: Path, flags: list[str], check: Callable[..., bool]
) -> None:
    photo = write(tmp_path / "a.jpg", jpeg())
    ran = run(str(photo), "-o", "-", *flags)
    assert ran.status == 0, ran.stderr
    assert check(decode(ran.stdout))


def test_a_bad_option_is_a_usage_error_worded_as_the_api_words_it(
    tmp_path: Path, client: TestClient
) -> None:
    photo = write(tmp_path / "a.jpg", jpeg())
    api = post(client, jpeg(), alpha_matting_erode_size="101").json()["errors"]
    ran = run(str(photo), "-o", str(tmp_path / "out"), "--alpha-matting-erode-size", "101")
    assert ran.status == 2
    assert api == ["alpha_matting_erode_size: must be an integer from 0 to 100"]
    assert ran.lines == [f"matte remove: {api[0]}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a.jpg"], "-o OUT is required: a folder, or a file name for one input"),
        (["a.jpg", "-o", "cut.png", "-f", "webp"], "-o cut.png says png but --format says webp"),
        (["-", "a.jpg", "-o", "out"], "- (stdin) must be the only input"),
        (["a.jpg", "b.jpg", "-o", "-"], "-o - takes one input file; give -o a folder for more"),
        (
            ["a.jpg", "-o", "out", "--format", "gif"],
            "output_format: must be one of png, webp, jpg, zip, auto",
        ),
        (
            ["a.jpg", "-o", "out", "--bg-image", "nowhere.png"],
            "bg_image: cannot read nowhere.png: No such file or directory",
        ),
    ],
)
def test_usage_errors_are_status_2_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.jpg", jpeg())
    write(tmp_path / "b.jpg", jpeg())
    ran = run(*argv, engine=no_model)
    assert ran.status == 2
    assert ran.lines == [f"matte remove: {message}"]
    assert files_under(tmp_path) == ["a.jpg", "b.jpg"]


class TerminalBytes(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_no_image_is_written_to_a_terminal(tmp_path: Path) -> None:
    stdout, stderr = TerminalBytes(), io.StringIO()
    terminal = Terminal(io.BytesIO(jpeg()), stdout, stderr)
    assert cli.main(["remove", "-"], terminal=terminal, engine=lambda _: BrightnessEngine()) == 2
    assert stderr.getvalue() == (
        "matte remove: stdout is a terminal: redirect it (> cut.png) or give -o a file name\n"
    )
    assert stdout.getvalue() == b""


def test_a_bad_setting_flag_is_status_2_naming_its_variable(tmp_path: Path) -> None:
    ran = run(str(tmp_path), "-o", str(tmp_path / "out"), "--precision", "fp8")
    assert ran.status == 2
    assert ran.lines == ["matte: MATTE_PRECISION: must be one of auto, fp32, bf16, int8, got 'fp8'"]
