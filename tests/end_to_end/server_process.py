"""A real server (tests/matte_process.py) whose process the test can watch: its pid
(for /proc/<pid>/status) beside its URL, and its /metrics read as numbers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KEY, PATH
from tests.matte_process import running_server


@dataclass(frozen=True)
class Served:
    url: str
    pid: int

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """A sample of /metrics (0 when absent, as Prometheus counters start)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and dict(sample.labels) == dict(labels or {}):
                    return float(sample.value)
        return 0.0

    def cut_out(self, photo: bytes) -> httpx.Response:
        """One Stability request for `photo` (a JPEG) with the suite's key."""
        return httpx.post(
            self.url + PATH,
            headers={"authorization": f"Bearer {KEY}"},
            files={"image": ("photo.jpg", photo, "image/jpeg")},
            timeout=120,
        )


@contextlib.contextmanager
def served(env: Mapping[str, str]) -> Iterator[Served]:
    """Serve with `env` on top of the suite's settings, ready; stopped at the end."""
    with running_server(lambda url: env) as (url, process):
        yield Served(url, process.pid)
