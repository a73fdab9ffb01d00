"""The Hypothesis profile of the fuzz tests: repeatable in CI (the same examples on
every run, no example database left behind) and each example bounded in time."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import settings

PROFILE = "matte"
# Per example; the slowest fuzzed call (decoding a mutated 48 x 40 image) takes
# milliseconds, so only a hang or a blow-up comes near it.
DEADLINE = dt.timedelta(seconds=2)


def pytest_configure(config: pytest.Config) -> None:
    settings.register_profile(
        PROFILE, derandomize=True, database=None, deadline=DEADLINE, max_examples=100
    )
    settings.load_profile(PROFILE)
