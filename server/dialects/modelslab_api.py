"""ModelsLab's fields and replies as data: the fields modelslab.py reads by these names
and defaults, and the description /openapi.json and /docs show."""

from __future__ import annotations

from ..operations import (
    BODY_ERRORS,
    JSON,
    KEY_ERRORS,
    MODEL_ERRORS,
    SERVER_ERROR,
    Api,
    Body,
    ErrorShape,
    Field,
    Operation,
    Parameter,
    Reply,
    Schema,
    boolean,
    obj,
    text,
)
from ..options import CutoutOptions
from ._fields import json_option_fields

# Option fields ModelsLab's clients send that Matte does not honour (its API has none).
IGNORED = ("bgcolor",)

KEY = text("key", "The API key (the same keys as every other endpoint).", required=True)
IMAGE = text(
    "image",
    "An `http(s)://` URL (fetched through the outbound guard; refused while "
    "`MATTE_OUTBOUND_ENABLED` is off), a `data:image/png|jpeg|webp;base64,` URL or bare base64.",
    required=True,
)
INVERSE_MASK = boolean(
    "inverse_mask",
    "Answer the inverted mask: white background, black subject (implies only_mask).",
    False,
)
BASE64 = boolean("base64", "Put the base64 PNG itself in `output` instead of its URL.", False)
SEED = Field(
    "seed", {"type": ["integer", "null"]}, "Any integer; only echoed in `meta` (deterministic)."
)
WEBHOOK = text(
    "webhook",
    "A URL that gets the response as a JSON POST (plus `track_id`) once the result is "
    "stored; needs `MATTE_OUTBOUND_ENABLED`.",
    nullable=True,
)
TRACK_ID = Field(
    "track_id",
    {"type": ["string", "integer", "null"]},
    "Echoed in `meta` and in the webhook's body.",
)

_URLS: Schema = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}
_SUCCESS = obj(
    {
        "status": {"const": "success"},
        "generationTime": {"type": "number", "description": "seconds"},
        "id": {"type": "integer", "description": "a random integer below 2^53"},
        "output": {**_URLS, "description": "the result's URL, or its base64 with `base64`"},
        "proxy_links": {**_URLS, "description": "the result's URL"},
        "meta": {
            "type": "object",
            "description": "every effective parameter; `image` is the URL when one was sent, "
            "null for inline data",
        },
    },
    ["status", "generationTime", "id", "output", "proxy_links", "meta"],
)
SUCCESS = Reply(200, "The result, kept for `MATTE_RESULTS_TTL_S`.", {JSON: _SUCCESS})
ERROR = ErrorShape(
    "ModelsLabError",
    obj(
        {
            "status": {"const": "error"},
            "message": {"type": "string"},
            "retry_after": {"type": "integer", "description": "seconds (429 and 503 only)"},
        },
        ["status", "message"],
        examples=[{"status": "error", "message": "image: is required"}],
    ),
)


def describe(
    name: str,
    paths: tuple[str, ...],
    fetch_paths: tuple[str, ...],
    results_path: str,
    defaults: CutoutOptions,
) -> Api:
    options = json_option_fields(defaults, IGNORED)
    fields = (KEY, IMAGE, *options, INVERSE_MASK, BASE64, SEED, WEBHOOK, TRACK_ID)
    keyed = {**KEY_ERRORS, **BODY_ERRORS, **MODEL_ERRORS, **SERVER_ERROR}
    remove = Operation(
        "POST",
        paths,
        "Remove the background (removebg_mask)",
        "The key is in the body, so the request takes its place in line before the key "
        "is checked. Unknown fields (`api_key`, `prompt`, `bgcolor`, ...) are ignored.",
        body=Body(JSON, fields),
        replies=(SUCCESS,),
        errors={400: "a field is missing or invalid; the message names it first", **keyed},
        key_field=KEY.name,
    )
    fetch = Operation(
        "POST",
        fetch_paths,
        "Fetch a kept result",
        "The same body as the request that made it, for the key that made it.",
        parameters=(
            Parameter("path", text("id", "The result's `id`.", required=True, pattern="^[0-9]+$")),
        ),
        body=Body(JSON, (KEY,)),
        replies=(SUCCESS,),
        errors={
            400: "`id` is not a number",
            404: "no such result for this key (or it has expired)",
            **KEY_ERRORS,
            **BODY_ERRORS,
            **SERVER_ERROR,
        },
        key_field=KEY.name,
    )
    result = Operation(
        "GET",
        (results_path,),
        "Download a result",
        "No key: the token in the URL (192 random bits) is the only secret. "
        "`cache-control: no-store`.",
        parameters=(Parameter("path", text("name", "`<token>.png`", required=True)),),
        replies=(Reply(200, "The PNG.", {"image/png": {"type": "string", "format": "binary"}}),),
        errors={404: "no such result, or it has expired", **SERVER_ERROR},
    )
    return Api(
        name,
        "ModelsLab",
        "ModelsLab's `removebg_mask`, `fetch` and result URLs. JSON bodies (any "
        "`Content-Type`); `null` means not sent; booleans are true/false or the strings "
        '"true"/"false". Errors carry the real HTTP status.',
        ERROR,
        (remove, fetch, result),
    )
