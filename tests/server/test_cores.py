"""Splitting one image's work across cores: results in order, errors not lost."""

from __future__ import annotations

import threading

import pytest

from server import cores


def test_both_returns_each_result_in_its_place() -> None:
    assert cores.both(lambda: "first", lambda: 2) == ("first", 2)


def test_both_runs_the_second_on_another_thread_when_there_are_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cores, "cores", lambda: 2)
    caller = threading.get_ident()
    first, second = cores.both(threading.get_ident, threading.get_ident)
    assert first == caller and second != caller


def test_both_stays_on_the_calling_thread_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "cores", lambda: 1)
    caller = threading.get_ident()
    assert cores.both(threading.get_ident, threading.get_ident) == (caller, caller)


def test_an_error_in_the_second_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "cores", lambda: 2)

    def fails() -> int:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        cores.both(lambda: 1, fails)
