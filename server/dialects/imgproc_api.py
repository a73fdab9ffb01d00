"""The IMG Processing API described as data, for /openapi.json and /docs: the fields come
from imgproc_fields' constants and, for the transforms, from their parsers
(transform_schema.py)."""

from __future__ import annotations

from typing import get_args

from .. import transforms
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
    Field,
    Operation,
    Parameter,
    Reply,
    Schema,
    integer,
    obj,
    text,
    upload,
)
from ..storage import ImageFormat
from .imgproc_fields import ID_PATTERN, NAME_MAX, TAKE_DEFAULT, TAKE_MAX
from .transform_schema import transform_fields

_ID = f"^{ID_PATTERN.pattern}$"
_FORMATS = list(get_args(ImageFormat))
IMAGE_REF: Schema = {"$ref": "#/components/schemas/Image"}
IMAGE_OBJECT = obj(
    {
        "id": {"type": "string", "pattern": _ID},
        "name": {"type": "string", "maxLength": NAME_MAX},
        "url": {"type": ["string", "null"], "description": "null unless published"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "format": {"enum": _FORMATS},
        "size": {"type": "integer", "description": "bytes"},
        "created_at": {"type": "string", "format": "date-time"},
    },
    ["id", "name", "url", "width", "height", "format", "size", "created_at"],
)
_LINK: Schema = {"type": ["string", "null"], "description": "a full URL, or null"}
_LIST = obj(
    {
        "data": {"type": "array", "items": IMAGE_REF},
        "links": obj({"previous": _LINK, "next": _LINK}, ["previous", "next"]),
    },
    ["data", "links"],
)
_USAGE = obj(
    {
        "data": {
            "type": "array",
            "items": obj(
                {"date": {"type": "string", "format": "date"}, "images": {"type": "integer"}},
                ["date", "images"],
            ),
        }
    },
    ["data"],
)
_BYTES: Schema = {"type": "string", "format": "binary"}
_IMAGE_BYTES = {f"image/{fmt}": _BYTES for fmt in _FORMATS}

ERROR = ErrorShape(
    "ImgProcessingError",
    obj(
        {
            "type": {"type": "string", "description": "the error's page, ...errors#<name>"},
            "error": {"type": "string", "description": "the HTTP reason phrase"},
            "status": {"type": "integer"},
            "message": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {"type": "string"},
                "description": "422 only: one `field: problem` per bad field",
            },
        },
        ["type", "error", "status", "message"],
        examples=[
            {
                "type": "https://docs.img-processing.com/api-reference/errors#not-found",
                "error": "Not Found",
                "status": 404,
                "message": "Image with id image_x not found.",
            }
        ],
    ),
)

