"""Two real `python -m server serve` processes sharing one Redis (MATTE_REDIS_URL): one
key's budget is theirs together. No model is needed: the key and the limit are checked
before readiness, so each request counts even while the answer is 503."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import httpx

from tests.conftest import AUTH, PATH
from tests.matte_process import free_port, spawn, wait_until

START_TIMEOUT_S = 120


def test_two_replicas_share_one_keys_budget(redis_url: str, tmp_path: Path) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            data_dir = tempfile.mkdtemp(prefix="matte-data-", dir=tmp_path)
            env = {
                "MATTE_DATA_DIR": data_dir,
                "MATTE_REDIS_URL": redis_url,
                # No model: the load fails at once and model routes answer 503,
                # after the key and the limit are checked.
                "MATTE_MODEL_PATH": str(tmp_path / "no-model.onnx"),
                "MATTE_LOG_LEVEL": "error",
            }
            processes.append(spawn(env, port))
            urls.append(f"http://127.0.0.1:{port}")
        for process, url in zip(processes, urls, strict=True):
            wait_until(process, f"{url}/healthz", timeout_s=START_TIMEOUT_S)
        with httpx.Client(headers=AUTH, timeout=30) as client:
            # Alternated, so each replica alone sees only 75 of the 150.
            statuses = [client.post(urls[n % 2] + PATH).status_code for n in range(150)]
            assert statuses == [503] * 150
            refused = client.post(urls[0] + PATH)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "60"
            assert refused.json()["name"] == "rate_limit_exceeded"
            # The lock-out is shared too.
            assert client.post(urls[1] + PATH).status_code == 429
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
