"""A content-addressed file store: bytes live at root/ab/<sha256 hex>, written
atomically (temporary file, fsync, rename, fsync of the folder), so a name in
the store always holds its complete bytes, also after a crash."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

_DIGEST = re.compile(r"[0-9a-f]{64}")
_TMP = "tmp"


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / _TMP

    def open(self) -> None:
        """Create the folders and drop what an interrupted write left behind."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError("not a sha256 hex digest")
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def write(self, data: bytes, digest: str) -> None:
        """Make `data` durable under `digest` (its sha256); identical bytes are stored once."""
        target = self.path(digest)
        folder = target.parent
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            _fsync_dir(self.root)
        if target.is_file():
            # Another writer may have renamed it in but not yet synced the folder:
            # syncing it here too makes the name durable before our row commits.
            _fsync_dir(folder)
            return
        temporary = self._tmp / f"{digest}.{os.getpid()}.{os.urandom(6).hex()}"
        try:
            with open(temporary, "xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        """Every digest the store holds (files with other names are not its own)."""
        for folder in self.root.iterdir():
            if folder.name == _TMP or not folder.is_dir():
                continue
            for file in folder.iterdir():
                if _DIGEST.fullmatch(file.name) and file.name[:2] == folder.name:
                    yield file.name
