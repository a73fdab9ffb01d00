"""key_limits.py and its settings: the keys file's syntax, and errors that name the
line but never a key; MATTE_REDIS_URL and MATTE_RATE_LIMIT_FAILURE."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.key_limits import KeyLimits, Rate, parse_keys_file
from server.settings import Settings, SettingsError

SECRET = "sk-Secret-Value-4f2a"


def test_keys_with_and_without_limits() -> None:
    text = (
        "# partners\n"
        f"{SECRET}   rate=300/10s   concurrency=4\n"
        "\n"
        "  sk-batch  concurrency=1  \n"
        "sk-minute rate=1000/1m\n"
        "sk-hour\trate=5/0.5h\n"
        "sk-plain\n"
        "   # an indented comment\n"
    )
    assert parse_keys_file(text) == {
        SECRET: KeyLimits(Rate(300, 10.0), 4),
        "sk-batch": KeyLimits(None, 1),
        "sk-minute": KeyLimits(Rate(1000, 60.0), None),
        "sk-hour": KeyLimits(Rate(5, 1800.0), None),
        "sk-plain": KeyLimits(),
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{SECRET} rate=300", "rate must be <requests>/<window> like 300/10s (s, m or h)"),
        (f"{SECRET} rate=300/10", "rate must be <requests>/<window> like 300/10s (s, m or h)"),
        (f"{SECRET} rate=x/10s", "rate must be <requests>/<window> like 300/10s (s, m or h)"),
        (f"{SECRET} rate=-1/10s", "rate must be <requests>/<window> like 300/10s (s, m or h)"),
        (
            f"{SECRET} rate=0/10s",
            "rate must be <requests>/<window> like 300/10s (s, m or h), "
            "with 1 to 1000000000 requests in 0.001 s to 86400 s",
        ),
        (
            f"{SECRET} rate=5/2d",
            "rate must be <requests>/<window> like 300/10s (s, m or h)",
        ),
        (
            f"{SECRET} rate=5/25h",
            "rate must be <requests>/<window> like 300/10s (s, m or h), "
            "with 1 to 1000000000 requests in 0.001 s to 86400 s",
        ),
        (f"{SECRET} concurrency=0", "concurrency must be a whole number from 1 to 100000"),
        (f"{SECRET} concurrency=2.5", "concurrency must be a whole number from 1 to 100000"),
        (f"{SECRET} concurrency=\u0662", "concurrency must be a whole number from 1 to 100000"),
        (f"{SECRET} concurrency=1 concurrency=2", "concurrency is given twice"),
        (f"{SECRET} rate=1/1s rate=2/1s", "rate is given twice"),
        (
            f"{SECRET} burst=3",
            "after the key only rate=<requests>/<seconds>s and concurrency=<n> may follow, "
            "separated by spaces",
        ),
        # Two keys pasted on one line: the second must not be echoed either.
        (
            f"sk-first {SECRET}",
            "after the key only rate=<requests>/<seconds>s and concurrency=<n> may follow, "
            "separated by spaces",
        ),
    ],
)
def test_a_bad_line_names_its_number_and_never_a_key(line: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_keys_file(f"# header\nsk-ok\n{line}\n")
    assert str(error.value) == f"line 3: {message}"
    assert "Secret" not in str(error.value) and "sk-" not in str(error.value)


def test_a_key_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError) as error:
        parse_keys_file(f"{SECRET}\nsk-other\n{SECRET} rate=5/1s\n")
    assert str(error.value) == "line 3: the key on it is already on line 1"


def test_the_settings_read_the_file_and_keep_only_keys_with_limits(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{SECRET} rate=300/10s concurrency=4\nsk-plain\n")
    settings = Settings.from_env({"MATTE_API_KEYS_FILE": str(keys), "MATTE_API_KEYS": "sk-env"})
    assert settings.api_keys == frozenset({SECRET, "sk-plain", "sk-env"})
    assert settings.key_limits == {SECRET: KeyLimits(Rate(300, 10.0), 4)}
    # No key in a Settings' repr (tracebacks, debug logs).
    assert "sk-" not in repr(settings)


def test_a_bad_keys_file_is_a_settings_error_naming_the_variable(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"sk-plain\n{SECRET} rate=lots\n")
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"MATTE_API_KEYS_FILE": str(keys)})
    assert str(error.value) == (
        "MATTE_API_KEYS_FILE: line 2: rate must be <requests>/<window> like 300/10s (s, m or h)"
    )
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_redis_url_and_failure_mode() -> None:
    defaults = Settings.from_env({})
    assert defaults.redis_url is None and defaults.rate_limit_failure == "open"
    chosen = Settings.from_env(
        {"MATTE_REDIS_URL": "redis://:hunter2@redis:6379/2", "MATTE_RATE_LIMIT_FAILURE": "Closed"}
    )
    assert chosen.redis_url == "redis://:hunter2@redis:6379/2"
    assert chosen.rate_limit_failure == "closed"
    assert "hunter2" not in repr(chosen)
    for url in ("rediss://r.example:6380", "unix:///run/redis.sock"):
        assert Settings.from_env({"MATTE_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "MATTE_REDIS_URL",
            "http://:hunter2@redis:6379",
            "MATTE_REDIS_URL: must be a redis://, rediss:// or unix:// URL",
        ),
        (
            "MATTE_RATE_LIMIT_FAILURE",
            "maybe",
            "MATTE_RATE_LIMIT_FAILURE: must be one of open, closed, got 'maybe'",
        ),
    ],
)
def test_bad_values_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({name: value})
    assert str(error.value) == message
