"""A real Prometheus for the tests: Debian's `prometheus` on 127.0.0.1, a free port
and a temporary folder (its config and its database), stopped at the end; and
`promtool` to check configs and PromQL offline.

Without the binaries the tests that need them are skipped, except under `make
test` (which installs the package first and sets REQUIRE_SERVICES=1) and in CI
(CI=true), where they fail: those runs must include them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.conftest import ROOT
from tests.matte_process import free_port

SCRAPE_CONFIG = ROOT / "deploy" / "prometheus.yml"
START_TIMEOUT_S = 60
# deploy/prometheus.yml's own target and intervals, which `scrape_config` replaces.
SHIPPED_TARGET = '"127.0.0.1:8000"'
SHIPPED_INTERVAL = "scrape_interval: 15s"
SHIPPED_TIMEOUT = "scrape_timeout: 5s"

Results = list[dict[str, Any]]


def _unavailable(reason: str) -> NoReturn:
    message = f"Debian's prometheus package is needed for this test: {reason}"
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (CI runs it: install prometheus)", pytrace=False)
    pytest.skip(message)


def binary(name: str) -> str:
    """`prometheus` or `promtool` on PATH, else skip (or fail, see above)."""
    path = shutil.which(name)
    if path is None:
        _unavailable(f"{name} is not on PATH")
    return path


def scrape_config(target: str, interval_s: int = 1) -> str:
    """deploy/prometheus.yml scraping `target` (host:port) every `interval_s`."""
    text = SCRAPE_CONFIG.read_text(encoding="utf-8")
    # The shipped file is what runs: only its target and intervals change.
    assert text.count(SHIPPED_TARGET) == 1, "deploy/prometheus.yml: one target expected"
    assert text.count(SHIPPED_INTERVAL) == 2, "deploy/prometheus.yml: global and job intervals"
    assert text.count(SHIPPED_TIMEOUT) == 1, "deploy/prometheus.yml: one scrape_timeout"
    return (
        text.replace(SHIPPED_TARGET, json.dumps(target))
        .replace(SHIPPED_INTERVAL, f"scrape_interval: {interval_s}s")
        .replace(SHIPPED_TIMEOUT, f"scrape_timeout: {interval_s}s")
    )


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = httpx.get(self.url + path, params=params, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def query(self, expr: str) -> Results:
        """An instant query's series; a query Prometheus refuses fails the test."""
        body = self.get("/api/v1/query", query=expr)
        assert body.get("status") == "success", (expr, body)
        results: Results = body["data"]["result"]
        return results

    def wait_for(
        self, expr: str, done: Callable[[Results], bool], timeout_s: float = 60
    ) -> Results:
        """Query `expr` until `done(results)`, at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            results = self.query(expr)
            if done(results):
                return results
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"{expr}: still {results}"
            time.sleep(0.25)

    def wait_for_target(self, job: str, timeout_s: float = 60) -> dict[str, Any]:
        """Until `job`'s target has been scraped successfully (health "up")."""
        deadline = time.monotonic() + timeout_s
        while True:
            targets = self.get("/api/v1/targets")["data"]["activeTargets"]
            for target in targets:
                if target["labels"].get("job") == job and target["health"] == "up":
                    found: dict[str, Any] = target
                    return found
            assert time.monotonic() < deadline, f"{job} not up: {targets}"
            time.sleep(0.25)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/-/ready", timeout=5).status_code == 200:
                    return
            assert time.monotonic() < deadline, "prometheus did not get ready in time"
            time.sleep(0.1)


@contextlib.contextmanager
def prometheus_server(config: str) -> Iterator[Prometheus]:
    """Prometheus running `config` (YAML text), ready; stopped at the end."""
    executable = binary("prometheus")
    with tempfile.TemporaryDirectory(prefix="matte-prometheus-") as folder:
        config_file = Path(folder) / "prometheus.yml"
        config_file.write_text(config, encoding="utf-8")
        log = Path(folder) / "prometheus.log"
        port = free_port()
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={Path(folder) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", process, log)
        try:
            server._wait_ready()
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
