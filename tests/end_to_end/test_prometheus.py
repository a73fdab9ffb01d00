"""A real Prometheus scrapes a real Matte (the real model) with deploy/prometheus.yml,
and its HTTP API finds Matte's series with their labels; every expression of the
Grafana dashboard runs there. The same server's stderr is Matte's JSON log: one
access line per request, none from uvicorn, no key."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from PIL import Image

from tests.conftest import FIXTURES, KEY, PATH
from tests.deploy import dashboard
from tests.matte_process import running_server
from tests.prometheus_server import (
    Prometheus,
    Results,
    binary,
    prometheus_server,
    scrape_config,
)

pytestmark = pytest.mark.model

STAGES = {"decode", "predict", "matte", "encode"}
QUERY_SECRET = "sk-query-secret-9d2f"


def send(url: str, image: bytes, key: str | None = KEY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        url + PATH,
        # A key in the query string too: it must reach no log line.
        params={"key": QUERY_SECRET},
        headers=headers,
        files={"image": ("photo.jpg", image, "image/jpeg")},
        timeout=120,
    )


def pairs(results: Results, *labels: str) -> set[tuple[str, ...]]:
    return {tuple(result["metric"].get(label, "") for label in labels) for result in results}


def test_prometheus_scrapes_matte_and_the_dashboard_queries_work(
    capfd: pytest.CaptureFixture[str],
) -> None:
    binary("prometheus")  # before the model loads: skip (or fail) at once without it
    photo_path = FIXTURES / "car-1.jpg"
    photo = photo_path.read_bytes()
    with Image.open(photo_path) as opened:
        width, height = opened.size
    env = {"MATTE_LOG_LEVEL": "info", "MATTE_LOG_FORMAT": "json"}
    with running_server(lambda url: env) as (url, _):
        sent = {
            200: send(url, photo),
            400: send(url, b"this is not an image"),
            401: send(url, photo, key=None),
        }
        for status, response in sent.items():
            assert response.status_code == status, response.text
        target = url.removeprefix("http://")
        with prometheus_server(scrape_config(target)) as prometheus:
            up = prometheus.wait_for_target("matte")
            assert up["labels"]["instance"] == target
            assert up["scrapeUrl"] == f"{url}/metrics"
            check_series(prometheus)
            check_dashboard(prometheus)
    check_log(capfd.readouterr().err, sent, photo, (width, height))


def check_series(prometheus: Prometheus) -> None:
    query = prometheus.query
    # The request counter, by route and status.
    requests = prometheus.wait_for(
        'matte_requests_total{job="matte"}',
        lambda results: (
            {(PATH, "200"), (PATH, "400"), (PATH, "401")} <= pairs(results, "route", "status")
        ),
    )
    by_status = {
        result["metric"]["status"]: float(result["value"][1])
        for result in requests
        if result["metric"]["route"] == PATH
    }
    assert by_status == {"200": 1.0, "400": 1.0, "401": 1.0}
    # ... and by dialect, through matte_route_info (as the dashboard counts it).
    by_dialect = query(
        "sum by (dialect, status) (matte_requests_total"
        " * on (job, instance, route) group_left (dialect) matte_route_info)"
    )
    assert {("stability", "200"), ("stability", "400"), ("stability", "401")} <= pairs(
        by_dialect, "dialect", "status"
    )
    # /metrics itself (Prometheus's scrapes) belongs to no dialect.
    assert all(result["metric"].get("dialect") for result in by_dialect)
    # The stage histograms: a series per stage, decode for both images that got there.
    counts = {
        result["metric"]["stage"]: float(result["value"][1])
        for result in query('matte_stage_seconds_count{job="matte"}')
    }
    assert counts == {"decode": 2.0, "predict": 1.0, "matte": 1.0, "encode": 1.0}
    buckets = query('matte_stage_seconds_bucket{job="matte", stage="predict"}')
    bounds = {result["metric"]["le"] for result in buckets}
    assert "+Inf" in bounds and len(bounds) > 5
    total = query('matte_stage_seconds_sum{job="matte", stage="predict"}')
    assert float(total[0]["value"][1]) > 0
    # One model run (the warm-up runs outside the scheduler), one image in it.
    assert float(query("matte_model_run_seconds_count")[0]["value"][1]) == 1.0
    assert float(query("matte_batch_size_sum")[0]["value"][1]) == 1.0
    model = query("matte_model_info")
    assert {"provider", "engine", "precision", "model_file"} <= set(model[0]["metric"])


def check_dashboard(prometheus: Prometheus) -> None:
    """Every dashboard expression is valid PromQL over series that exist."""
    # rate() needs two scrapes in its window.
    prometheus.wait_for("rate(matte_requests_total[1m])", bool)
    for expr in dashboard.expressions(dashboard.load()):
        if expr.startswith("label_values("):
            continue  # Grafana's own function, not PromQL (its metric is checked above)
        results = prometheus.query(dashboard.concrete(expr))
        # Only the 429/503 panel may be empty: none of those happened here.
        assert results or '"429|503"' in expr, expr
        for result in results:
            # Counters that never moved give 0, quantiles and means over no change NaN.
            value = float(result["value"][1])
            assert value >= 0 or math.isnan(value), (expr, result)


def check_log(
    stderr: str, sent: dict[int, httpx.Response], photo: bytes, size: tuple[int, int]
) -> None:
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert entries, stderr[-2000:]
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= set(entry), entry
    # uvicorn's own lines come through Matte's formatter; it writes no access line.
    assert any(entry["logger"] == "uvicorn.error" for entry in entries)
    assert not any(entry["logger"] == "uvicorn.access" for entry in entries)
    assert f"{PATH} HTTP/1.1" not in stderr  # uvicorn's access format
    model_route = [e for e in entries if e["logger"] == "matte.access" and e["route"] == PATH]
    assert len(model_route) == len(sent)
    lines = {entry["request_id"]: entry for entry in model_route}
    for status, response in sent.items():
        line = lines[response.headers["x-request-id"]]
        assert (line["status"], line["dialect"], line["method"]) == (status, "stability", "POST")
    done = lines[sent[200].headers["x-request-id"]]
    assert list(done["stages"]) == ["decode", "predict", "matte", "encode"]
    assert all(done["stages"][stage] > 0 for stage in STAGES)
    assert done["image"] == {"width": size[0], "height": size[1], "bytes_in": len(photo)}
    assert done["queue_wait_ms"] >= 0 and done["duration_ms"] > done["stages"]["predict"]
    # Prometheus's scrapes are requests too, each with its line.
    assert any(e.get("route") == "/metrics" for e in entries if e["logger"] == "matte.access")
    assert KEY not in stderr and QUERY_SECRET not in stderr
