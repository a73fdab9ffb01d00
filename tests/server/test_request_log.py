"""The request log (server/request_log.py, server/logs.py): one line per request, as
JSON or text, with the route's template, the status, the stage timings, the image's
size and the wait in line; never a key, a query string, a raw id or image bytes."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from server import request_log
from server.__main__ import uvicorn_config
from server.app import create_app
from server.logs import JsonFormatter, TextFormatter
from server.settings import Settings
from tests.conftest import AUTH, FIXTURES, KEY, PATH, ROOT, jpeg, post, wait_ready
from tests.fakes import BrokenEngine

STAGES = ["decode", "predict", "matte", "encode"]
ACCESS_FIELDS = {
    "request_id",
    "dialect",
    "method",
    "route",
    "status",
    "duration_ms",
    "stages",
    "queue_wait_ms",
    "image",
    "client",
}
SECRET = "sk-query-secret-5e1a"  # sent in query strings, never accepted as a key


class Captured:
    """Every record logged while installed, formatted as the server formats them
    (at emit time, in the thread that logged, as the server's handler does)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        # The test's own HTTP client logs each URL it sends: not the server's log.
        self.handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def entries(self) -> list[dict[str, Any]]:
        """Every line, each of which must be one JSON object."""
        return [json.loads(line) for line in self.text.splitlines()]

    def access(self) -> dict[str, dict[str, Any]]:
        """The access lines by request id; a second line for one id fails."""
        lines: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            if entry["logger"] == "matte.access":
                assert entry["request_id"] not in lines, entry
                lines[entry["request_id"]] = entry
        return lines


def capture(formatter: logging.Formatter) -> Iterator[Captured]:
    captured = Captured(formatter)
    root = logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)


@pytest.fixture
def json_log() -> Iterator[Captured]:
    yield from capture(JsonFormatter())


@pytest.fixture
def text_log() -> Iterator[Captured]:
    yield from capture(TextFormatter())


def request_id(response: Any) -> str:
    value: str = response.headers["x-request-id"]
    return value


def test_every_request_gets_one_json_line(client: TestClient, json_log: Captured) -> None:
    photo = jpeg(320, 240)
    done = post(client, photo)
    missing = post(client, None)
    unauthorized = post(client, photo, headers={"authorization": "Bearer sk-wrong"})
    octoai = client.post("/background-removal", headers=AUTH, json={})
    health = client.get("/healthz")
    unknown = client.get("/no/such/page")
    responses = [done, missing, unauthorized, octoai, health, unknown]
    assert [r.status_code for r in responses] == [200, 400, 401, 422, 200, 404]

    lines = json_log.access()
    assert set(lines) == {request_id(r) for r in responses}
    for entry in json_log.entries():
        assert {"ts", "level", "logger", "message"} <= set(entry), entry
        assert entry["ts"].endswith("Z")
    for line in lines.values():
        assert set(line) >= ACCESS_FIELDS, line
        assert line["level"] == "info" and line["client"] == "testclient"
        assert line["duration_ms"] >= 0

    line = lines[request_id(done)]
    assert (line["dialect"], line["method"], line["route"], line["status"]) == (
        "stability",
        "POST",
        PATH,
        200,
    )
    assert line["message"] == f"POST {PATH} 200 {line['duration_ms']:.1f} ms"
    assert list(line["stages"]) == STAGES
    assert all(line["stages"][stage] >= 0 for stage in STAGES)
    # (Each figure is rounded to 0.01 ms.)
    assert line["duration_ms"] >= sum(line["stages"].values()) - 0.05
    assert line["image"] == {"width": 320, "height": 240, "bytes_in": len(photo)}
    assert line["queue_wait_ms"] >= 0

    # Refused before the pipeline: no stage ran, no image was decoded.
    for refused, status in ((missing, 400), (unauthorized, 401)):
        line = lines[request_id(refused)]
        assert (line["status"], line["stages"], line["image"]) == (status, {}, None)
        assert line["queue_wait_ms"] is None
    assert (lines[request_id(octoai)]["dialect"], lines[request_id(octoai)]["status"]) == (
        "octoai",
        422,
    )
    # Matte's own routes and unmatched paths belong to no dialect.
    assert lines[request_id(health)]["route"] == "/healthz"
    assert lines[request_id(health)]["dialect"] is None
    assert (lines[request_id(unknown)]["route"], lines[request_id(unknown)]["status"]) == (
        "other",
        404,
    )
    assert "/no/such/page" not in json_log.text


def test_no_key_query_raw_id_or_image_reaches_the_log(
    client: TestClient, json_log: Captured
) -> None:
    photo = jpeg(200, 160)
    # The key in the Authorization header and a key-like secret in the query string.
    done = client.post(
        f"{PATH}?key={SECRET}&api_key={SECRET}",
        headers=AUTH,
        files={"image": ("photo.jpg", photo, "image/jpeg")},
    )
    assert done.status_code == 200
    # A key in a JSON body (ModelsLab), the image as base64 beside it.
    encoded = base64.b64encode(photo).decode()
    modelslab = client.post(
        f"/api/v6/image_editing/removebg_mask?token={SECRET}",
        json={"key": KEY, "image": encoded, "base64": True},
    )
    assert modelslab.status_code == 200, modelslab.text
    # An id in the path: the line says the route's template.
    missing_id = "image_" + "q" * 24
    stored = client.get(f"/v1/images/{missing_id}", headers={"x-api-key": KEY})
    assert stored.status_code == 404

    text = json_log.text
    assert KEY not in text and SECRET not in text
    assert missing_id not in text
    lines = json_log.access()
    assert lines[request_id(stored)]["route"] == "/v1/images/{id}"
    assert lines[request_id(stored)]["dialect"] == "imgproc"
    assert lines[request_id(modelslab)]["dialect"] == "modelslab"
    # No image bytes, raw or base64 (a fragment of either would be telling).
    assert encoded[100:140] not in text
    assert photo[200:240].decode("latin-1") not in text
    assert max(len(line) for line in text.splitlines()) < 1000


