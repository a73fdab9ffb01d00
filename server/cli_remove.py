"""`matte remove IN... -o OUT`: cut out files and folders on this machine, in-process.

The model runs here, behind the same scheduler and admission as the server's
(server/loader.py), with the same settings; the options are the API's. A progress
bar (tqdm) goes to stderr when it is a terminal; the summary always does. Exit
status: 0 when every image was done or skipped, 1 when any failed, 2 for a usage
error (nothing done).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Never, TextIO

from tqdm import tqdm

from .batch import Batch, Streams, Tally, not_done
from .batch_paths import STDIO, Job, UsageError, plan_jobs
from .engine import load_engine
from .errors import BadRequest
from .loader import EngineFactory, load_pipeline
from .metrics import Metrics
from .option_flags import add_option_flags, option_flags, options_from
from .options import CutoutOptions
from .setting_flags import SettingFlag, add_setting_flags
from .settings import Settings

# The settings that matter to a run on this machine (the rest are the server's):
# the flags come from the same table as `matte serve`'s.
SETTINGS = (
    "MATTE_CACHE_DIR",
    "MATTE_MODEL_PATH",
    "MATTE_PROVIDER",
    "MATTE_ENGINE",
    "MATTE_PRECISION",
    "MATTE_WORKERS",
    "MATTE_INTRA_OP_THREADS",
    "MATTE_BATCH_SIZE",
    "MATTE_MAX_PENDING",
    "MATTE_MODEL_TIMEOUT_S",
    "MATTE_MAX_BODY_BYTES",
    "MATTE_PNG_COMPRESS_LEVEL",
    "MATTE_WEBP_QUALITY",
    "MATTE_MATTING_MAX_UNKNOWN_PIXELS",
    "MATTE_LOG_LEVEL",
)
# -o's extension picks the format when --format is not given.
FILE_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpg", ".jpeg": "jpg", ".zip": "zip"}
# The server's info lines (the engine compiled, ...) are noise here, where the command
# says what it loaded itself: warnings and errors only, unless debug is asked for.
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Images done, images/s (never tqdm's s/image below 1 a second) and the time left.
BAR_FORMAT = (
    "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"
)


@dataclass(frozen=True)
class Terminal:
    """The command's streams (tests hand in their own)."""

    stdin: BinaryIO
    stdout: BinaryIO
    stderr: TextIO

    @classmethod
    def system(cls) -> Terminal:
        return cls(sys.stdin.buffer, sys.stdout.buffer, sys.stderr)


def add_arguments(parser: argparse.ArgumentParser, settings: list[SettingFlag]) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IN",
        help="image files and folders; - reads one image from stdin",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="the folder for the cut-outs, a file name for one input (its extension "
        "picks the format), or - for stdout; default - when IN is -",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="take folders' subfolders too"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs that exist (default: skip them)"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress bar (there is none either when stderr is not a terminal)",
    )
    options = parser.add_argument_group("cut-out options (as the API's fields)")
    add_option_flags(options, option_flags())
    group = parser.add_argument_group("settings (each replaces its MATTE_* variable)")
    add_setting_flags(group, remove_settings(settings))


def remove_settings(flags: list[SettingFlag]) -> list[SettingFlag]:
    return [flag for flag in flags if flag.variable in SETTINGS]


