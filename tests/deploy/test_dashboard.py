"""deploy/grafana/matte-dashboard.json: the panels issue 14 asks for, PromQL over
metrics Matte exports (and nothing else), valid as promtool parses it."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from server.metrics import Metrics
from tests.deploy import dashboard
from tests.prometheus_server import binary

# Each panel the issue lists, and the metric its queries must select.
REQUIRED = {
    "Requests/s by dialect": "matte_requests_total",
    "Stage latency p50": "matte_stage_seconds_bucket",
    "Stage latency p95": "matte_stage_seconds_bucket",
    "Stage latency p99": "matte_stage_seconds_bucket",
    "Images in flight": "matte_images_in_flight",
    "Queue depth": "matte_requests_waiting",
    "429s and 503s": "matte_requests_total",
    "Model run time": "matte_model_run_seconds_bucket",
    "Batch size": "matte_batch_size_count",
}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard.load()


def by_title(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in dashboard.panels(board)}


def selected(panel: dict[str, Any]) -> set[str]:
    return set().union(*(dashboard.metric_names(t["expr"]) for t in panel["targets"]))


def test_every_panel_the_issue_lists_is_there(board: dict[str, Any]) -> None:
    panels = by_title(board)
    for title, metric in REQUIRED.items():
        assert title in panels, f"no panel {title!r}"
        assert metric in selected(panels[title]), (title, selected(panels[title]))
    # Requests by dialect: the counter joined to the route's owner, summed by dialect.
    [dialects] = panels["Requests/s by dialect"]["targets"]
    assert "sum by (dialect)" in dialects["expr"] and "matte_route_info" in dialects["expr"]
    # Latency by stage at the three quantiles, one line per stage.
    for quantile, title in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
        [target] = panels[f"Stage latency {title}"]["targets"]
        assert target["expr"].startswith(f"histogram_quantile({quantile}, sum by (le, stage) (")
        assert target["legendFormat"] == "{{stage}}"
    refusals = " ".join(t["expr"] for t in panels["429s and 503s"]["targets"])
    assert 'status=~"429|503"' in refusals


def test_every_expression_selects_only_what_matte_exports(board: dict[str, Any]) -> None:
    # The registry the app owns: its collectors say which sample names a scrape can see.
    exported = dashboard.exported_samples(Metrics().registry)
    used: set[str] = set()
    for expr in dashboard.expressions(board):
        names = dashboard.metric_names(expr)
        assert names, f"selects no metric: {expr}"
        unknown = names - set(exported)
        assert not unknown, f"{expr}: not exported by Matte: {sorted(unknown)}"
        used |= names
    # Each family the dashboard reads, by its exported sample (x_bucket is histogram x's).
    families = {exported[name] for name in used}
    assert {"matte_requests", "matte_stage_seconds", "matte_model_run_seconds"} <= families


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("matte_images_in_flight", {"matte_images_in_flight"}),
        (
            "histogram_quantile(0.95, sum by (le, stage)"
            ' (rate(matte_stage_seconds_bucket{a="b(c)"}[5m])))',
            {"matte_stage_seconds_bucket"},
        ),
        (
            "sum by (dialect) (rate(x_total[1m]) * on (job, route) group_left (dialect) y_info)",
            {"x_total", "y_info"},
        ),
        ("sum(rate(a_v2_sum[1m])) / sum(rate(a_v2_count[1m])) > 1e3", {"a_v2_sum", "a_v2_count"}),
        ("up offset 5m and on (instance) matte_model_info", {"up", "matte_model_info"}),
        ("label_values(matte_model_info, instance)", {"matte_model_info"}),
    ],
)
def test_metric_names_finds_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert dashboard.metric_names(expr) == names


def test_a_misspelt_metric_would_be_caught() -> None:
    exported = set(dashboard.exported_samples(Metrics().registry))
    # A histogram's own name is not a sample; nor is a counter without _total.
    assert "matte_stage_seconds" not in exported and "matte_requests" not in exported
    assert dashboard.metric_names("rate(matte_stage_second_bucket[1m])") - exported


def test_panels_are_well_formed(board: dict[str, Any]) -> None:
    ids = Counter(panel["id"] for panel in board["panels"])
    assert all(count == 1 for count in ids.values()), ids
    names = [variable["name"] for variable in board["templating"]["list"]]
    assert names == ["datasource", "instance"]
    for panel in dashboard.panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        # Every query follows the instance picker.
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], target["expr"]


def test_promtool_parses_every_expression(board: dict[str, Any], tmp_path: Path) -> None:
    promtool = binary("promtool")
    # Grafana's label_values() is not PromQL; the rest is, once its variables are in.
    exprs = [e for e in dashboard.expressions(board) if not e.startswith("label_values(")]
    rules = ["groups:", "  - name: matte-dashboard", "    rules:"]
    for number, expr in enumerate(exprs):
        # A JSON string is a YAML double-quoted scalar.
        rules.append(f"      - record: dashboard:expr_{number}")
        rules.append(f"        expr: {json.dumps(dashboard.concrete(expr))}")
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(rules) + "\n", encoding="utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