ID = Parameter("path", text("id", "An image's id.", required=True, pattern=_ID))
NAME = Field(
    "name",
    {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
    f"1-{NAME_MAX} characters; a new image made from another keeps its name without one.",
)
_KEYED = {**KEY_ERRORS, 503: "the storage is unreachable (its cause is logged only)"}


def describe(
    name: str, images: str, image: str, public: str, usage: str, not_offered: tuple[str, ...]
) -> Api:
    """The dialect's routes: `images` (the collection), `image` (one, `{id}`), the
    `public` URL of a published image, the `usage` counts and the routes `not_offered`."""
    keyed = (API_KEY_HEADER,)
    found = {404: "no image with this id for this key", **_KEYED, **SERVER_ERROR}
    read_body = {400: "the body is empty or not a JSON object", **BODY_ERRORS}

    def on_image(method: str, suffix: str, summary: str, reply: Reply, more: str = "") -> Operation:
        return Operation(
            method, (image + suffix,), summary, more, (ID,), None, (reply,), found, keyed
        )

    def transform(op: str) -> Operation:
        read = transform_fields(op)
        return Operation(
            "POST",
            (f"{image}/{op}",),
            read.summary,
            "A new image; the source is left as it is.",
            parameters=(ID,),
            body=Body(JSON, (NAME, *read.fields), rules=read.rules),
            replies=(_created(1),),
            errors={422: "fields are invalid (every one is listed)", **read_body, **found},
            auth=keyed,
        )

    operations = (
        Operation(
            "POST",
            (images + "/upload",),
            "Upload an image",
            "The format is read from the bytes; the same body and pixel limits as every endpoint.",
            body=Body(MULTIPART, (upload("image", "A JPEG, PNG or WebP file."), _required(NAME))),
            replies=(_created(1),),
            errors={
                422: "the image or name is missing or invalid (every one is listed)",
                400: "the form is malformed",
                **BODY_ERRORS,
                **_KEYED,
                **SERVER_ERROR,
            },
            auth=keyed,
        ),
        Operation(
            "POST",
            (images,),
            "Create an image from a URL",
            "Only from the hosts `MATTE_FETCH_ALLOWED_HOSTS` lists (none: refused), through "
            "the outbound guard.",
            body=Body(JSON, (_required(NAME), _URL)),
            replies=(_created(1),),
            errors={
                422: "a field is invalid, or the URL is refused or failed",
                **read_body,
                **_KEYED,
                **SERVER_ERROR,
            },
            auth=keyed,
        ),
        Operation(
            "GET",
            (images,),
            "List images, newest first",
            parameters=(Parameter("query", _TAKE), Parameter("query", _FROM)),
            replies=(Reply(200, "A page of images.", {JSON: _LIST}),),
            errors={
                422: "`take` is out of range",
                404: "no image `from` names",
                **_KEYED,
                **SERVER_ERROR,
            },
            auth=keyed,
        ),
        Operation(
            "POST",
            not_offered,
            "Not offered here",
            "Image generation, classification, captioning and text extraction have no "
            "model on this server.",
            errors={501: "always", **KEY_ERRORS, **SERVER_ERROR},
            auth=keyed,
        ),
        on_image("GET", "", "Get an image", Reply(200, "The image.", {JSON: IMAGE_REF})),
        on_image(
            "DELETE",
            "",
            "Delete an image",
            Reply(204, "Deleted."),
            "The bytes go once no image refers to them; a published URL stops at once.",
        ),
        on_image(
            "GET", "/download", "Download an image's bytes", Reply(200, "The bytes.", _IMAGE_BYTES)
        ),
        on_image(
            "POST",
            "/publish",
            "Publish an image",
            Reply(200, "The image, `url` set.", {JSON: IMAGE_REF}),
            f"`url` becomes `<base>{public}` (no key needed); publishing again keeps it.",
        ),
        on_image(
            "POST",
            "/unpublish",
            "Unpublish an image",
            Reply(200, "The image, `url` null.", {JSON: IMAGE_REF}),
            "The public URL answers 404 at once.",
        ),
        Operation(
            "POST",
            (image + "/remove-background",),
            "Remove the background",
            "Matte's cut-out of the stored image, as a new PNG image.",
            parameters=(ID,),
            body=Body(JSON, (NAME,)),
            replies=(_created(2),),
            errors={
                422: "`name` is invalid",
                **read_body,
                **found,
                503: f"{MODEL_ERRORS[503]}; or the storage is unreachable",
            },
            auth=keyed,
        ),
        *(transform(op) for op in transforms.OPS),
        Operation(
            "GET",
            (public,),
            "A published image",
            "No key: the token is the only secret. `cache-control: no-cache`.",
            parameters=(Parameter("path", text("name", "`<token>.<format>`", required=True)),),
            replies=(Reply(200, "The bytes.", _IMAGE_BYTES),),
            errors={404: "not published (or no longer)", **SERVER_ERROR},
        ),
        Operation(
            "GET",
            (usage,),
            "Images counted per UTC day",
            "Matte's own addition.",
            replies=(Reply(200, "The counts.", {JSON: _USAGE}),),
            errors={**_KEYED, **SERVER_ERROR},
            auth=keyed,
        ),
    )
    return Api(
        name,
        "IMG Processing",
        "img-processing.com's API: upload an image once, then transform it; every "
        "transform creates a new image. Images belong to the key that created them: any "
        "other key gets the same 404 as for an id that never existed. Errors are problem "
        "details.",
        ERROR,
        operations,
        schemas={"Image": IMAGE_OBJECT},
    )


_URL = text("url", "The http(s) URL of a JPEG, PNG or WebP image.", required=True)
_TAKE = integer("take", "Images per page.", 1, TAKE_MAX, TAKE_DEFAULT)
_FROM = text("from", "The id of the first image of the page (from `links`).", pattern=_ID)


def _required(field: Field) -> Field:
    return Field(field.name, field.schema, field.description, required=True)


def _created(usage: int) -> Reply:
    return Reply(
        201,
        "The new image.",
        {JSON: IMAGE_REF},
        {"x-image-processing-usage": f"images counted: {usage}"},
    )
