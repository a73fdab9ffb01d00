"""A real `python -m server serve` process for the end-to-end tests: on a free loopback
port, with the suite's key and a temporary data directory, ready before it is handed
over, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping

import httpx

from tests.conftest import KEY, ROOT

READY_TIMEOUT_S = 300  # model load and warm-up on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn(env: Mapping[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start serving on `port` with the suite's key and `env` on top of this process's."""
    return subprocess.Popen(
        [sys.executable, "-m", "server", "serve"],
        cwd=ROOT,
        env={
            **os.environ,
            "MATTE_PORT": str(port),
            "MATTE_API_KEYS": KEY,
            "MATTE_LOG_LEVEL": "warning",
            **env,
        },
    )


def wait_until(
    process: subprocess.Popen[bytes], url: str, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until `url` answers 200 (/readyz: the model is warm; /healthz: it listens)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, "the server exited during start-up"
        assert time.monotonic() < deadline, f"{url} did not answer 200 in time"
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


@contextlib.contextmanager
def running_server(
    extra_env: Callable[[str], Mapping[str, str]] = lambda url: {},
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve and yield the base URL and the process once the model is ready.
    `extra_env(url)` adds settings that need the URL (e.g. MATTE_PUBLIC_BASE_URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="matte-data-") as data_dir:
        process = spawn({"MATTE_DATA_DIR": data_dir, **extra_env(url)}, port)
        try:
            wait_until(process, f"{url}/readyz")
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextlib.contextmanager
def matte_server(
    extra_env: Callable[[str], Mapping[str, str]] = lambda url: {},
) -> Iterator[str]:
    """`running_server`, for tests that need only the URL."""
    with running_server(extra_env) as (url, _):
        yield url
