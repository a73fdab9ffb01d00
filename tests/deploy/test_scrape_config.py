"""deploy/prometheus.yml: valid as promtool reads it, and scraping Matte's /metrics.
(tests/end_to_end/test_prometheus.py runs it against a real server.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.prometheus_server import SCRAPE_CONFIG, binary, scrape_config


def check_config(path: Path) -> str:
    done = subprocess.run(
        [binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_shipped_scrape_config_is_valid() -> None:
    assert "SUCCESS" in check_config(SCRAPE_CONFIG)
    text = SCRAPE_CONFIG.read_text(encoding="utf-8")
    assert "job_name: matte" in text and "metrics_path: /metrics" in text


def test_the_test_config_made_from_it_is_valid(tmp_path: Path) -> None:
    config = scrape_config("127.0.0.1:18000", interval_s=1)
    assert '"127.0.0.1:18000"' in config and "127.0.0.1:8000" not in config
    assert config.count("scrape_interval: 1s") == 2 and "scrape_timeout: 1s" in config
    path = tmp_path / "prometheus.yml"
    path.write_text(config, encoding="utf-8")
    assert "SUCCESS" in check_config(path)
