"""Photoroom's fields and replies as data: the fields photoroom.py reads by these names,
values and defaults, and the description /openapi.json and /docs show."""

from __future__ import annotations

from ..imaging import OutputFormat
from ..operations import (
    API_KEY_HEADER,
    BODY_ERRORS,
    JSON,
    KEY_ERRORS,
    MODEL_ERRORS,
    MULTIPART,
    SERVER_ERROR,
    Api,
    Body,
    ErrorShape,
    Operation,
    Reply,
    choice,
    obj,
    text,
    upload,
)
from ..option_text import COLOR_HELP, PHOTOROOM_SIZES

FORMATS: tuple[OutputFormat, ...] = ("png", "jpg", "webp")
CHANNELS = ("rgba", "alpha")
SWITCH = ("true", "false")  # Photoroom's own enum for crop and despill

IMAGE = upload("image_file", "JPEG, PNG or WebP, under the same limits as every upload.")
FORMAT = choice(
    "format", FORMATS, "The result's format; jpg has no alpha (on white or bg_color).", "png"
)
CHANNEL = choice(
    "channels", CHANNELS, "`alpha`: the alpha channel alone, a greyscale image.", "rgba"
)
BG_COLOR = text("bg_color", f"A background colour: {COLOR_HELP}. Ignored with channels=alpha.")
SIZE = choice(
    "size",
    tuple(PHOTOROOM_SIZES),
    "The most pixels of the output, aspect kept: preview 0.25 MP, medium 1.5 MP, hd 4 MP, "
    "full the input's own size.",
    "full",
)
CROP = choice("crop", SWITCH, "`true`: cropped to the subject's box.", "false")
DESPILL = choice(
    "despill",
    SWITCH,
    "`true`: the edge colours re-estimated without the old background's.",
    "false",
)

_BINARY = {"type": "string", "format": "binary"}
SUCCESS = Reply(
    200,
    'The image itself, or `{"base64img"}` for `Accept: application/json`.',
    {
        "image/png": _BINARY,
        "image/jpeg": _BINARY,
        "image/webp": _BINARY,
        JSON: obj({"base64img": {"type": "string", "contentEncoding": "base64"}}, ["base64img"]),
    },
)
ERROR = ErrorShape(
    "PhotoroomError",
    obj(
        {
            "detail": {"type": "string"},
            "status_code": {"type": "integer"},
            "type": {"type": "string", "examples": ["missing_image", "invalid_parameter"]},
        },
        ["detail", "status_code", "type"],
        examples=[
            {
                "detail": "image_file: is required: a jpeg, png or webp file",
                "status_code": 400,
                "type": "missing_image",
            }
        ],
    ),
)


def describe(name: str, path: str) -> Api:
    operation = Operation(
        "POST",
        (path,),
        "Remove the background (segment)",
        "Unknown fields are ignored and an empty field counts as not sent.",
        body=Body(MULTIPART, (IMAGE, FORMAT, CHANNEL, BG_COLOR, SIZE, CROP, DESPILL)),
        replies=(SUCCESS,),
        errors={
            400: "`missing_image`, `invalid_image`, `invalid_parameter` (the detail names "
            "the field) or `bad_request` (the form itself)",
            403: "`invalid_api_key`: the x-api-key is missing or not accepted",
            429: KEY_ERRORS[429],
            **BODY_ERRORS,
            **MODEL_ERRORS,
            **SERVER_ERROR,
        },
        auth=(API_KEY_HEADER,),
    )
    return Api(
        name,
        "Photoroom",
        "Photoroom's Remove Background API (Basic plan). The key goes in `x-api-key`; a "
        "missing or wrong one is a 403.",
        ERROR,
        (operation,),
    )
