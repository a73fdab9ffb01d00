"""Where `matte remove` reads each image and writes its cut-out.

A file input goes to OUT/<its name>.<format's extension>; a folder's images keep
their paths relative to the folder under OUT (only its top level without
--recursive). `-` is stdin as an input and stdout as the output. With one input
file, an -o that ends in an output extension is the output file itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

STDIO = "-"
# What a folder contributes: the formats Matte decodes. A file named on the command
# line is tried whatever its name says (and fails, reported, when it is no image).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp")


class UsageError(Exception):
    """The inputs and -o cannot be matched up: the command exits 2, nothing is done."""


@dataclass(frozen=True)
class Job:
    """One image: `source` None reads stdin; `base` None writes stdout, else the output's
    path without its extension (the extension follows the format: `auto` picks one
    per image). `exact`: -o named the output file itself, extension included."""

    label: str  # how messages name the input
    source: Path | None
    base: Path | None
    exact: bool = False
    # The input whose output this one would overwrite (photo.jpg and photo.png
    # in one folder): the job fails instead of silently replacing it.
    clashes_with: str | None = None

    def targets(self, suffixes: Sequence[str]) -> list[Path]:
        """The output paths this job may write, one per extension its format can take."""
        if self.base is None:
            return []
        if self.exact:
            return [self.base]
        return [self.base.with_name(self.base.name + suffix) for suffix in suffixes]


def plan_jobs(inputs: Sequence[str], output: str, *, recursive: bool, to_file: bool) -> list[Job]:
    """The jobs for `inputs` and -o `output` ("-": stdout). `to_file`: `output` is the
    output file (it ends in an output extension and is no folder), not a folder."""
    if STDIO in inputs:
        if len(inputs) > 1:
            raise UsageError("- (stdin) must be the only input")
        if output != STDIO and not to_file:
            raise UsageError("with - (stdin) as the input, -o must be - or a file name")
        return [Job("stdin", None, None if output == STDIO else Path(output), exact=True)]
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if output == STDIO or to_file:
        if not single_file:
            what = "-" if output == STDIO else f"{output} (a file)"
            raise UsageError(f"-o {what} takes one input file; give -o a folder for more")
        source = Path(inputs[0])
        return [Job(inputs[0], source, None if output == STDIO else Path(output), exact=True)]
    folder = Path(output)
    jobs: list[Job] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            for found in _images_in(path, recursive, folder):
                relative = found.relative_to(path)
                base = folder / relative.parent / relative.stem
                jobs.append(Job(str(found), found, base))
        else:
            # Missing or unreadable: the job fails and says so, the others go on.
            jobs.append(Job(given, path, folder / path.stem))
    return _mark_clashes(jobs)


def _images_in(folder: Path, recursive: bool, output: Path) -> Iterator[Path]:
    """The folder's image files in a stable order, leaving out hidden ones (macOS's
    ._photo.jpg beside photo.jpg is no image) and the output folder when it lies
    inside (so a second run does not cut out the first run's cut-outs)."""
    skip = output.resolve()
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if not recursive:
            dirs.clear()
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip)
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                yield here / name


def _mark_clashes(jobs: list[Job]) -> list[Job]:
    first: dict[Path, str] = {}
    marked = []
    for job in jobs:
        assert job.base is not None
        key = job.base.resolve()
        if key in first:
            job = Job(job.label, job.source, job.base, clashes_with=first[key])
        else:
            first[key] = job.label
        marked.append(job)
    return marked
