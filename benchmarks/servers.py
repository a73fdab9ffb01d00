"""Servers under test as real processes: Matte (uvicorn) here, rembg in rembg_server.py.

Each runs alone on the machine while it is measured, on a free loopback port,
with its output in a log file the harness names when something goes wrong.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
from load import PNG_SIGNATURE, Endpoint, multipart_endpoint

if TYPE_CHECKING:
    from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MATTE_PATH = "/v2beta/stable-image/edit/remove-background"
BENCH_KEY = "sk-bench"
# Benchmarks send far more than the default 150 requests per 10 s from one key.
# How each output format's file starts (WebP: a RIFF container).
SIGNATURES = {"png": PNG_SIGNATURE, "webp": b"RIFF"}
BENCH_DEFAULTS = {"MATTE_RATE_LIMIT_REQUESTS": "1000000", "MATTE_LOG_LEVEL": "warning"}


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message ends with its log."""


@dataclass(frozen=True)
class Spec:
    name: str
    argv: list[str]
    env: dict[str, str]
    base_url: str
    ready_path: str


class Server:
    """A context manager: start the process, wait until it is ready, stop it on exit."""

    def __init__(self, spec: Spec, log_path: Path, ready_timeout_s: float = 300.0) -> None:
        self.spec = spec
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.ready_body: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, "server not started"
        return self._process.pid

    def __enter__(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.spec.argv, cwd=ROOT, env=self.spec.env, stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C at the harness reaches the harness only,
            # which then stops this process itself.
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # uvicorn finishes in-flight requests on SIGTERM
            try:
                self._process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        url = self.spec.base_url + self.spec.ready_path
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ServerFailed(f"{self.spec.name} exited ({self._process.returncode})"
                                       f"\n{self.log_tail()}")
                try:
                    response = client.get(url)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    if "json" in response.headers.get("content-type", ""):
                        self.ready_body = response.json()
                    return
                if response is not None and "failed" in response.text:
                    raise ServerFailed(f"{self.spec.name} failed to load\n{self.log_tail()}")
                time.sleep(0.2)
        raise ServerFailed(f"{self.spec.name} not ready in {self.ready_timeout_s:.0f}s"
                           f"\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def matte_env(base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment, MATTE_* included (that is how settings are compared),
    with the benchmark's defaults where the caller set nothing."""
    env = dict(base)
    for name, value in BENCH_DEFAULTS.items():
        env.setdefault(name, value)
    env["MATTE_API_KEYS"] = BENCH_KEY
    return env


def matte_spec(port: int, env: Mapping[str, str]) -> Spec:
    server_env = matte_env(env)
    # Loopback only: the load must never leave this machine.
    server_env.update(MATTE_HOST="127.0.0.1", MATTE_PORT=str(port))
    argv = [sys.executable, "-m", "server", "serve"]
    return Spec("matte", argv, server_env, f"http://127.0.0.1:{port}", "/readyz")


def matte_endpoint(spec: Spec, jpeg: bytes, output_format: str = "png") -> Endpoint:
    return multipart_endpoint(
        spec.base_url + MATTE_PATH,
        files={"image": ("photo.jpg", jpeg, "image/jpeg")},
        data={"output_format": output_format},
        headers={"authorization": f"Bearer {BENCH_KEY}", "accept": "image/*"},
        signature=SIGNATURES[output_format],
    )


def stage_totals(base_url: str) -> dict[str, tuple[float, float]]:
    """Matte's /metrics `matte_stage_seconds` as {stage: (sum, count)}; a run's is a difference."""
    text = httpx.get(base_url + "/metrics", timeout=10.0).text
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, index in (("_sum", 0), ("_count", 1)):
            prefix = f"matte_stage_seconds{suffix}{{stage=\""
            if line.startswith(prefix):
                stage = line[len(prefix):].split('"', 1)[0]
                totals.setdefault(stage, [0.0, 0.0])[index] = float(line.rsplit(" ", 1)[1])
    return {stage: (pair[0], pair[1]) for stage, pair in totals.items()}


def stage_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = (total - total0) / (count - count0)
    return means


def matte_settings(env: Mapping[str, str]) -> Settings:
    """The settings the Matte server under test reads from `env`."""
    from server.settings import Settings

    return Settings.from_env(matte_env(env))


def server_settings(env: Mapping[str, str], provider: str) -> dict[str, object]:
    """The settings the Matte server under test reads from `env`, as it resolves them."""
    settings = matte_settings(env)
    layout = settings.layout(provider)
    return {
        "MATTE_WORKERS": layout.workers,
        "threads per worker": layout.threads,
        "MATTE_BATCH_SIZE": layout.batch_size,
        "MATTE_BATCH_TIMEOUT_MS": settings.batch_timeout_ms,
        "MATTE_MAX_PENDING": layout.max_pending,
        "MATTE_MAX_QUEUE": layout.max_queue,
        "MATTE_QUEUE_TIMEOUT_S": settings.queue_timeout_s,
        "MATTE_PNG_COMPRESS_LEVEL": settings.png_compress_level,
        "MATTE_PRECISION": settings.precision,
        "MATTE_PROVIDER": settings.provider,
        "cores": os.cpu_count(),
    }
