"""A real Redis for the tests: Debian's `redis-server` on 127.0.0.1, a free port and a
temporary folder, no persistence, stopped at the end. It can be killed and started
again on the same port (the fault tests).

Without the binary the tests that need it are skipped, except under `make test`
(which installs it first and sets REQUIRE_SERVICES=1) and in CI (CI=true), where
they fail: those runs must include them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis

START_TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unavailable(reason: str) -> NoReturn:
    message = f"redis-server is needed for these tests: {reason}"
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (CI runs them: install redis-server)", pytrace=False)
    pytest.skip(message)


class RedisServer:
    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on this server's port and wait until it answers PING."""
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [
                self.binary,
                *("--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
                *("--logfile", str(self.folder / "redis.log"), "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        with redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1) as client:
            while True:
                assert self._process.poll() is None, self._log()
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                assert time.monotonic() < deadline, "redis-server did not answer in time"
                time.sleep(0.05)

    def kill(self) -> None:
        """A crash: SIGKILL, no goodbye to clients."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def pause(self) -> None:
        """A hung server: connections stay open, nothing answers (SIGSTOP)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        with redis.Redis(port=self.port, socket_timeout=5) as client:
            client.flushall()

    def _end(self, how: signal.Signals) -> None:
        if self._process is None:
            return
        self._process.send_signal(how)
        self._process.send_signal(signal.SIGCONT)  # a paused one acts on it too
        self._process.wait(timeout=30)
        self._process = None

    def _log(self) -> str:
        log = self.folder / "redis.log"
        return log.read_text(errors="replace") if log.exists() else "redis-server exited"


@contextlib.contextmanager
def redis_instance() -> Iterator[RedisServer]:
    """A running redis-server of its own; stopped and removed afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("no redis-server on PATH (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="matte-redis-"))
    server = RedisServer(binary, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with redis_instance() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url
