"""Typed reading of the environment for `Settings.from_env`, the one caller: each
error names the variable (and never echoes a secret such as a password or a key)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .key_limits import KeyLimits, parse_keys_file

if TYPE_CHECKING:
    from .settings import Precision


class SettingsError(ValueError):
    """An environment variable holds a value Matte cannot use."""


def read_keys_file(path: Path) -> dict[str, KeyLimits]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"MATTE_API_KEYS_FILE: cannot read {path}: {exc.strerror}") from exc
    # One key a line, optionally with its own limits; blank lines and `#` comments
    # let operators annotate keys. Errors name the line, never a key.
    try:
        return parse_keys_file(text)
    except ValueError as exc:
        raise SettingsError(f"MATTE_API_KEYS_FILE: {exc}") from None


class Environment:
    """Typed access to the environment with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str:
        return self._env.get(name, "").strip()

    def csv(self, name: str) -> list[str]:
        return [item.strip() for item in self.text(name).split(",") if item.strip()]

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}: must be true or false, got {raw!r}")

    def base_url(self, name: str) -> str | None:
        """An http(s) URL with a host and no query or fragment, without its trailing slash."""
        raw = self.text(name)
        if not raw:
            return None
        parts = urlsplit(raw)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.query
            or parts.fragment
        ):
            raise SettingsError(
                f"{name}: must be an http(s) URL like https://matte.example.com, got {raw!r}"
            )
        return raw.rstrip("/")

    def database_url(self, name: str) -> str | None:
        """A libpq URL (postgresql:// or postgres://); its password is never echoed."""
        raw = self.text(name)
        if not raw:
            return None
        if urlsplit(raw).scheme not in ("postgresql", "postgres"):
            raise SettingsError(f"{name}: must be a postgresql:// URL")
        return raw

    def redis_url(self, name: str) -> str | None:
        """A redis://, rediss:// or unix:// URL; its password is never echoed."""
        raw = self.text(name)
        if not raw:
            return None
        if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError(f"{name}: must be a redis://, rediss:// or unix:// URL")
        return raw

    def precision(self, name: str, default: Precision) -> Precision:
        # "full", the name before bf16 existed, is fp32.
        raw = self.text(name).lower()
        if raw == "full":
            return "fp32"
        value: Precision = self.choice(name, default, ("auto", "fp32", "bf16", "int8"))
        return value

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> Any:
        # Any: the caller's field is a Literal of exactly these options.
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw not in options:
            raise SettingsError(f"{name}: must be one of {', '.join(options)}, got {raw!r}")
        return raw
