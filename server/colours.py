"""CSS-style colours as the IMG Processing API takes them: names, hex and `transparent`."""

from __future__ import annotations

import re

from PIL import ImageColor

RGBA = tuple[int, int, int, int]

TRANSPARENT: RGBA = (0, 0, 0, 0)
WHITE: RGBA = (255, 255, 255, 255)

# CSS hex forms: #rgb, #rgba, #rrggbb, #rrggbbaa.
_HEX = re.compile(r"#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})")

COLOUR_HELP = "a css colour name, a #rgb, #rrggbb or #rrggbbaa hex colour, or transparent"


def parse_colour(text: str) -> RGBA | None:
    """The RGBA of a colour name, hex code or `transparent`; None when it is none of them."""
    value = text.strip().lower()
    if value == "transparent":
        return TRANSPARENT
    if not value.startswith("#"):
        # Pillow's map is the CSS Color Module Level 4 named colours (147 plus
        # rebeccapurple). Its values start as hex text, but ImageColor.getrgb
        # replaces an entry with its tuple once any code asks for that name.
        named = ImageColor.colormap.get(value)
        if isinstance(named, tuple):
            return (*named[:3], 255)
        if not isinstance(named, str):
            return None
        value = named
    if not _HEX.fullmatch(value):
        return None
    digits = value[1:]
    if len(digits) <= 4:
        digits = "".join(digit * 2 for digit in digits)
    if len(digits) == 6:
        digits += "ff"
    red, green, blue, alpha = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
    return red, green, blue, alpha
