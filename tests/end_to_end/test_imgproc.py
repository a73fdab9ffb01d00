"""The IMG Processing dialect through real HTTP: the real model's cut-out, a whole
session against a real uvicorn process, 50 uploads at once, and a server killed
with SIGKILL in the middle of uploads that restarts with nothing lost or half there."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.app import create_app
from tests.conftest import FIXTURES, KEY, PATH, model_settings, wait_ready
from tests.matte_process import free_port, matte_server, spawn, wait_until

pytestmark = pytest.mark.model

AUTH = {"x-api-key": KEY}
CAR = FIXTURES / "car-1.jpg"


def decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image)


def distinct_png(index: int, side: int = 256) -> bytes:
    """A PNG no other index produces (noise, so it does not compress to nothing)."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def upload(client: httpx.Client, data: bytes, name: str) -> httpx.Response:
    return client.post(
        "/v1/images/upload",
        headers=AUTH,
        files={"image": ("photo", data, "application/octet-stream")},
        data={"name": name},
    )


def every_image(client: httpx.Client) -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = []
    url: str | None = "/v1/images?take=100"
    while url is not None:
        response = client.get(url, headers=AUTH)
        assert response.status_code == 200, response.text
        images += response.json()["data"]
        url = response.json()["links"]["next"]
    return images


def test_the_cutout_is_the_stability_endpoints(tmp_path: Path) -> None:
    photo = CAR.read_bytes()
    with TestClient(create_app(model_settings(data_dir=tmp_path))) as client:
        wait_ready(client, timeout_s=300)
        source = upload(client, photo, "car")
        assert source.status_code == 201, source.text
        response = client.post(
            f"/v1/images/{source.json()['id']}/remove-background", headers=AUTH, json={}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        cutout = client.get(f"/v1/images/{body['id']}/download", headers=AUTH).content
        stability = client.post(
            PATH,
            headers={"authorization": f"Bearer {KEY}", "accept": "image/*"},
            files={"image": ("car.jpg", photo, "image/jpeg")},
        )
    assert stability.status_code == 200
    ours, theirs = decoded(cutout), decoded(stability.content)
    assert ours.shape == theirs.shape and ours.shape[2] == 4
    np.testing.assert_array_equal(ours[:, :, 3], theirs[:, :, 3])
    assert (body["width"], body["height"]) == (ours.shape[1], ours.shape[0])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with matte_server() as url:
        yield url


def test_a_session_through_a_real_server(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        source = upload(client, CAR.read_bytes(), "car")
        assert source.status_code == 201 and source.headers["x-image-processing-usage"] == "1"
        image_id = source.json()["id"]
        cut = client.post(f"/v1/images/{image_id}/remove-background", headers=AUTH, json={})
        assert cut.status_code == 201 and cut.headers["x-image-processing-usage"] == "2"
        cutout_id = cut.json()["id"]
        published = client.post(f"/v1/images/{cutout_id}/publish", headers=AUTH).json()
        public = httpx.get(published["url"])
        assert public.status_code == 200 and public.headers["content-type"] == "image/png"
        alpha = decoded(public.content)[:, :, 3]
        assert alpha.min() == 0 and alpha.max() == 255
        resized = client.post(
            f"/v1/images/{cutout_id}/resize", headers=AUTH, json={"width": 200}
        ).json()
        assert resized["width"] == 200 and resized["format"] == "png"
        listed = [image["id"] for image in every_image(client)]
        assert listed[:3] == [resized["id"], cutout_id, image_id]
        assert client.delete(f"/v1/images/{cutout_id}", headers=AUTH).status_code == 204
        assert httpx.get(published["url"]).status_code == 404


def test_fifty_uploads_at_once_are_all_there(server: str) -> None:
    payloads = {f"c{index}": distinct_png(1000 + index, side=96) for index in range(50)}
    with httpx.Client(base_url=server, timeout=120) as client:
        before = {image["id"] for image in every_image(client)}
        answers: dict[str, httpx.Response] = {}

        def send(name: str) -> None:
            with httpx.Client(base_url=server, timeout=120) as own:
                answers[name] = upload(own, payloads[name], name)

        threads = [threading.Thread(target=send, args=(name,)) for name in payloads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert all(answer.status_code == 201 for answer in answers.values()), [
            answer.text for answer in answers.values() if answer.status_code != 201
        ]
        new = [image for image in every_image(client) if image["id"] not in before]
        assert sorted(image["name"] for image in new) == sorted(payloads)
        for image in new:
            data = client.get(f"/v1/images/{image['id']}/download", headers=AUTH).content
            assert data == payloads[image["name"]]


def test_sigkill_in_the_middle_of_uploads_loses_nothing_acknowledged() -> None:
    """Upload from eight threads and kill the server with SIGKILL while they run, three
    times over on the same data: after each restart every image acknowledged with 201
    is there and complete, every listed image reads back whole, and no temporary file
    is left behind."""
    with tempfile.TemporaryDirectory(prefix="matte-crash-") as data_dir:
        env = {"MATTE_DATA_DIR": data_dir}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        acknowledged: dict[str, bytes] = {}
        for round_ in range(CRASH_ROUNDS):
            process = spawn(env, port)
            try:
                wait_until(process, f"{url}/healthz")
                check_everything_is_whole(url, acknowledged)
                upload_until_killed(process, url, acknowledged, seed=round_ * 100_000)
            finally:
                _stop(process)
        process = spawn(env, port)
        try:
            wait_until(process, f"{url}/healthz")
            check_everything_is_whole(url, acknowledged)
        finally:
            _stop(process)
        assert list((Path(data_dir) / "blobs" / "tmp").glob("*")) == []


CRASH_ROUNDS = 3


def upload_until_killed(
    process: subprocess.Popen[bytes], url: str, acknowledged: dict[str, bytes], seed: int
) -> None:
    stop = threading.Event()
    lock = threading.Lock()
    before = len(acknowledged)

    def uploader(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for index in range(200):  # bounded; the kill comes much sooner
                if stop.is_set():
                    return
                data = distinct_png(seed + worker * 1000 + index)
                try:
                    response = upload(client, data, f"w{worker}-{index}")
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged[response.json()["id"]] = data

    threads = [threading.Thread(target=uploader, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < before + 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acknowledged) >= before + 20, "uploads did not get going"
    os.kill(process.pid, signal.SIGKILL)  # eight uploads are in flight now
    process.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)


def check_everything_is_whole(url: str, acknowledged: dict[str, bytes]) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        listed = every_image(client)
        assert set(acknowledged) <= {image["id"] for image in listed}
        for image in listed:
            data = client.get(f"/v1/images/{image['id']}/download", headers=AUTH)
            assert data.status_code == 200, f"{image['id']} is listed but unreadable"
            assert len(data.content) == image["size"]
            assert decoded(data.content).shape == (256, 256, 3)
            if image["id"] in acknowledged:
                assert data.content == acknowledged[image["id"]]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)
