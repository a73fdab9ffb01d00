"""The app's lifecycle and its own routes: loading, a failed load, shutdown, /readyz,
/metrics, and the error handlers every route shares."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from server.app import create_app
from server.scheduler import SchedulerStopped
from server.settings import Settings
from tests.conftest import ID, KEY, PATH, assert_error, jpeg, post, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, post_scope

NOT_LOADED = "server: the model is not loaded yet, please retry shortly"
GENERIC = "An unexpected server error has occurred, please try again later."


class GatedEngine(BrightnessEngine):
    """Holds its first run (the lifespan's warm-up) until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.warming = threading.Event()
        self.release = threading.Event()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.warming.set()
        # Bounded, so a failing test cannot leave the thread (and the run) hanging.
        if not self.release.wait(timeout=30):
            raise RuntimeError("the test never released the warm-up")
        return super().run(batch)


class FailingEngine(BrightnessEngine):
    """Fails its warm-up, so the load fails."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret: the warm-up failed at 0xdeadbeef")


def wait_until_not_loading(client: TestClient, timeout_s: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get("/readyz").json()
        if body["status"] != "loading":
            return body
        time.sleep(0.01)
    raise AssertionError("the load never finished")


# --- loading ----------------------------------------------------------------------------


def test_model_routes_answer_503_while_the_model_loads(settings: Settings) -> None:
    engine = GatedEngine()
    app = create_app(settings, engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        try:
            assert engine.warming.wait(timeout=30)
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "loading",
                "provider": None,
                "engine": None,
                "precision": None,
                "model_file": None,
                "warm_up_s": None,
            }
            # The process is alive meanwhile.
            health = client.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            response = post(client, jpeg())
            assert_error(response, 503, "service_unavailable", NOT_LOADED)
            assert response.headers["retry-after"] == "5"
            # Keys are still checked first: a wrong one learns nothing about the server.
            unauthorized = client.post(PATH, files={"image": ("a.jpg", jpeg(), "image/jpeg")})
            assert unauthorized.status_code == 401
        finally:
            engine.release.set()
        wait_ready(client)
        assert post(client, jpeg()).status_code == 200


def test_readyz_once_ready_names_the_engine_and_its_warm_up(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "provider", "engine", "precision", "model_file", "warm_up_s"}
    assert (body["status"], body["provider"], body["model_file"]) == ("ready", "fake", "brightness")
    assert (body["engine"], body["precision"]) == ("fake", "fp32")
    warm_up_s = body["warm_up_s"]
    assert isinstance(warm_up_s, float) and 0 <= warm_up_s < 30
    assert round(warm_up_s, 3) == warm_up_s  # milliseconds, not float noise


class PathEngine(BrightnessEngine):
    model_file = "/srv/secret/layout/cpu-fp32.onnx"
    engine = "openvino"
    precision = "bf16"


def test_readyz_and_metrics_show_the_files_name_not_its_path(settings: Settings) -> None:
    # Where the host keeps its files is nobody's business but the operator's (the log says).
    with TestClient(create_app(settings, engine=PathEngine())) as client:
        wait_ready(client)
        body = client.get("/readyz").json()
        assert body["model_file"] == "cpu-fp32.onnx"
        assert (body["engine"], body["precision"]) == ("openvino", "bf16")
        text = client.get("/metrics").text
        assert "/srv/secret" not in text and "/srv/secret" not in str(body)
        assert (
            'matte_model_info{engine="openvino",model_file="cpu-fp32.onnx",'
            'precision="bf16",provider="fake"} 1.0'
        ) in text


def test_a_failed_warm_up_marks_readyz_failed(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, engine=FailingEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        body = wait_until_not_loading(client)
        assert body == {
            "status": "failed",
            "provider": None,
            "engine": None,
            "precision": None,
            "model_file": None,
            "warm_up_s": None,
        }
        assert client.get("/readyz").status_code == 503
        response = post(client, jpeg())
        assert_error(response, 503, "service_unavailable", NOT_LOADED)
        assert response.headers["retry-after"] == "5"
        assert client.get("/healthz").status_code == 200
        assert "matte_model_info{" not in client.get("/metrics").text
    assert app.state.services.pipeline is None
    failures = [r for r in caplog.records if "the model failed to load" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None and "0xdeadbeef" in str(failures[0].exc_info[1])


def test_a_missing_model_file_marks_readyz_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No engine given: the app loads the ONNX file the settings name, which is not there.
    settings = Settings(cache_dir=tmp_path, provider="cpu", api_keys=frozenset({KEY}))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert wait_until_not_loading(client)["status"] == "failed"
        assert_error(post(client, jpeg()), 503, "service_unavailable", NOT_LOADED)
    causes = [str(r.exc_info[1]) for r in caplog.records if r.exc_info is not None]
    assert any("not found: run `make model`" in cause for cause in causes)


# --- shutdown -----------------------------------------------------------------------------


def test_requests_after_the_scheduler_stopped_are_503_shutting_down(
    client: TestClient, app: Starlette
) -> None:
    assert client.portal is not None
    client.portal.call(app.state.services.pipeline.scheduler.stop)
    response = post(client, jpeg())
    assert_error(
        response, 503, "service_unavailable", "server: shutting down, please retry shortly"
    )
    assert response.headers["retry-after"] == "1"


def test_leaving_the_lifespan_stops_the_scheduler(settings: Settings) -> None:
    app = create_app(settings, engine=BrightnessEngine())
    with TestClient(app) as client:
        wait_ready(client)
        pipeline = app.state.services.pipeline
    assert app.state.services.readiness.state == "stopping"
    scheduler = pipeline.scheduler
    # Stopped: no model threads left, and a prediction is refused at once. (The waits are
    # bounded so that a scheduler left running fails this test instead of hanging it.)
    with pytest.raises(RuntimeError, match=r"^scheduler is not started$"):
        asyncio.run(asyncio.wait_for(scheduler.run_bounded(lambda: None), timeout=5))
    with pytest.raises(SchedulerStopped):
        image = np.zeros((1024, 1024, 3), dtype=np.uint8)
        asyncio.run(asyncio.wait_for(scheduler.predict(image), timeout=5))


# --- /metrics -----------------------------------------------------------------------------


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE matte_requests_total counter" in response.text


# --- the shared error handlers ----------------------------------------------------------


async def boom(request: Request) -> Response:
    raise ValueError("secret internal detail: the database password is hunter2")


async def teapot(request: Request) -> Response:
    raise HTTPException(418, "teapot: short and stout")


@pytest.fixture
def app_with_extra_routes(app: Starlette) -> Starlette:
    app.router.routes.append(Route("/boom", boom))
    app.router.routes.append(Route("/teapot", teapot))
    return app


def test_a_500_never_shows_the_exception_and_carries_the_request_id(
    app_with_extra_routes: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(app_with_extra_routes, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = client.get("/boom")
        assert_error(response, 500, "internal_error", GENERIC)
        assert "hunter2" not in response.text and "ValueError" not in response.text
        assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"
        # The cause is in the log, under the id the client was given.
        request_id = response.json()["id"]
        logged = [r for r in caplog.records if request_id in r.getMessage()]
        assert logged and logged[0].exc_info is not None
        assert "hunter2" in str(logged[0].exc_info[1])
        assert client.get("/healthz").status_code == 200


def test_a_500_from_the_model_route(settings: Settings) -> None:
    with TestClient(
        create_app(settings, engine=BrokenEngine()), raise_server_exceptions=False
    ) as client:
        wait_ready(client)
        response = post(client, jpeg())
    assert_error(response, 500, "internal_error", GENERIC)
    assert "deadbeef" not in response.text


def test_other_http_errors_keep_their_status_in_the_error_shape(
    app_with_extra_routes: Starlette,
) -> None:
    with TestClient(app_with_extra_routes, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = client.get("/teapot")
    assert response.status_code == 418
    body = response.json()
    assert set(body) == {"id", "name", "errors"}
    assert body["errors"] == ["teapot: short and stout"]
    assert ID.fullmatch(body["id"]) and response.headers["x-request-id"] == body["id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nothing"), ("POST", "/nothing"), ("GET", "/healthz/more"), ("GET", PATH + "/x")],
)
def test_unknown_routes_are_404_in_the_dialect_shape(
    client: TestClient, method: str, path: str
) -> None:
    assert_error(client.request(method, path), 404, "not_found", "route: not found")


def test_405_on_the_apps_own_routes_names_the_allowed_methods(client: TestClient) -> None:
    response = client.post("/readyz")
    assert_error(response, 405, "method_not_allowed", "method: not allowed on this route")
    # Starlette adds HEAD to GET routes; it lists the set in no fixed order.
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def disconnecting_upload(client: TestClient, path: str, content_type: str) -> list[Message]:
    """Send half a body to `path` on the running app, then disconnect, as a client
    closing its connection mid-upload does; the messages the app sent back."""
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b"--b\r\nContent-Disposition: form-da", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = post_scope(
        path,
        [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"x-api-key", KEY.encode()),
            (b"content-type", content_type.encode()),
        ],
        client=("127.0.0.1", 5000),
        server=("testserver", 80),
    )
    scope["state"] = {}
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        (PATH, "multipart/form-data; boundary=b"),
        ("/v1/images/upload", "multipart/form-data; boundary=b"),
        ("/api/v1/images/generations", "application/json"),
    ],
)
def test_a_client_gone_mid_upload_is_a_499_and_one_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture, path: str, content_type: str
) -> None:
    caplog.set_level(logging.INFO, logger="matte")
    sent = disconnecting_upload(client, path, content_type)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
    text = client.get("/metrics").text
    assert f'matte_requests_total{{route="{path}",status="499"}} 1.0' in text
    assert f'route="{path}",status="500"' not in text
    records = [record for record in caplog.records if "disconnected" in record.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None
    assert not any(record.exc_info for record in caplog.records)
    # And the server goes on serving.
    assert post(client, jpeg()).status_code == 200
