"""A real PostgreSQL for the tests: Debian's binaries, a throwaway cluster in a
temporary folder, listening on a free loopback port, stopped and removed at the end.

Without the binaries the tests that need it are skipped, except under `make test`
(which installs PostgreSQL first and sets REQUIRE_SERVICES=1) and in CI (CI=true),
where they fail: those runs must include them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest

START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 90  # a bound on each pg_ctl/initdb call (pg_ctl's own wait is shorter)
SERVICE_USER = "postgres"  # PostgreSQL refuses to run as root


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _binaries() -> Path | None:
    """The newest installed server's bin folder (/usr/lib/postgresql/<major>/bin)."""
    found = [
        folder
        for folder in Path("/usr/lib/postgresql").glob("*/bin")
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file()
    ]
    return max(found, key=lambda folder: int(folder.parent.name), default=None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _user_exists() -> bool:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    return True


def _unavailable(reason: str) -> NoReturn:
    message = f"postgresql is needed for these tests: {reason}"
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (CI runs them: install postgresql)", pytrace=False)
    pytest.skip(message)


def _as_service_user() -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--"] if os.geteuid() == 0 else []


def _run(command: list[str]) -> None:
    completed = subprocess.run(
        [*_as_service_user(), *command],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {completed.stdout}{completed.stderr}")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """Start a cluster, yield where it listens, stop and remove it."""
    binaries = _binaries()
    if binaries is None:
        _unavailable("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _user_exists()):
        _unavailable(f"running as root needs runuser and the {SERVICE_USER!r} OS user")
    folder = Path(tempfile.mkdtemp(prefix="matte-postgres-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (folder, sockets):
            shutil.chown(path, SERVICE_USER, SERVICE_USER)
    port = _free_port()
    started = False
    try:
        _run(
            [
                str(binaries / "initdb"),
                f"--pgdata={data}",
                f"--username={SERVICE_USER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        # Durability is not under test here; skipping fsync keeps a 2-core machine fast.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            [
                str(binaries / "pg_ctl"),
                "start",
                f"--pgdata={data}",
                f"--log={folder / 'server.log'}",
                f"--options={options}",
                "--wait",
                f"--timeout={START_TIMEOUT_S}",
            ]
        )
        started = True
        yield PostgresServer("127.0.0.1", port, SERVICE_USER)
    finally:
        if started:
            _run([str(binaries / "pg_ctl"), "stop", f"--pgdata={data}", "--mode=fast", "--wait"])
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: PostgresServer, name: str) -> Iterator[str]:
    """A new empty database; yields its URL and drops it afterwards."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with postgres_cluster() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, for one test."""
    with fresh_database(postgres_server, f"matte_{os.urandom(6).hex()}") as url:
        yield url
