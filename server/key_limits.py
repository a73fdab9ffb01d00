"""The keys file: one key a line, each with optional limits of its own.

    # comments and blank lines are allowed
    sk-partner-1   rate=300/10s  concurrency=4
    sk-batch-job   concurrency=1
    sk-plain

`rate=<requests>/<window>` (the window in s, m or h: `300/10s`, `1000/1m`)
replaces the server's budget for that key; `concurrency=<n>` caps its requests
in progress at once in one process. Errors name the line, never the key: a line
that does not parse may hold a key in an unexpected place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = re.compile(r"([0-9]+)/([0-9]+(?:\.[0-9]+)?)([smh])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_WINDOW_S = 86_400.0  # as MATTE_RATE_LIMIT_WINDOW_S allows
MAX_REQUESTS = 10**9
MAX_CONCURRENCY = 100_000


@dataclass(frozen=True)
class Rate:
    requests: int
    window_s: float


@dataclass(frozen=True)
class KeyLimits:
    """None: the server's default (the rate) or no cap (concurrency)."""

    rate: Rate | None = None
    concurrency: int | None = None


def parse_keys_file(text: str) -> dict[str, KeyLimits]:
    """Every key in `text` with its limits. ValueError names the line at fault."""
    keys: dict[str, KeyLimits] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, *options = stripped.split()
        if key in first_line:
            raise ValueError(f"line {number}: the key on it is already on line {first_line[key]}")
        first_line[key] = number
        keys[key] = _limits(options, number)
    return keys


def _limits(options: list[str], number: int) -> KeyLimits:
    rate: Rate | None = None
    concurrency: int | None = None
    for option in options:
        name, _, value = option.partition("=")
        # Only the option's name is ever echoed, and only a known one: an
        # unknown word may be a second key pasted onto the line.
        if name == "rate" and rate is None:
            rate = _rate(value, number)
        elif name == "concurrency" and concurrency is None:
            concurrency = _concurrency(value, number)
        elif name in ("rate", "concurrency"):
            raise ValueError(f"line {number}: {name} is given twice")
        else:
            raise ValueError(
                f"line {number}: after the key only rate=<requests>/<seconds>s and "
                "concurrency=<n> may follow, separated by spaces"
            )
    return KeyLimits(rate, concurrency)


def _rate(value: str, number: int) -> Rate:
    match = _RATE.fullmatch(value)
    problem = f"line {number}: rate must be <requests>/<window> like 300/10s (s, m or h)"
    if match is None:
        raise ValueError(problem)
    requests = int(match[1])
    window_s = float(match[2]) * _UNIT_S[match[3]]
    if not 1 <= requests <= MAX_REQUESTS or not 0.001 <= window_s <= MAX_WINDOW_S:
        raise ValueError(
            f"{problem}, with 1 to {MAX_REQUESTS} requests in 0.001 s to {MAX_WINDOW_S:g} s"
        )
    return Rate(requests, window_s)


def _concurrency(value: str, number: int) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_CONCURRENCY:
        raise ValueError(
            f"line {number}: concurrency must be a whole number from 1 to {MAX_CONCURRENCY}"
        )
    return int(value)
