"""deploy/grafana/matte-dashboard.json read as data: its panels, their PromQL, and
the metric names that PromQL refers to (for test_dashboard.py and the Prometheus
end-to-end test, which runs every expression against a real Prometheus)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tests.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "matte-dashboard.json"

# The sample names each kind of metric family exposes (prometheus_client's
# text format): a histogram `x` is scraped as x_bucket, x_sum and x_count.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
}

# PromQL words that look like names but are not metrics.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}

# Grafana's variables, as Prometheus must see them once Grafana has put them in.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, rows' collapsed children included."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression: the panels' targets and the templating queries."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def concrete(expr: str) -> str:
    """`expr` with Grafana's variables replaced as Grafana would (for Prometheus)."""
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
# `by (le, stage)`, `on (route)`, `group_left (dialect)`: label names, not metrics.
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?", re.IGNORECASE)


def metric_names(expr: str) -> set[str]:
    """The metric (sample) names an expression selects, as written (`x_bucket`).

    Label matchers, ranges, quoted strings and label lists go first; what is left
    that is a name, not a number, not a keyword and not a function call (a name
    followed by `(`) is a metric. `label_values(metric, label)` names its metric
    as its first argument."""
    text = _STRING.sub('""', expr)
    values = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,.*\)\s*", text)
    if values:
        return {values.group(1)}
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function: rate(, sum(, histogram_quantile(
        if match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported_samples(registry: CollectorRegistry) -> dict[str, str]:
    """Every sample name `registry` can expose, to the family it belongs to."""
    samples = {}
    for family in registry.collect():
        for suffix in SUFFIXES[family.type]:
            samples[family.name + suffix] = family.name
    return samples
