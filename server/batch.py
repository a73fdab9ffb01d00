"""The batch: many images through one in-process pipeline, as fast as the server would.

Images are fed by a few tasks, twice as many as the pipeline has slots: one image
in each slot (decoding, at the model or encoding) and one read and waiting for
it, so the stages of different images overlap and the model never waits for a
file. Files are read and written on threads. The pipeline's own admission and
scheduler bound the work exactly as they bound the server's requests.

An image that fails (not an image, too large, unreadable, unwritable) is told
and counted; the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from .batch_paths import Job
from .errors import ApiError
from .options import CutoutOptions
from .pipeline import Cutout, Pipeline

log = logging.getLogger("matte.batch")

# The extension each output format writes; `auto` picks png or jpg per image.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "png": (".png",),
    "webp": (".webp",),
    "jpg": (".jpg",),
    "zip": (".zip",),
    "auto": (".png", ".jpg"),
}
_MEDIA_SUFFIXES = {
    "image/png": ".png",
    "image/webp": ".webp",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "application/zip": ".zip",
}


class Progress(Protocol):
    """Where the batch tells how it goes (a progress bar, or nothing but the failures)."""

    def advance(self) -> None: ...

    def say(self, line: str) -> None: ...


@dataclass
class Tally:
    done: int = 0
    skipped: int = 0
    failed: int = 0


class Failed(Exception):
    """One image could not be cut out; the message says why (without the file's name)."""


@dataclass(frozen=True)
class Streams:
    """What `-` reads and writes."""

    stdin: BinaryIO
    stdout: BinaryIO


def not_done(jobs: Sequence[Job], output_format: str) -> tuple[list[Job], int]:
    """The jobs whose output is not there yet, and how many are skipped as it is (checked
    before the model loads, so a rerun over a finished folder returns at once)."""
    suffixes = SUFFIXES[output_format]
    todo = [job for job in jobs if not any(path.exists() for path in job.targets(suffixes))]
    return todo, len(jobs) - len(todo)


class Batch:
    def __init__(
        self,
        pipeline: Pipeline,
        options: CutoutOptions,
        progress: Progress,
        streams: Streams,
    ) -> None:
        self.pipeline = pipeline
        self.options = options
        self.progress = progress
        self.streams = streams
        self.suffixes = SUFFIXES[options.output_format]
        self.max_bytes = pipeline.settings.max_body_bytes
        self.tally = Tally()

    async def run(self, jobs: Sequence[Job]) -> Tally:
        waiting = iter(jobs)

        async def feed() -> None:
            # One shared iterator: each task takes the next job when it is free.
            for job in waiting:
                await self._one(job)

        tasks = min(len(jobs), 2 * self.pipeline.admission.slots)
        async with asyncio.TaskGroup() as group:
            for _ in range(tasks):
                group.create_task(feed())
        return self.tally

    async def _one(self, job: Job) -> None:
        try:
            await self._cut_out(job)
        except (Failed, ApiError) as exc:
            reason = "; ".join(exc.messages) if isinstance(exc, ApiError) else str(exc)
            self.tally.failed += 1
            self.progress.say(f"{job.label}: {reason}")
        except Exception as exc:  # a bug, not the image: still only this image's failure
            log.debug("%s failed", job.label, exc_info=True)
            self.tally.failed += 1
            self.progress.say(f"{job.label}: unexpected error: {type(exc).__name__}: {exc}")
        else:
            self.tally.done += 1
        self.progress.advance()

    async def _cut_out(self, job: Job) -> None:
        if job.clashes_with is not None:
            raise Failed(f"its output would overwrite the output of {job.clashes_with}")
        data = await asyncio.to_thread(self._read, job)
        pipeline = self.pipeline
        with pipeline.admission.ticket() as ticket:
            cutout = await pipeline.cutout(ticket, data, self.options, None)
        await asyncio.to_thread(self._write, job, cutout)

    def _read(self, job: Job) -> bytes:
        try:
            if job.source is None:
                data = self.streams.stdin.read(self.max_bytes + 1)
            else:
                with job.source.open("rb") as file:
                    data = file.read(self.max_bytes + 1)
        except OSError as exc:
            raise Failed(f"cannot read it: {exc.strerror or exc}") from None
        if len(data) > self.max_bytes:
            raise Failed(
                f"larger than {_size(self.max_bytes)}, the upload limit "
                "(--max-body-bytes or MATTE_MAX_BODY_BYTES raise it)"
            )
        return data

    def _write(self, job: Job, cutout: Cutout) -> None:
        if job.base is None:
            self.streams.stdout.write(cutout.data)
            self.streams.stdout.flush()
            return
        target = job.base
        if not job.exact:
            suffix = self.suffixes[0]
            if len(self.suffixes) > 1:
                suffix = _MEDIA_SUFFIXES.get(cutout.media_type, suffix)
            target = job.base.with_name(job.base.name + suffix)
        try:
            write_atomically(target, cutout.data)
        except OSError as exc:
            raise Failed(f"cannot write {target}: {exc.strerror or exc}") from None


def write_atomically(target: Path, data: bytes) -> None:
    """Write to a fresh file beside `target`, then rename it over: an interrupted run
    leaves no half-written cut-out that a rerun would then skip as done. (Opened as
    an ordinary file, so it gets the usual permissions, not a temporary file's 0600.)"""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with partial.open("xb") as file:
            file.write(data)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _size(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{limit} bytes"
