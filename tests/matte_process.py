"""A real `python -m server serve` process for the end-to-end tests: on a free loopback
port, with the suite's key, ready before it is handed over, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping

import httpx

from tests.conftest import KEY, ROOT

READY_TIMEOUT_S = 300  # model load and warm-up on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def matte_server(
    extra_env: Callable[[str], Mapping[str, str]] = lambda url: {},
) -> Iterator[str]:
    """Serve and yield the base URL. `extra_env(url)` adds settings that need the URL
    (e.g. MATTE_PUBLIC_BASE_URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MATTE_PORT": str(port),
        "MATTE_API_KEYS": KEY,
        "MATTE_LOG_LEVEL": "warning",
        **extra_env(url),
    }
    process = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
