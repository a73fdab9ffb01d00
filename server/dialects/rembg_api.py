"""rembg's server routes as data, for /openapi.json and /docs: the fields rembg_fields.py
reads (names, ranges and defaults from its RembgFields), where each travels, the PNG
reply and FastAPI's two error bodies."""

from __future__ import annotations

from ..operations import (
    BEARER,
    BODY_ERRORS,
    KEY_ERRORS,
    MODEL_ERRORS,
    MULTIPART,
    SERVER_ERROR,
    Api,
    Body,
    ErrorShape,
    Field,
    Operation,
    Parameter,
    Reply,
    boolean,
    choice,
    integer,
    obj,
    text,
    upload,
)
from .rembg_fields import MODEL_PATTERN, SERVED_MODEL, RembgFields

_DEFAULTS = RembgFields()

FILE = upload("file", "The image: JPEG, PNG or WebP (a file part or a plain one).")
URL = text(
    "url",
    "The image's http(s) URL, fetched through the outbound guard (a 400 unless "
    "MATTE_OUTBOUND_ENABLED=true).",
    required=True,
)
MODEL = choice(
    "model",
    (SERVED_MODEL,),
    "The model; not sent runs it too. Another of rembg's names (the pattern "
    f"`{MODEL_PATTERN}`) is a 400 unless MATTE_REMBG_ANY_MODEL=true runs IS-Net for it.",
)
OPTIONS: tuple[Field, ...] = (
    MODEL,
    boolean("a", "Alpha matting.", _DEFAULTS.a),
    integer("af", "Alpha matting's foreground threshold.", 0, 255, _DEFAULTS.af),
    integer("ab", "Alpha matting's background threshold (below af).", 0, 255, _DEFAULTS.ab),
    integer("ae", "Alpha matting's erode size (above 100 runs as 100).", 0, None, _DEFAULTS.ae),
    boolean("om", "Only the mask: a greyscale PNG.", _DEFAULTS.om),
    boolean("ppm", "Post-process the mask.", _DEFAULTS.ppm),
)
QUERY_ONLY = (
    Parameter("query", text("bgc", "A background colour, `r,g,b,a` (also r,g,b, hex, names).")),
    Parameter("query", text("extras", "JSON for rembg's other models: accepted and ignored.")),
)

SUCCESS = Reply(
    200, "The cut-out (or mask), a PNG.", {"image/png": {"type": "string", "format": "binary"}}
)
INVALID = ErrorShape(
    "RembgValidationError",
    obj(
        {
            "detail": {
                "type": "array",
                "items": obj(
                    {
                        "type": {"type": "string", "examples": ["missing", "bool_parsing"]},
                        "loc": {"type": "array", "items": {"type": "string"}},
                        "msg": {"type": "string"},
                        "input": {},
                        "ctx": {"type": "object"},
                    },
                    ["type", "loc", "msg", "input"],
                ),
            }
        },
        ["detail"],
        examples=[
            {
                "detail": [
                    {
                        "type": "missing",
                        "loc": ["body", "file"],
                        "msg": "Field required",
                        "input": None,
                    }
                ]
            }
        ],
    ),
)
ERROR = ErrorShape(
    "RembgError",
    obj(
        {"detail": {"type": "string"}},
        ["detail"],
        examples=[{"detail": "image: must be a jpeg, png or webp image"}],
    ),
    by_status={422: INVALID},
)
_ERRORS = {
    400: "the image does not decode, the model is not served, or the URL is refused or fails",
    422: "a field is missing or invalid: every problem, as FastAPI lists them",
    **KEY_ERRORS,
    **MODEL_ERRORS,
    **SERVER_ERROR,
}


def describe(name: str, path: str) -> Api:
    upload_operation = Operation(
        "POST",
        (path,),
        "Remove the background (upload)",
        "The options are form fields; bgc and extras are query parameters even here.",
        parameters=QUERY_ONLY,
        body=Body(MULTIPART, (FILE, *OPTIONS)),
        replies=(SUCCESS,),
        errors={**_ERRORS, **BODY_ERRORS},
        auth=(BEARER,),
        auth_optional=True,
    )
    url_operation = Operation(
        "GET",
        (path,),
        "Remove the background (from a URL)",
        "Every field is a query parameter.",
        parameters=tuple(Parameter("query", field) for field in (URL, *OPTIONS)) + QUERY_ONLY,
        replies=(SUCCESS,),
        errors=_ERRORS,
        auth=(BEARER,),
        auth_optional=True,
    )
    return Api(
        name,
        "rembg",
        "rembg's own server (`rembg s`), read as its FastAPI app reads it. It has no keys: "
        "with none configured none is needed; with keys, `Authorization: Bearer <key>`.",
        ERROR,
        (upload_operation, url_operation),
    )
