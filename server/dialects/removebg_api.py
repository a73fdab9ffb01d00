"""remove.bg's routes as data, for /openapi.json and /docs: the value sets come from the
tables removebg_fields.py parses with, so the description cannot drift from them."""

from __future__ import annotations

from ..operations import (
    API_KEY_HEADER,
    BODY_ERRORS,
    JSON,
    MODEL_ERRORS,
    MULTIPART,
    SERVER_ERROR,
    Api,
    Body,
    ErrorShape,
    Field,
    Operation,
    Reply,
    Schema,
    boolean,
    choice,
    integer,
    obj,
    text,
    upload,
)
from ..option_text import COLOR_HELP, SIZE_PRESETS
from ..options import ALL_OUTPUT_FORMATS
from .removebg_fields import (
    CHANNELS,
    DEFAULT_SIZE,
    MAX_SHADOW_OPACITY,
    SHADOW_TYPES,
    TYPE_LEVELS,
    TYPES,
)

# remove.bg's own spellings of the values the parser compares in lower case.
_SPELLED = {"50mp": "50MP", "3d": "3D"}


def _spelled(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_SPELLED.get(value, value) for value in values)


FIELDS: tuple[Field, ...] = (
    upload(
        "image_file",
        "The photo: JPEG, PNG or WebP, under the same limits as every upload. Or instead "
        "`image_file_b64` or `image_url` (exactly one of the three).",
    ),
    Field(
        "image_file_b64",
        {"type": "string", "contentEncoding": "base64"},
        "The photo as base64 (or a `data:` URL), instead of `image_file`.",
    ),
    text(
        "image_url",
        "The photo's URL, fetched through the outbound guard (refused unless "
        "MATTE_OUTBOUND_ENABLED), instead of `image_file`.",
    ),
    choice(
        "size",
        _spelled(tuple(SIZE_PRESETS)),
        "The most pixels of the output, aspect kept: preview, small, regular 0.25 MP "
        "(0.25 credits); medium 1.5 MP, hd 4 MP; full, 4k, auto, 50MP the input's size.",
        DEFAULT_SIZE,
    ),
    choice(
        "type",
        TYPES,
        "Accepted and echoed in X-Type (auto reports other); the cut-out is the same.",
        "auto",
    ),
    choice(
        "type_level",
        TYPE_LEVELS,
        "X-Type: none leaves it out, 1 is coarse (car_interior and car_part report car).",
        "1",
    ),
    choice(
        "format",
        ALL_OUTPUT_FORMATS,
        "auto: PNG when anything is transparent, else JPG; zip: color.jpg and alpha.png.",
        "auto",
    ),
    text("roi", "Region of interest `x1 y1 x2 y2` (px or %); outside it is background."),
    boolean("crop", "Trim to the subject's box (plus crop_margin).", False),
    text(
        "crop_margin",
        "With crop: 1, 2 or 4 lengths (px or % of the subject), each side at most 50% "
        "of the subject and 500 px.",
    ),
    text("scale", "10%-100% of the canvas, or original; implies position=center."),
    text("position", "original, center, or one or two percentages (x, y) of the free space."),
    choice(
        "channels",
        CHANNELS,
        "alpha: the greyscale mask; rgba has its edge colours corrected.",
        "rgba",
    ),
    text("bg_color", f"A background colour: {COLOR_HELP}."),
    text("bg_image_url", "A background image's URL (through the outbound guard)."),
    upload("bg_image_file", "A background image, fitted to cover the output.", required=False),
    boolean("add_shadow", "Accepted and ignored: no shadow is drawn.", False),
    choice("shadow_type", _spelled(SHADOW_TYPES), "Accepted and ignored.", "none"),
    integer("shadow_opacity", "Accepted and ignored.", 0, MAX_SHADOW_OPACITY),
    boolean("semitransparency", "Accepted and ignored: the alpha is soft either way.", True),
)

