"""Reading a transform's JSON body: every bad field is collected, not just the first.

Each reader returns a value of the field's type even when the field is bad (a
placeholder), so parsers stay simple; `check()` then raises with every problem at once.
JSON rules: `null` is "not sent", booleans are never numbers, strings are never numbers,
and an integer may arrive as a float with no fraction (JavaScript cannot tell 5 from 5.0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

from .colours import COLOUR_HELP, RGBA, parse_colour
from .errors import Unprocessable

T = TypeVar("T")


class Fields:
    """One JSON object's fields; children (list items) share the parent's problem list."""

    def __init__(self, body: Mapping[str, object], prefix: str = "") -> None:
        self.body = body
        self.prefix = prefix
        self.problems: list[str] = []
        self._failed: set[str] = set()

    def child(self, body: Mapping[str, object], prefix: str) -> Fields:
        child = Fields(body, prefix)
        child.problems, child._failed = self.problems, self._failed
        return child

    def label(self, key: str) -> str:
        return self.prefix + key

    def add(self, key: str, problem: str) -> None:
        self.problems.append(f"{self.label(key)}: {problem}")
        self._failed.add(self.label(key))

    def given(self, key: str) -> bool:
        return self.body.get(key) is not None

    def valid(self, key: str) -> bool:
        """Sent, and read without a problem."""
        return self.given(key) and self.label(key) not in self._failed

    def check(self) -> None:
        if self.problems:
            raise Unprocessable(self.problems)

    # --- integers -------------------------------------------------------------------------

    def optional_int(self, key: str, low: int | None = None, high: int | None = None) -> int | None:
        value = self.body.get(key)
        if value is None:
            return None
        number = _as_int(value)
        if (
            number is None
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            self.add(key, int_range(low, high))
            return None
        return number

    def required_int(self, key: str, low: int = 0, high: int | None = None) -> int:
        if not self.given(key):
            self.add(key, "is required")
            return low
        number = self.optional_int(key, low, high)
        return low if number is None else number

    # --- numbers ----------------------------------------------------------------------------

    def optional_number(
        self, key: str, low: float | None = None, high: float | None = None
    ) -> float | None:
        value = self.body.get(key)
        if value is None:
            return None
        number = _as_number(value)
        if (
            number is None
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            self.add(key, _number_range(low, high))
            return None
        return number

    def required_number(
        self, key: str, low: float | None = None, high: float | None = None
    ) -> float:
        if not self.given(key):
            self.add(key, "is required")
            return 0.0 if low is None else low
        number = self.optional_number(key, low, high)
        if number is None:
            return 0.0 if low is None else low
        return number

    # --- strings ----------------------------------------------------------------------------

    def optional_choice(
        self, key: str, options: Mapping[str, T], shown: Sequence[str] | None = None
    ) -> T | None:
        """`options` maps each accepted spelling (lower case) to its value; `shown` are the
        spellings the message lists (default: all of them)."""
        value = self.body.get(key)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower() in options:
            return options[value.strip().lower()]
        self.add(key, "must be one of " + ", ".join(shown or options))
        return None

    def required_choice(
        self, key: str, options: Mapping[str, T], shown: Sequence[str] | None = None
    ) -> T:
        placeholder = next(iter(options.values()))
        if not self.given(key):
            self.add(key, "is required")
            return placeholder
        choice = self.optional_choice(key, options, shown)
        return placeholder if choice is None else choice

    def optional_colour(self, key: str) -> RGBA | None:
        value = self.body.get(key)
        if value is None:
            return None
        colour = parse_colour(value) if isinstance(value, str) else None
        if colour is None:
            self.add(key, "must be " + COLOUR_HELP)
        return colour

    def required_string(self, key: str) -> str:
        value = self.body.get(key)
        if value is None:
            self.add(key, "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.add(key, "must be a non-empty string")
            return ""
        return value.strip()


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Python's json module reads NaN and Infinity; the API's numbers are finite.
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def int_range(low: int | None, high: int | None) -> str:
    """How an integer field's rule is worded, here and in every JSON dialect."""
    if low is not None and high is not None:
        return f"must be an integer from {low} to {high}"
    if low is not None:
        return f"must be an integer of at least {low}"
    if high is not None:
        return f"must be an integer of at most {high}"
    return "must be an integer"


def _number_range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"must be a number from {low:g} to {high:g}"
    if low is not None:
        return f"must be a number of at least {low:g}"
    if high is not None:
        return f"must be a number of at most {high:g}"
    return "must be a number"
