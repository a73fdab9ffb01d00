"""CSS-style colour parsing for letterbox and background colours."""

from __future__ import annotations

import pytest
from PIL import ImageColor

from server.colours import TRANSPARENT, parse_colour


@pytest.mark.parametrize(
    ("text", "rgba"),
    [
        ("red", (255, 0, 0, 255)),
        ("RebeccaPurple", (102, 51, 153, 255)),
        ("  white ", (255, 255, 255, 255)),
        ("transparent", TRANSPARENT),
        ("TRANSPARENT", TRANSPARENT),
        ("#f80", (255, 136, 0, 255)),
        ("#f808", (255, 136, 0, 136)),
        ("#12ab9F", (0x12, 0xAB, 0x9F, 255)),
        ("#12ab9f80", (0x12, 0xAB, 0x9F, 0x80)),
    ],
)
def test_names_hex_and_transparent(text: str, rgba: tuple[int, int, int, int]) -> None:
    assert parse_colour(text) == rgba


@pytest.mark.parametrize(
    "text",
    [
        "",
        "#",
        "#12",
        "#12345",
        "#1234567",
        "#123456789",
        "#ggg",
        "blu",
        "red ish",
        "rgb(1,2,3)",
        "f80",
        "##f80",
        "#-12",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    assert parse_colour(text) is None


def test_a_name_pillow_has_already_resolved_still_parses() -> None:
    # ImageColor.getrgb caches a name's tuple in the shared colormap: after it ran
    # (anywhere in the process), the entry is no longer hex text.
    ImageColor.getrgb("teal")
    assert parse_colour("teal") == (0, 128, 128, 255)