def remove(
    args: argparse.Namespace,
    settings: Settings,
    terminal: Terminal,
    factory: EngineFactory = load_engine,
) -> int:
    say = _Say(terminal.stderr, quiet=args.quiet)
    inputs: list[str] = args.inputs
    output: str | None = args.output
    if output is None:
        if inputs != [STDIO]:
            return say.usage("-o OUT is required: a folder, or a file name for one input")
        output = STDIO
    if output == STDIO and terminal.stdout.isatty():
        return say.usage("stdout is a terminal: redirect it (> cut.png) or give -o a file name")
    suffix = Path(output).suffix.lower()
    to_file = output != STDIO and suffix in FILE_FORMATS and not Path(output).is_dir()
    try:
        options = options_from(args, option_flags(), FILE_FORMATS[suffix] if to_file else None)
        if to_file and FILE_FORMATS[suffix] != options.output_format:
            raise UsageError(
                f"-o {output} says {FILE_FORMATS[suffix]} but --format says {options.output_format}"
            )
        jobs = plan_jobs(inputs, output, recursive=args.recursive, to_file=to_file)
    except BadRequest as exc:
        return say.usage("; ".join(exc.messages))
    except UsageError as exc:
        return say.usage(str(exc))
    logging.basicConfig(level=LOG_LEVELS[settings.log_level], format="matte: %(message)s")
    run = _Run(settings, options, terminal, say, overwrite=args.overwrite)
    try:
        tally = asyncio.run(run.run(jobs, factory))
    except KeyboardInterrupt:
        say.line("interrupted")
        return 130
    except _LoadFailed as exc:
        say.line(f"the model could not be loaded: {exc}")
        return 1
    return 1 if tally.failed else 0


class _LoadFailed(Exception):
    """The engine did not load (no model file, a precision the CPU lacks): nothing ran."""


class _Say:
    """The command's own lines on stderr: `line` always, `info` unless --quiet."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet

    def line(self, text: str) -> None:
        print(f"matte: {text}", file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self.line(text)

    def usage(self, text: str) -> int:
        print(f"matte remove: {text}", file=self.stream, flush=True)
        return 2


class _Run:
    def __init__(
        self,
        settings: Settings,
        options: CutoutOptions,
        terminal: Terminal,
        say: _Say,
        *,
        overwrite: bool,
    ) -> None:
        self.settings = settings
        self.options = options
        self.terminal = terminal
        self.say = say
        self.overwrite = overwrite

    async def run(self, jobs: list[Job], factory: EngineFactory) -> Tally:
        skipped = 0
        if not self.overwrite:
            jobs, skipped = not_done(jobs, self.options.output_format)
        tally, seconds = Tally(), 0.0
        if jobs:
            tally, seconds = await self._cut_out(jobs, factory)
        tally.skipped = skipped
        self.say.line(summary(tally, seconds))
        return tally

    async def _cut_out(self, jobs: list[Job], factory: EngineFactory) -> tuple[Tally, float]:
        """The tally and the seconds the images took, once the model was loaded."""
        started = time.perf_counter()
        try:
            loaded = await load_pipeline(
                self.settings,
                Metrics(),
                factory,
                # pymatting loads its compiled code on first use: only when asked for.
                warm_matting=self.options.alpha_matting,
            )
        except Exception as exc:
            raise _LoadFailed(str(exc)) from exc
        engine, layout = loaded.engine, loaded.layout
        self.say.info(
            f"{engine.engine} {engine.precision} on the {engine.provider}, loaded in "
            f"{time.perf_counter() - started:.1f} s; {len(jobs)} image(s) to cut out, "
            f"{layout.max_pending} at a time"
        )
        stderr = self.terminal.stderr
        bar = _Bar(stderr, len(jobs), enabled=not self.say.quiet and stderr.isatty())
        streams = Streams(self.terminal.stdin, self.terminal.stdout)
        started = time.perf_counter()
        try:
            tally = await Batch(loaded.pipeline, self.options, bar, streams).run(jobs)
            return tally, time.perf_counter() - started
        finally:
            bar.close()
            await loaded.pipeline.scheduler.stop()


def summary(tally: Tally, seconds: float) -> str:
    rate = tally.done / seconds if seconds > 0 else 0.0
    return (
        f"{tally.done} done, {tally.skipped} skipped, {tally.failed} failed "
        f"in {seconds:.1f} s ({rate:.2f} images/s)"
    )


class _Bar:
    """tqdm's bar on stderr (images done, images/s, ETA), or only the lines it is told."""

    def __init__(self, stream: TextIO, total: int, *, enabled: bool) -> None:
        self.stream = stream
        self._bar: tqdm[Never] | None = None
        if enabled:
            self._bar = tqdm(
                total=total, file=stream, unit=" images", bar_format=BAR_FORMAT, dynamic_ncols=True
            )

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def say(self, line: str) -> None:
        if self._bar is not None:
            # Printed above the bar, which is drawn again below it.
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
