"""The PostgreSQL fixture itself: without the binaries, a skip locally, a failure in CI."""

from __future__ import annotations

import pytest

import tests.postgres_server as fixture


def outcome_without_binaries(monkeypatch: pytest.MonkeyPatch) -> BaseException:
    monkeypatch.setattr(fixture, "_binaries", lambda: None)
    # BaseException: pytest's skip and fail outcomes are not Exceptions.
    with pytest.raises(BaseException) as raised, fixture.postgres_cluster():
        pass
    return raised.value


def test_missing_binaries_skip_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("REQUIRE_SERVICES", raising=False)
    outcome = outcome_without_binaries(monkeypatch)
    assert isinstance(outcome, pytest.skip.Exception)
    assert "postgresql" in str(outcome)


def test_missing_binaries_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    outcome = outcome_without_binaries(monkeypatch)
    assert isinstance(outcome, pytest.fail.Exception)
    assert "postgresql" in str(outcome)


def test_missing_binaries_fail_under_make_test(monkeypatch: pytest.MonkeyPatch) -> None:
    # `make test` installs PostgreSQL and says so: a missing server is then a failure.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("REQUIRE_SERVICES", "1")
    outcome = outcome_without_binaries(monkeypatch)
    assert isinstance(outcome, pytest.fail.Exception)
