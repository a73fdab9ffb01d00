"""deploy/matte.service: runs `python -m server serve` as its own user, stops within
the drain's deadline, hardened; and systemd itself reads it without a complaint
where `systemd-analyze` is installed (skipped elsewhere: it is not a service the
tests need)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.settings import Settings
from server.shutdown import GRACE_S
from tests.conftest import ROOT

UNIT = ROOT / "deploy" / "matte.service"
PYTHON = "/opt/matte/.venv/bin/python"


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections, each key with all its values in order (systemd lets
    a key repeat: Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"outside a section: {line}"
        key, equals, value = line.partition("=")
        assert equals, f"not a key=value line: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """systemd's time spans as the unit uses them: `45`, `45s`, `2min`, `1min 30s`."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse(UNIT.read_text(encoding="utf-8"))["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    [value] = service[key]
    return value


def test_the_unit_runs_matte_as_its_own_user(service: dict[str, list[str]]) -> None:
    assert one(service, "ExecStart") == f"{PYTHON} -m server serve"
    assert one(service, "User") == "matte" and one(service, "Group") == "matte"
    assert one(service, "EnvironmentFile") == "/etc/matte/env"
    assert one(service, "Restart") == "on-failure"
    # The defaults come before the file, which may override them.
    environment = dict(item.split("=", 1) for item in service["Environment"])
    assert environment["MATTE_LOG_FORMAT"] == "json"
    assert environment["MATTE_CACHE_DIR"] == "/var/cache/matte"
    assert one(service, "CacheDirectory") == "matte" and one(service, "StateDirectory") == "matte"


def test_the_unit_stops_after_the_drain_has_had_its_time(service: dict[str, list[str]]) -> None:
    assert one(service, "KillSignal") == "SIGTERM"
    # SIGTERM starts the drain (MATTE_SHUTDOWN_TIMEOUT_S), then uvicorn's grace:
    # systemd's SIGKILL must come after both.
    drain_s = Settings().shutdown_timeout_s + GRACE_S
    assert seconds(one(service, "TimeoutStopSec")) > drain_s


def test_the_unit_is_hardened(service: dict[str, list[str]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
    }
    assert {key: one(service, key) for key in expected} == expected
    assert set(one(service, "RestrictAddressFamilies").split()) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
    }


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with an interpreter that exists here (systemd checks ExecStart's)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(PYTHON) == 1
    path = tmp_path / "matte.service"
    path.write_text(text.replace(PYTHON, sys.executable), encoding="utf-8")
    return path


def test_systemd_reads_the_unit_without_a_warning(runnable_unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 even for a setting it ignores; it says so on stderr.
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr


def test_systemd_rates_the_unit_well_exposed(runnable_unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 and "offline" in done.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit offline")
    found = re.search(r"Overall exposure level for matte\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    # systemd's scale: 0 (safe) to 10 (unsafe); a service with no hardening rates 9.6.
    assert float(found.group(1)) <= 3.0, done.stdout
