"""rembg's server fields, read the way its FastAPI app reads them.

rembg's `rembg s` declares `model`, `a`, `af`, `ab`, `ae`, `om` and `ppm` as form
fields on `POST /api/remove` (query parameters on `GET`), and `bgc` and `extras` as
query parameters on both. FastAPI (pydantic 2) validates them before rembg's code
runs, so a client sees its rules:

- An empty form field is "not sent" (its default applies); an empty query
  parameter is the empty string, and fails a bool, int or pattern check.
- A field sent twice: the last value counts.
- Booleans: 1/0, true/false, t/f, yes/no, y/n, on/off in any case; nothing around
  them (" true" is refused).
- Integers: surrounding whitespace, `_` between digits and a `.0` tail are
  forgiven ("0012.00" is 12); anything else is `int_parsing`.
- Every problem is reported at once, each as {"type", "loc", "msg", "input"}
  (plus "ctx" for bounds and patterns), in the order FastAPI checks them.

These readers reproduce that contract; the messages are pydantic's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import BadRequest, Unprocessable
from ..option_text import parse_color

# rembg's session names, in its own order (rembg/sessions/__init__.py). Its
# `model` field must match this pattern, unanchored, as pydantic's regex does.
MODELS = (
    "birefnet-general",
    "birefnet-general-lite",
    "birefnet-portrait",
    "birefnet-dis",
    "birefnet-hrsod",
    "birefnet-cod",
    "birefnet-massive",
    "isnet-anime",
    "dis_custom",
    "isnet-general-use",
    "sam",
    "silueta",
    "u2net_cloth_seg",
    "u2net_custom",
    "u2net_human_seg",
    "u2net",
    "u2netp",
    "bria-rmbg",
    "ben_custom",
)
MODEL_PATTERN = "(" + "|".join(MODELS) + ")"
SERVED_MODEL = "isnet-general-use"
# The option fields, in the order rembg declares them (and FastAPI reports them).
OPTION_NAMES = ("model", "a", "af", "ab", "ae", "om", "ppm")

_PATTERN = re.compile(MODEL_PATTERN)
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
# After stripping: digits, `_` only between digits, an optional all-zero fraction.
_INTEGER = re.compile(r"([+-]?)([0-9]+(?:_[0-9]+)*)(?:\.0+)?")
# Digits past this are beyond any bound here: compared as "huge", never converted
# (int() of thousands of digits is slow, and refused past 4,300).
_MAX_DIGITS = 18
_HUGE = 10**18  # 10 ** _MAX_DIGITS

Where = str  # "body" or "query": the first item of an error's `loc`
Detail = dict[str, object]


class FieldErrors(Unprocessable):
    """FastAPI's 422: every field that failed validation, each one entry of `detail`."""

    def __init__(self, details: list[Detail]) -> None:
        # The plain-text problems (for logs and tests); `details` is what is rendered.
        super().__init__([f"{detail['loc']}: {detail['msg']}" for detail in details])
        self.details = details


@dataclass(frozen=True)
class RembgFields:
    """One request's fields, validated; defaults are rembg's own."""

    model: str | None = None  # None: not sent
    a: bool = False  # alpha matting
    af: int = 240  # its foreground threshold
    ab: int = 10  # its background threshold
    ae: int = 10  # its erode size
    om: bool = False  # only the mask
    ppm: bool = False  # post-process the mask
    bgc: tuple[int, ...] | None = None  # a background colour
    # rembg passes `extras` (JSON) to its other models' sessions (sam's prompt, ...);
    # IS-Net takes none, so it is kept only to say it was read.
    extras: str | None = None


