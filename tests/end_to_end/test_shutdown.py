"""SIGTERM to a real `python -m server serve` on the real model, with requests in flight:
every accepted request still gets its cut-out, new connections are refused, and the
process exits 0."""

from __future__ import annotations

import io
import re
import signal
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import KEY, PATH, fixture_photos
from tests.matte_process import free_port, spawn, wait_until

pytestmark = pytest.mark.model


def in_server(url: str) -> float:
    """Requests past the door: uploading, in line or in the pipeline."""
    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for name in ("matte_requests_waiting", "matte_images_in_flight"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, name
        total += float(match.group(1))
    return total


def cut_out(url: str, photo: Path) -> httpx.Response:
    return httpx.post(
        f"{url}{PATH}",
        headers={"authorization": KEY},
        files={"image": (photo.name, photo.read_bytes())},
        timeout=180,
    )


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_the_requests_in_flight_then_exits_0() -> None:
    photos = fixture_photos()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="matte-data-") as data_dir:
        # A deadline well past what four photos take on a busy 2-core machine.
        env = {"MATTE_DATA_DIR": data_dir, "MATTE_SHUTDOWN_TIMEOUT_S": "150"}
        process = spawn(env, port)
        try:
            wait_until(process, f"{url}/readyz")
            with ThreadPoolExecutor(len(photos)) as pool:
                replies = [pool.submit(cut_out, url, photo) for photo in photos]
                deadline = time.monotonic() + 60
                while in_server(url) < len(photos):
                    assert time.monotonic() < deadline, "the requests never all got in"
                    time.sleep(0.05)
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                # Two slots on a CPU: at least two photos are still waiting now.
                assert not all(reply.done() for reply in replies)
                while not refused(port):
                    assert time.monotonic() - signalled < 10, "still accepting connections"
                    time.sleep(0.05)
                answers = [reply.result() for reply in replies]
            for photo, answer in zip(photos, answers, strict=True):
                assert answer.status_code == 200, answer.text
                assert answer.headers["content-type"] == "image/png"
                cutout = Image.open(io.BytesIO(answer.content))
                assert cutout.format == "PNG" and cutout.mode == "RGBA"
                with Image.open(photo) as original:
                    assert cutout.size == original.size
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
