"""`matte serve`'s flags (server/setting_flags.py): one per MATTE_* setting, overriding the
environment, listed by --help with its variable and default; and a real `matte serve`."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import server.__main__ as cli
from server.setting_flags import add_setting_flags, environment_with, setting_flags
from server.settings import Settings
from tests.conftest import ROOT
from tests.matte_process import free_port, wait_until


def serve_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_every_variable_from_env_reads_has_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # The reference is settings.py's own text, not the recording that makes the flags:
    # a variable read some other way would be missing from the recording and fail here.
    source = (ROOT / "server" / "settings.py").read_text()
    variables = set(re.findall(r'"(MATTE_[A-Z0-9_]+)"', source))
    assert len(variables) > 40
    helped = set(re.findall(r"(MATTE_[A-Z0-9_]+): ", serve_help(capsys)))
    assert helped == variables
    assert {flag.variable for flag in setting_flags()} == variables


def test_help_shows_each_flag_with_its_variable_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = " ".join(serve_help(capsys).split())
    for expected in (
        "--port N MATTE_PORT: an integer from 1 to 65535 (default: 8000)",
        "--host TEXT MATTE_HOST: text (default: 127.0.0.1)",
        "--provider {auto,cuda,cpu} MATTE_PROVIDER: one of auto, cuda, cpu (default: auto)",
        "--model-timeout-s N MATTE_MODEL_TIMEOUT_S: a number from 0.01 to 86400 (default: 120)",
        "--cache-dir PATH MATTE_CACHE_DIR: a path (default: ~/.cache/matte)",
        "--api-keys LIST MATTE_API_KEYS: a comma-separated list (default: unset)",
        "--outbound-enabled, --no-outbound-enabled MATTE_OUTBOUND_ENABLED: true or false "
        "(default: false)",
        "--redis-url URL MATTE_REDIS_URL: a redis://, rediss:// or unix:// URL (default: unset)",
    ):
        assert expected in text


def flags_over(env: dict[str, str], *argv: str) -> Settings:
    flags = setting_flags()
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, flags)
    return Settings.from_env(environment_with(parser.parse_args(list(argv)), flags, env))


def test_flags_override_the_environment_and_the_rest_of_it_stays() -> None:
    env = {"MATTE_PORT": "9000", "MATTE_HOST": "0.0.0.0", "MATTE_OUTBOUND_ENABLED": "true"}
    settings = flags_over(env, "--port", "9100", "--no-outbound-enabled", "--workers", "3")
    assert (settings.port, settings.host, settings.outbound_enabled) == (9100, "0.0.0.0", False)
    assert settings.workers == 3
    untouched = flags_over(env)
    assert (untouched.port, untouched.host, untouched.outbound_enabled) == (9000, "0.0.0.0", True)
    assert flags_over({}, "--outbound-enabled").outbound_enabled is True
    assert flags_over(
        {}, "--cors-origins", "https://a.example, https://b.example"
    ).cors_origins == (
        "https://a.example",
        "https://b.example",
    )


def test_a_bad_flag_value_is_refused_as_its_variable_would_be(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[Settings] = []

    def serve(settings: Settings) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(cli, "_serve", serve)
    assert cli.main(["serve", "--port", "abc"]) == 2
    assert capsys.readouterr().err == "matte: MATTE_PORT: expected an integer, got 'abc'\n"
    assert served == []
    monkeypatch.setenv("MATTE_PORT", "abc")  # the flag replaces a bad variable too
    assert cli.main(["serve", "--port", "8123"]) == 0
    assert served[0].port == 8123


def matte_command() -> list[str]:
    """The installed `matte` entry point beside this Python (pip install -e puts it there)."""
    script = Path(sys.executable).with_name("matte")
    assert script.is_file(), f"{script} is missing: `make` installs the project with pip -e"
    return [str(script)]


def test_matte_serve_serves_on_the_port_and_host_its_flags_name(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        # Overridden by the flags: the process must listen where the flags say.
        "MATTE_PORT": str(free_port()),
        "MATTE_HOST": "127.0.0.2",
        "MATTE_LOG_LEVEL": "warning",
    }
    command = [
        *matte_command(),
        "serve",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(tmp_path / "data"),
        # No model to load: /healthz answers anyway, and /readyz shows the flag was used.
        "--model-path",
        str(tmp_path / "no-such-model.onnx"),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(process, f"{url}/healthz", timeout_s=60)
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        for _ in range(100):  # the load fails at once; at most 10 s
            ready = httpx.get(f"{url}/readyz")
            if ready.json()["status"] != "loading":
                break
            time.sleep(0.1)
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert (tmp_path / "data").is_dir()  # --data-dir: the storage opened there
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0  # SIGTERM: drained and exited cleanly


def test_the_entry_point_runs_remove_too() -> None:
    done = subprocess.run(
        [*matte_command(), "remove", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: matte remove ")
    assert "--alpha-matting-erode-size N" in done.stdout