@dataclass
class FieldReader:
    """Reads raw text values (None: not sent) and collects every problem in FastAPI's
    shape; `check` raises them together."""

    errors: list[Detail] = field(default_factory=list)

    def missing(self, where: Where, name: str) -> None:
        self._add("missing", where, name, "Field required", None)

    def boolean(self, where: Where, name: str, raw: str | None, default: bool) -> bool:
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        message = "Input should be a valid boolean, unable to interpret input"
        self._add("bool_parsing", where, name, message, raw)
        return default

    def integer(
        self, where: Where, name: str, raw: str | None, default: int, ge: int, le: int | None
    ) -> int:
        if raw is None:
            return default
        match = _INTEGER.fullmatch(raw.strip())
        if match is None:
            message = "Input should be a valid integer, unable to parse string as an integer"
            self._add("int_parsing", where, name, message, raw)
            return default
        sign, digits = match.group(1), match.group(2).replace("_", "").lstrip("0") or "0"
        huge = len(digits) > _MAX_DIGITS
        value = 0 if huge else int(digits)
        negative = sign == "-" and (huge or value != 0)
        if negative and (huge or -value < ge):
            message = f"Input should be greater than or equal to {ge}"
            self._add("greater_than_equal", where, name, message, raw, {"ge": ge})
            return default
        if le is not None and not negative and (huge or value > le):
            message = f"Input should be less than or equal to {le}"
            self._add("less_than_equal", where, name, message, raw, {"le": le})
            return default
        if huge:
            return _HUGE  # only an unbounded field gets here; its caller clamps
        return -value if negative else value

    def model(self, where: Where, raw: str | None) -> str | None:
        if raw is None:
            return None
        if _PATTERN.search(raw) is None:
            message = f"String should match pattern '{MODEL_PATTERN}'"
            self._add(
                "string_pattern_mismatch", where, "model", message, raw, {"pattern": MODEL_PATTERN}
            )
        return raw

    def colour(self, where: Where, name: str, raw: str | None) -> tuple[int, ...] | None:
        """rembg reads `bgc` as "r,g,b,a"; colour names and hex are accepted too. rembg
        answers 500 for text it cannot split into integers: here it is a 422."""
        if not raw:
            return None  # rembg: `if bgc` (empty means none)
        try:
            return parse_color(name, raw)
        except BadRequest as error:
            self._add("value_error", where, name, f"Value error, {error.messages[0]}", raw)
            return None

    def value_error(self, where: Where, name: str, message: str, raw: object) -> None:
        self._add("value_error", where, name, f"Value error, {message}", raw)

    def check(self) -> None:
        if self.errors:
            raise FieldErrors(self.errors)

    def _add(
        self,
        kind: str,
        where: Where,
        name: str,
        message: str,
        raw: object,
        ctx: Mapping[str, object] | None = None,
    ) -> None:
        detail: Detail = {"type": kind, "loc": [where, name], "msg": message, "input": raw}
        if ctx is not None:
            detail["ctx"] = dict(ctx)
        self.errors.append(detail)


def read_fields(
    reader: FieldReader,
    where: Where,
    values: Mapping[str, str],
    query: Mapping[str, str],
) -> RembgFields:
    """The option fields from `values` (the form when `where` is "body", else the
    query), then `bgc` and `extras` from the query. `reader` collects the problems;
    the caller checks it once its own fields are read too."""
    form = where == "body"

    def raw(name: str) -> str | None:
        value = values.get(name)
        # FastAPI: an empty form field is not sent; an empty query parameter is "".
        return None if value is None or (form and value == "") else value

    # FastAPI checks a dependency's query parameters before its form fields, and
    # rembg declares bgc after the option fields: so bgc first on POST, last on GET.
    bgc = reader.colour("query", "bgc", query.get("bgc")) if form else None
    model = reader.model(where, raw("model"))
    a = reader.boolean(where, "a", raw("a"), False)
    af = reader.integer(where, "af", raw("af"), 240, 0, 255)
    ab = reader.integer(where, "ab", raw("ab"), 10, 0, 255)
    ae = reader.integer(where, "ae", raw("ae"), 10, 0, None)
    om = reader.boolean(where, "om", raw("om"), False)
    ppm = reader.boolean(where, "ppm", raw("ppm"), False)
    if not form:
        bgc = reader.colour("query", "bgc", query.get("bgc"))
    return RembgFields(model, a, af, ab, ae, om, ppm, bgc, query.get("extras"))
