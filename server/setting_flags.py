"""The command line's setting flags: one for each MATTE_* variable `Settings.from_env` reads.

They are made from what from_env reads (an Environment that notes each name, its
kind and its default), not from a list kept by hand, so a new setting gets its flag
without an edit here. A flag given on the command line replaces its variable in the
mapping handed to from_env, so it is parsed, checked and reported exactly as the
variable would be.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import Environment
from .settings import Settings

PREFIX = "MATTE_"


@dataclass(frozen=True)
class SettingFlag:
    variable: str  # MATTE_PORT
    kind: str  # text, list, integer, number, boolean, choice, url
    accepts: str  # "an integer from 1 to 65535", for the help
    default: str | None  # as the help shows it; None: unset

    @property
    def flag(self) -> str:
        return "--" + self.variable.removeprefix(PREFIX).lower().replace("_", "-")

    @property
    def dest(self) -> str:
        return "setting_" + self.variable.removeprefix(PREFIX).lower()

    @property
    def metavar(self) -> str:
        if self.kind == "choice":
            return "{" + self.accepts.removeprefix("one of ").replace(", ", ",") + "}"
        if self.kind in ("integer", "number"):
            return "N"
        return {"a path": "PATH", "a comma-separated list": "LIST"}.get(
            self.accepts, "URL" if self.kind == "url" else "TEXT"
        )

    @property
    def help(self) -> str:
        default = self.default if self.default is not None else "unset"
        # argparse formats help with %: a literal one must be doubled.
        return f"{self.variable}: {self.accepts} (default: {default})".replace("%", "%%")


class _Recording(Environment):
    """An Environment over nothing that notes every variable asked for, in order."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.read: dict[str, SettingFlag] = {}

    def _note(self, name: str, kind: str, accepts: str, default: str | None) -> None:
        # The typed readers call text() themselves: the first, most specific note
        # stays, except that a plain text note gives way to a typed one (precision
        # reads the text before it asks choice()).
        known = self.read.get(name)
        if known is None or known.kind == "text":
            self.read[name] = SettingFlag(name, kind, accepts, default)

    def text(self, name: str) -> str:
        kind = "a path" if name.endswith(("_DIR", "_PATH", "_FILE", "_HOME")) else "text"
        self._note(name, "text", kind, None)
        return super().text(name)

    def csv(self, name: str) -> list[str]:
        self._note(name, "list", "a comma-separated list", None)
        return super().csv(name)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        self._note(name, "integer", f"an integer from {low} to {high}", str(default))
        return super().integer(name, default, low, high)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        accepts = f"a number from {_number(low)} to {_number(high)}"
        self._note(name, "number", accepts, _number(default))
        return super().number(name, default, low, high)

    def boolean(self, name: str, default: bool) -> bool:
        self._note(name, "boolean", "true or false", "true" if default else "false")
        return super().boolean(name, default)

    def base_url(self, name: str) -> str | None:
        self._note(name, "url", "an http(s) URL", None)
        return super().base_url(name)

    def database_url(self, name: str) -> str | None:
        self._note(name, "url", "a postgresql:// URL", None)
        return super().database_url(name)

    def redis_url(self, name: str) -> str | None:
        self._note(name, "url", "a redis://, rediss:// or unix:// URL", None)
        return super().redis_url(name)

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> Any:
        self._note(name, "choice", "one of " + ", ".join(options), default)
        return super().choice(name, default, options)


def _number(value: float) -> str:
    # 86400.0 -> "86400", 0.01 -> "0.01": whole numbers without a point or an exponent.
    return str(int(value)) if float(value).is_integer() else repr(value)


def setting_flags() -> list[SettingFlag]:
    """Every MATTE_* variable from_env reads, in its order, with its default."""
    recorder: _Recording | None = None

    def recording(env: Mapping[str, str]) -> _Recording:
        nonlocal recorder
        recorder = _Recording(env)
        return recorder

    # An empty mapping: what from_env reads when nothing is set, so the notes carry
    # the defaults (and no keys file is opened).
    defaults = Settings.from_env({}, reader_type=recording)
    assert recorder is not None
    # In the order of Settings' fields (host and port first, as the README's table);
    # a variable without a field of its own (MATTE_API_KEYS_FILE) follows the one
    # read before it.
    order = {field.name: index for index, field in enumerate(dataclasses.fields(Settings))}
    flags: list[tuple[float, SettingFlag]] = []
    place = -1.0
    for name, noted in recorder.read.items():
        if not name.startswith(PREFIX):
            continue  # XDG_DATA_HOME: the platform's, not Matte's
        field = name.removeprefix(PREFIX).lower()
        place = order[field] if field in order else place + 0.001
        default = noted.default
        if default is None:
            default = _shown(getattr(defaults, field, None))
        flags.append((place, SettingFlag(name, noted.kind, noted.accepts, default)))
    return [flag for _, flag in sorted(flags, key=lambda item: item[0])]


def _shown(value: object) -> str | None:
    """A Settings default in the help: paths under the home folder as ~/..., none as unset."""
    if value is None or value in ((), frozenset()):
        return None
    if isinstance(value, Path):
        home = Path.home()
        return "~/" + str(value.relative_to(home)) if value.is_relative_to(home) else str(value)
    if isinstance(value, tuple | frozenset):
        return ",".join(sorted(str(item) for item in value))
    return str(value)


def add_setting_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flags: Iterable[SettingFlag]
) -> None:
    for flag in flags:
        if flag.kind == "boolean":
            # --outbound-enabled / --no-outbound-enabled; absent: the variable decides.
            parser.add_argument(
                flag.flag, dest=flag.dest, action=argparse.BooleanOptionalAction, help=flag.help
            )
        else:
            parser.add_argument(flag.flag, dest=flag.dest, metavar=flag.metavar, help=flag.help)


def environment_with(
    args: argparse.Namespace, flags: Iterable[SettingFlag], env: Mapping[str, str]
) -> dict[str, str]:
    """`env` with each flag given on the command line in place of its variable."""
    merged = dict(env)
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if isinstance(value, bool):
            merged[flag.variable] = "true" if value else "false"
        elif value is not None:
            merged[flag.variable] = str(value)
    return merged
