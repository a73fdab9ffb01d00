"""Metrics' additions for the dashboards and the request log: which dialect owns each
route (matte_route_info), stage timings that also reach the request's line, and
the model's own run time."""

from __future__ import annotations

import pytest
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from server import request_log
from server.metrics import Metrics
from tests.conftest import PATH, jpeg, post


async def endpoint(request: object) -> Response:
    return Response()


def test_routes_are_named_after_their_dialect() -> None:
    metrics = Metrics()
    metrics.name_routes("omixa", [Route("/a", endpoint), Route("/b/{id}", endpoint)])
    metrics.name_routes("omixa", [Route("/a", endpoint, methods=["DELETE"])])  # same owner
    # Only routes with a path template of their own are named.
    metrics.name_routes("omixa", [Mount("/static", routes=[])])
    registry = metrics.registry
    assert registry.get_sample_value("matte_route_info", {"route": "/a", "dialect": "omixa"}) == 1
    assert registry.get_sample_value("matte_route_info", {"route": "/b/{id}", "dialect": "omixa"})
    assert metrics.dialect_of("/b/{id}") == "omixa"
    assert metrics.dialect_of("/healthz") is None and metrics.dialect_of("/static") is None


def test_a_route_cannot_belong_to_two_dialects() -> None:
    # The dashboards join on the route: two owners would match many-to-many.
    metrics = Metrics()
    metrics.name_routes("omixa", [Route("/a", endpoint)])
    with pytest.raises(ValueError, match="/a is served by both omixa and octoai"):
        metrics.name_routes("octoai", [Route("/a", endpoint)])


def test_the_app_names_every_dialect_route(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert f'matte_route_info{{dialect="stability",route="{PATH}"}} 1.0' in text
    assert 'matte_route_info{dialect="octoai",route="/background-removal"} 1.0' in text
    assert 'route="/healthz"' not in text.split("matte_route_info", 1)[1]


def test_a_stage_goes_to_the_histogram_and_the_request_trace() -> None:
    metrics = Metrics()
    with request_log.tracing("id") as trace:
        metrics.observe_stage("predict", 0.25)
        metrics.observe_stage("predict", 0.5)  # a stage run twice: both times count
        with metrics.stage("decode"):
            pass
    metrics.observe_stage("encode", 1.0)  # outside a request: the histogram only
    registry = metrics.registry
    assert registry.get_sample_value("matte_stage_seconds_count", {"stage": "predict"}) == 2
    assert registry.get_sample_value("matte_stage_seconds_sum", {"stage": "predict"}) == 0.75
    assert registry.get_sample_value("matte_stage_seconds_count", {"stage": "encode"}) == 1
    assert set(trace.stages_s) == {"predict", "decode"}
    assert trace.stages_s["predict"] == 0.75


def test_each_model_run_is_timed(client: TestClient) -> None:
    registry = client.app.state.services.metrics.registry  # type: ignore[attr-defined]
    before = registry.get_sample_value("matte_model_run_seconds_count") or 0
    assert post(client, jpeg()).status_code == 200
    assert post(client, jpeg()).status_code == 200
    # The warm-up runs the engine directly, not through the scheduler: not counted.
    assert registry.get_sample_value("matte_model_run_seconds_count") == before + 2
    assert registry.get_sample_value("matte_model_run_seconds_sum") >= 0
