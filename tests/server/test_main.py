"""The command line (`python -m server`): arguments, settings errors, warm-up; no real server."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette

import server.__main__ as cli
from server import allocator, matting
from server.connection import HttpConnection
from server.settings import Settings
from server.shutdown import GRACE_S, DrainingServer
from tests.conftest import ROOT


class Recorder:
    """Stands in for a function: notes each call's arguments, returns `result`."""

    def __init__(self, result: object = None) -> None:
        self.calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
        self.result = result

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append((args, kwargs))
        return self.result


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(0)
    monkeypatch.setattr(cli, "_serve", recorder)
    return recorder


@pytest.fixture
def warm_up(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(matting, "warm_up", recorder)
    return recorder


@pytest.fixture(autouse=True)
def numba_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NUMBA_CACHE_DIR to start with; the one main() sets is undone after the test
    (setenv first, so monkeypatch restores the caller's value or removes it)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", "unset")
    monkeypatch.delenv("NUMBA_CACHE_DIR")


@pytest.mark.parametrize("argv", [["serve"], []], ids=["serve", "no-command"])
def test_serve_runs_with_the_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, serve: Recorder, warm_up: Recorder, argv: list[str]
) -> None:
    monkeypatch.setenv("MATTE_PORT", "8123")
    monkeypatch.setenv("MATTE_API_KEYS", "sk-a, sk-b")
    assert cli.main(argv) == 0
    [(args, _)] = serve.calls
    settings = args[0]
    assert isinstance(settings, Settings)
    assert settings.port == 8123 and settings.api_keys == frozenset({"sk-a", "sk-b"})
    assert warm_up.calls == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MATTE_PORT", "abc", "MATTE_PORT: expected an integer, got 'abc'"),
        ("MATTE_PORT", "0", "MATTE_PORT: must be between 1 and 65535, got 0"),
        ("MATTE_PROVIDER", "tpu", "MATTE_PROVIDER: must be one of auto, cuda, cpu, got 'tpu'"),
        (
            "MATTE_API_KEYS_FILE",
            "/nonexistent/matte-keys",
            "MATTE_API_KEYS_FILE: cannot read /nonexistent/matte-keys: No such file or directory",
        ),
    ],
)
@pytest.mark.parametrize("command", ["serve", "warm-up"])
def test_a_bad_setting_is_reported_on_stderr_with_exit_status_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    serve: Recorder,
    warm_up: Recorder,
    command: str,
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert cli.main([command]) == 2
    out, err = capsys.readouterr()
    assert err == f"matte: {message}\n"
    assert out == ""
    assert serve.calls == [] and warm_up.calls == []


def test_an_unknown_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], serve: Recorder
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["bake"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: matte ")
    assert "invalid choice: 'bake'" in err
    assert serve.calls == []


def test_help_names_the_program_and_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: matte ")
    assert "serve" in out and "warm-up" in out


def test_warm_up_compiles_pymatting_into_the_cache_dir(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    serve: Recorder,
    warm_up: Recorder,
) -> None:
    monkeypatch.setenv("MATTE_CACHE_DIR", str(tmp_path))
    assert cli.main(["warm-up"]) == 0
    assert warm_up.calls == [((), {})]
    assert serve.calls == []
    # numba reads its cache location when first imported: main() sets it from the settings.
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba")
    out = capsys.readouterr().out
    pattern = rf"pymatting ready in \d+\.\ds \(numba cache: {re.escape(str(tmp_path))}/numba\)\n"
    assert re.fullmatch(pattern, out), out


def test_warm_up_keeps_a_numba_cache_dir_already_set(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    warm_up: Recorder,
) -> None:
    monkeypatch.setenv("MATTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cli.main(["warm-up"]) == 0
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "elsewhere")
    assert f"(numba cache: {tmp_path / 'elsewhere'})" in capsys.readouterr().out


def test_serve_configures_uvicorn_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[DrainingServer] = []
    monkeypatch.setattr(DrainingServer, "run", lambda self: ran.append(self))
    # Neither may touch the test process: malloc's settings, the root logger.
    tune = Recorder()
    monkeypatch.setattr(allocator, "tune", tune)
    basic_config = Recorder()
    monkeypatch.setattr(logging, "basicConfig", basic_config)
    monkeypatch.setenv("MATTE_HOST", "0.0.0.0")
    monkeypatch.setenv("MATTE_PORT", "8123")
    monkeypatch.setenv("MATTE_LOG_LEVEL", "warning")
    monkeypatch.setenv("MATTE_SHUTDOWN_TIMEOUT_S", "12")
    monkeypatch.setenv("MATTE_HEADER_TIMEOUT_S", "3.5")
    monkeypatch.setenv("MATTE_KEEP_ALIVE_TIMEOUT_S", "7")
    assert cli.main(["serve"]) == 0
    [server] = ran
    config = server.config
    assert isinstance(config.app, Starlette)
    assert server.services is config.app.state.services
    assert (config.host, config.port, config.log_level) == ("0.0.0.0", 8123, "warning")
    # The drain's own deadline first, uvicorn's (which cancels what is left) after it.
    assert server.deadline_s == 12
    assert config.timeout_graceful_shutdown == 12 + GRACE_S
    assert config.timeout_keep_alive == 7
    # h11 with Matte's rules, pinned whatever else is installed.
    assert isinstance(config.http, type) and issubclass(config.http, HttpConnection)
    assert config.http.header_timeout_s == 3.5
    assert config.loop == "asyncio"
    assert tune.calls == [((os.cpu_count() or 1,), {})]  # one heap per core
    [(_, options)] = basic_config.calls
    assert options["level"] == "WARNING"


def test_python_m_server_exits_with_mains_status() -> None:
    # The module's entry point, in a real process that stops at the settings (no server).
    env = {**os.environ, "MATTE_PORT": "70000"}
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == "matte: MATTE_PORT: must be between 1 and 65535, got 70000\n"