_BINARY: Schema = {"type": "string", "format": "binary"}
_INT: Schema = {"type": "integer"}
HEADERS = {
    "x-width": "the result's width",
    "x-height": "the result's height",
    "x-credits-charged": "`0.25` for the preview sizes, else `1`",
    "x-type": "the type as sent (auto: `other`); absent with type_level=none",
    "x-foreground-top": "the subject's box in the result: its top",
    "x-foreground-left": "its left",
    "x-foreground-width": "its width",
    "x-foreground-height": "its height",
    "x-ratelimit-limit": "the key's requests per rate-limit window",
    "x-ratelimit-remaining": "what is left of them",
    "x-ratelimit-reset": "Unix time when the oldest one counted leaves the window",
}
SUCCESS = Reply(
    200,
    "The image itself; or, when Accept prefers application/json to any image, "
    '`{"data": {"result_b64", "foreground_*"}}`.',
    {
        "image/png": _BINARY,
        "image/jpeg": _BINARY,
        "image/webp": _BINARY,
        "application/zip": _BINARY,
        JSON: obj(
            {
                "data": obj(
                    {
                        "result_b64": {"type": "string", "contentEncoding": "base64"},
                        "foreground_top": _INT,
                        "foreground_left": _INT,
                        "foreground_width": _INT,
                        "foreground_height": _INT,
                    },
                    ["result_b64", "foreground_top", "foreground_left"],
                )
            },
            ["data"],
        ),
    },
    HEADERS,
)
_NUMBER: Schema = {"type": "number"}
ACCOUNT = Reply(
    200,
    "The credits this key was charged here, and the calls it has left in its window.",
    {
        JSON: obj(
            {
                "data": obj(
                    {
                        "attributes": obj(
                            {
                                "credits": obj(
                                    {
                                        name: _NUMBER
                                        for name in ("total", "subscription", "payg", "enterprise")
                                    },
                                    ["total", "subscription", "payg", "enterprise"],
                                ),
                                "api": obj(
                                    {"free_calls": _INT, "sizes": {"const": "all"}},
                                    ["free_calls", "sizes"],
                                ),
                            },
                            ["credits", "api"],
                        )
                    },
                    ["attributes"],
                )
            },
            ["data"],
        )
    },
)
ERROR = ErrorShape(
    "RemoveBgError",
    obj(
        {
            "errors": {
                "type": "array",
                "minItems": 1,
                "items": obj(
                    {
                        "title": {"type": "string"},
                        "code": {"type": "string", "examples": ["missing_source", "auth_failed"]},
                        "detail": {"type": "string"},
                    },
                    ["title", "code", "detail"],
                ),
            }
        },
        ["errors"],
        examples=[
            {
                "errors": [
                    {"title": "API Key invalid", "code": "auth_failed", "detail": "API Key invalid"}
                ]
            }
        ],
    ),
)
_AUTH_ERRORS = {
    403: "`auth_failed`: Missing API Key or API Key invalid",
    429: "`rate_limit_exceeded`, with `Retry-After` and the X-RateLimit-* headers",
}


def describe(name: str, path: str, account_path: str) -> Api:
    remove = Operation(
        "POST",
        (path,),
        "Remove the background",
        "The body is multipart, urlencoded or JSON with the same fields. Booleans as "
        "text; an empty field counts as not sent; unknown fields are ignored.",
        body=Body(
            MULTIPART,
            FIELDS,
            rules=(
                "exactly one of image_file, image_file_b64 and image_url",
                "at most one of bg_color, bg_image_url and bg_image_file",
            ),
        ),
        replies=(SUCCESS,),
        errors={
            400: "remove.bg's codes: `missing_source`, `multiple_sources`, `invalid_<field>`, "
            "`file_too_large` (the body limit), `invalid_file_type`, `invalid_dimensions`, "
            "`resolution_too_high`, `failed_to_read_image`, `failed_to_download_image`, "
            "`unknown_foreground` (an empty mask)",
            **_AUTH_ERRORS,
            408: BODY_ERRORS[408],
            **MODEL_ERRORS,
            **SERVER_ERROR,
        },
        auth=(API_KEY_HEADER,),
    )
    account = Operation(
        "GET",
        (account_path,),
        "Credits and calls left",
        "Matte keeps no balance: `total` and `payg` are the credits charged so far, "
        "`free_calls` the calls left in the current rate-limit window.",
        replies=(ACCOUNT,),
        errors={**_AUTH_ERRORS, 503: "the storage cannot be reached", **SERVER_ERROR},
        auth=(API_KEY_HEADER,),
    )
    return Api(
        name,
        "remove.bg",
        "remove.bg's API v1.0. The key goes in `X-Api-Key`; a missing or wrong one is a 403.",
        ERROR,
        (remove, account),
    )