def test_a_500_has_its_line_with_the_id_the_client_saw(
    settings: Settings, json_log: Captured
) -> None:
    with TestClient(
        create_app(settings, engine=BrokenEngine()), raise_server_exceptions=False
    ) as client:
        wait_ready(client)
        failed = post(client, jpeg())
    assert failed.status_code == 500
    line = json_log.access()[request_id(failed)]
    assert (line["status"], line["route"], line["dialect"]) == (500, PATH, "stability")
    # Decoded, then the model failed: no later stage.
    assert list(line["stages"]) == ["decode"]
    # The cause is logged (never answered) as one JSON line with its traceback.
    [error] = [e for e in json_log.entries() if e["level"] == "error" and "exception" in e]
    assert request_id(failed) in error["message"]
    assert "RuntimeError: secret internal detail" in error["exception"]


def test_alpha_matting_on_a_model_thread_still_reaches_the_line(
    client: TestClient, json_log: Captured
) -> None:
    # Matting runs on the scheduler's own threads (not Starlette's pool): the
    # request's trace must follow it there.
    done = post(client, jpeg(), alpha_matting="true")
    assert done.status_code == 200
    assert list(json_log.access()[request_id(done)]["stages"]) == STAGES


def test_records_logged_inside_a_request_carry_its_id(json_log: Captured) -> None:
    log = logging.getLogger("matte.test")
    log.warning("before")
    with request_log.tracing("abc123"):
        log.warning("inside, with a\nnewline")
    first, inside = json_log.entries()
    assert "request_id" not in first
    assert inside["request_id"] == "abc123" and inside["message"] == "inside, with a\nnewline"
    assert len(json_log.text.splitlines()) == 2  # the newline stayed escaped


def test_the_text_format(client: TestClient, text_log: Captured) -> None:
    photo = jpeg(320, 240)
    done = client.post(
        f"{PATH}?key={SECRET}", headers=AUTH, files={"image": ("p.jpg", photo, "image/jpeg")}
    )
    assert done.status_code == 200
    [line] = [line for line in text_log.text.splitlines() if " matte.access: " in line]
    assert f" INFO matte.access: POST {PATH} 200 " in line
    assert f"request_id={request_id(done)} dialect=stability " in line
    for stage in STAGES:
        assert f" stages.{stage}=" in line
    assert f"image.width=320 image.height=240 image.bytes_in={len(photo)}" in line
    assert not line.lstrip().startswith("{")
    assert KEY not in text_log.text and SECRET not in text_log.text


@pytest.mark.parametrize(
    ("log_format", "first"),
    [("json", '{"ts": '), ("text", "")],
)
def test_configure_logging_formats_every_record(log_format: str, first: str) -> None:
    # In a process of its own: it sets up the root logger.
    script = (
        "import logging\n"
        "from server.logs import configure_logging\n"
        "from server.settings import Settings\n"
        f"configure_logging(Settings(log_format={log_format!r}, log_level='warning'))\n"
        "logging.getLogger('uvicorn.error').warning('from uvicorn')\n"
        "logging.getLogger('matte').info('below the level')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(first)
    if log_format == "json":
        entry = json.loads(line)
        assert (entry["level"], entry["logger"], entry["message"]) == (
            "warning",
            "uvicorn.error",
            "from uvicorn",
        )
    else:
        assert line.endswith(" WARNING uvicorn.error: from uvicorn")


def test_uvicorn_leaves_logging_to_matte(settings: Settings) -> None:
    config = uvicorn_config(settings, create_app(settings))
    # No dictConfig of its own (its errors reach Matte's handler), no access line.
    assert config.log_config is None
    assert config.access_log is False
    assert not logging.getLogger("uvicorn.access").hasHandlers()


@pytest.mark.model
def test_a_real_photo_logs_its_size_and_stages(
    model_client: TestClient, json_log: Captured
) -> None:
    path: Path = FIXTURES / "car-1.jpg"
    photo = path.read_bytes()
    done = post(model_client, photo)
    assert done.status_code == 200
    line = json_log.access()[request_id(done)]
    with Image.open(path) as image:
        width, height = image.size
    assert line["image"] == {"width": width, "height": height, "bytes_in": len(photo)}
    assert list(line["stages"]) == STAGES
    # The real model takes real time; every stage is measured.
    assert all(line["stages"][stage] > 0 for stage in STAGES)
    assert line["stages"]["predict"] > line["stages"]["encode"]
    assert line["duration_ms"] > sum(line["stages"].values())
