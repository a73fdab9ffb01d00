"""_common.py: the JSON body, typed fields, base64 images and option mapping every JSON
dialect shares. Each error names its field and says what kind of problem it is."""

from __future__ import annotations

import asyncio
import base64
import dataclasses

import pytest
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from server.dialects import _common
from server.dialects._common import (
    b64encode,
    boolean,
    cutout_options,
    get,
    image,
    integer,
    optional_integer,
    optional_string,
    read_json_object,
    require,
    to_bgcolor,
    to_bool,
    to_image,
    to_int,
    to_list,
    to_object,
    to_str,
)
from server.errors import BadRequest, PayloadTooLarge
from server.middleware import BodyLimit
from server.options import CutoutOptions
from tests.conftest import png

PNG = png(64, 64)
PNG_B64 = base64.b64encode(PNG).decode()


def refused(call: object, *args: object) -> BadRequest:
    assert callable(call)
    with pytest.raises(BadRequest) as error:
        call(*args)
    return error.value


def assert_refused(
    error: BadRequest, message: str, field: str, problem: str = "value_error"
) -> None:
    assert error.messages == (message,)
    assert error.field == field
    assert error.problem == problem
    assert error.status == 400


# --- the body ------------------------------------------------------------------------------


def json_request(*chunks: bytes) -> Request:
    """A request whose body arrives in `chunks`, as an ASGI server hands it over."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


def read(*chunks: bytes) -> dict[str, object]:
    return asyncio.run(read_json_object(json_request(*chunks)))


def read_refused(*chunks: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as error:
        read(*chunks)
    return error.value


def test_a_json_object_is_read_across_chunks() -> None:
    assert read(b'{"a": 1, ', b'"b": [true, null], "c": {"d": "e"}}') == {
        "a": 1,
        "b": [True, None],
        "c": {"d": "e"},
    }


def test_an_empty_object_is_an_object() -> None:
    assert read(b"{}") == {}
    assert read(b"  \n{}\n") == {}


@pytest.mark.parametrize("chunks", [(), (b"",), (b"  \r\n\t",), (b"", b" ")])
def test_an_empty_body_is_missing(chunks: tuple[bytes, ...]) -> None:
    assert_refused(read_refused(*chunks), "body: is required: a JSON object", "body", "missing")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{'a': 1}",
        b'{"a": 1,}',
        b"image=abc",  # curl -d without a JSON body
        b'{"a": "\xff\xfe"}',  # not UTF-8
        b"[" * 100_000,  # nesting too deep for the parser: never a 500
        b'{"a": 1} x',
    ],
    ids=["cut-short", "quotes", "trailing-comma", "form", "bad-utf8", "deep", "trailing"],
)
def test_a_body_that_is_not_json_is_refused(body: bytes) -> None:
    assert_refused(read_refused(body), "body: is not valid JSON", "body", "json_invalid")


@pytest.mark.parametrize("body", [b"[]", b'[{"a": 1}]', b'"text"', b"1", b"null", b"true"])
def test_a_body_that_is_json_but_not_an_object_is_refused(body: bytes) -> None:
    assert_refused(read_refused(body), "body: must be a JSON object", "body", "type_error")


def test_the_body_limit_applies_while_the_json_streams_in() -> None:
    # BodyLimit raises from `receive`, inside read_json_object: the 413 is the dialect's.
    chunks = [b'{"a": "' + b"x" * 60, b"x" * 60, b'"}']
    sent: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < 2}
        for index, chunk in enumerate(chunks)
    ]
    reads: list[int] = []

    async def receive() -> Message:
        reads.append(1)
        return sent.pop(0)

    async def app(scope: Scope, receive_: Receive, send_: Send) -> None:
        await read_json_object(Request(scope, receive_))

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    limited = BodyLimit(app, max_bytes=100)
    scope: Scope = {"type": "http", "method": "POST", "headers": []}
    with pytest.raises(PayloadTooLarge):
        asyncio.run(limited(scope, receive, send))
    assert len(reads) == 2  # refused at the chunk that crossed the limit, the rest unread


# --- fields of an object -------------------------------------------------------------------


def test_get_treats_absent_and_null_alike() -> None:
    assert get({"a": None}, "a") is None
    assert get({}, "a") is None
    assert get({"a": 0}, "a") == 0
    assert get({"a": False}, "a") is False
    assert get({"a": ""}, "a") == ""


def test_require_names_the_field_or_its_label() -> None:
    assert require({"a": 0}, "a") == 0
    assert require({"a": False}, "a") is False
    assert_refused(refused(require, {}, "a"), "a: is required", "a", "missing")
    assert_refused(refused(require, {"a": None}, "a"), "a: is required", "a", "missing")
    assert_refused(
        refused(require, {}, "url", "x[0].url"), "x[0].url: is required", "x[0].url", "missing"
    )


def test_field_getters_fall_back_to_their_default_only_when_not_sent() -> None:
    body: dict[str, object] = {"t": True, "f": "false", "n": 7, "s": "text", "z": None}
    assert boolean(body, "t", False) is True
    assert boolean(body, "f", True) is False
    assert boolean(body, "z", True) is True
    assert boolean(body, "absent", False) is False
    assert integer(body, "n", 1) == 7
    assert integer(body, "z", 3) == 3
    assert integer(body, "absent", 4, 0, 10) == 4
    assert optional_integer(body, "n") == 7
    assert optional_integer(body, "z") is None
    assert optional_integer(body, "absent") is None
    assert optional_string(body, "s") == "text"
    assert optional_string(body, "z") is None


def test_field_getters_name_their_field_in_errors() -> None:
    body: dict[str, object] = {"b": "maybe", "i": "x", "j": 11, "s": 5}
    assert_refused(
        refused(boolean, body, "b", False), "b: must be true or false", "b", "type_error"
    )
    assert_refused(
        refused(integer, body, "i", 0, 0, 10),
        "i: must be an integer from 0 to 10",
        "i",
        "type_error",
    )
    assert_refused(
        refused(optional_integer, body, "j", 0, 10),
        "j: must be an integer from 0 to 10",
        "j",
        "value_error",
    )
    assert_refused(refused(optional_string, body, "s"), "s: must be a string", "s", "type_error")


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("True", True),  # Python's str(True)
        ("False", False),
        ("TRUE", True),
        ("fAlSe", False),
    ],
)
def test_booleans_are_json_or_true_false_text_in_any_case(value: object, expected: bool) -> None:
    assert to_bool(value, "flag") is expected


@pytest.mark.parametrize(
    "value", [1, 0, 1.0, "1", "0", "yes", "no", "on", "off", "", " true", "true ", "t", [], {}]
)
def test_other_boolean_forms_are_refused(value: object) -> None:
    assert_refused(
        refused(to_bool, value, "flag"), "flag: must be true or false", "flag", "type_error"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (240, 240),
        (-3, -3),
        (240.0, 240),
        (-0.0, 0),
        ("240", 240),
        ("+5", 5),
        ("-5", -5),
        ("007", 7),
        ("999999999", 999_999_999),
        (10**12, 10**12),  # a JSON integer of any size; ranges are the caller's
    ],
)
def test_integers_are_json_integers_integral_numbers_or_integer_text(
    value: object, expected: int
) -> None:
    number = to_int(value, "n")
    assert number == expected and type(number) is int


@pytest.mark.parametrize(
    "value",
    [True, False, 2.5, float("nan"), float("inf"), "2.5", "", " 5", "5 ", "1e3", "0x10",
     "1234567890", "five", [5], {"n": 5}],
)  # fmt: skip
def test_other_integer_forms_are_refused(value: object) -> None:
    assert_refused(refused(to_int, value, "n"), "n: must be an integer", "n", "type_error")


@pytest.mark.parametrize(
    ("low", "high", "inside", "outside", "message"),
    [
        (0, 255, (0, 255), (-1, 256), "n: must be an integer from 0 to 255"),
        (5, None, (5, 10**8), (4,), "n: must be an integer of at least 5"),
        (None, 9, (-(10**8), 9), (10,), "n: must be an integer of at most 9"),
    ],
)
def test_integer_ranges_include_both_ends(
    low: int | None,
    high: int | None,
    inside: tuple[int, ...],
    outside: tuple[int, ...],
    message: str,
) -> None:
    for value in inside:
        assert to_int(value, "n", low, high) == value
        assert to_int(str(value), "n", low, high) == value
    for value in outside:
        assert_refused(refused(to_int, value, "n", low, high), message, "n", "value_error")
    # A value of the wrong type gets the same message, as a type error.
    assert_refused(refused(to_int, "x", "n", low, high), message, "n", "type_error")


def test_strings_objects_and_lists_are_checked_by_type() -> None:
    assert to_str("", "s") == ""
    assert to_object({"a": 1}, "o") == {"a": 1}
    assert to_list([1], "l") == [1]
    not_strings: tuple[object, ...] = (1, None, ["s"], b"s")
    for value in not_strings:
        assert_refused(refused(to_str, value, "s"), "s: must be a string", "s", "type_error")
    not_objects: tuple[object, ...] = ([], "o", 1, None)
    for value in not_objects:
        assert_refused(refused(to_object, value, "o"), "o: must be an object", "o", "type_error")
    not_lists: tuple[object, ...] = ({}, "l", (1,), None)
    for value in not_lists:
        assert_refused(refused(to_list, value, "l"), "l: must be a list", "l", "type_error")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([0, 0, 0], (0, 0, 0)),
        ([255, 128, 1], (255, 128, 1)),
        ([1, 2, 3, 4], (1, 2, 3, 4)),
        ([255, 255, 255, 255], (255, 255, 255, 255)),
    ],
)
def test_bgcolor_is_a_list_of_3_or_4_channels(value: object, expected: tuple[int, ...]) -> None:
    assert to_bgcolor(value, "bgcolor") == expected


BGCOLOR_MESSAGE = "bgcolor: must be a list of 3 or 4 integers from 0 to 255, like [255, 0, 0]"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([0, 0], "type_error"),
        ([0, 0, 0, 0, 0], "type_error"),
        ([], "type_error"),
        ("255,0,0", "type_error"),
        ({"r": 0}, "type_error"),
        ([True, 0, 0], "type_error"),
        ([0.0, 0, 0], "type_error"),
        (["0", 0, 0], "type_error"),
        ([None, 0, 0], "type_error"),
        ([256, 0, 0], "value_error"),
        ([0, 0, -1], "value_error"),
        ([0, 0, 0, 256], "value_error"),
    ],
)
def test_other_bgcolors_are_refused(value: object, problem: str) -> None:
    assert_refused(refused(to_bgcolor, value, "bgcolor"), BGCOLOR_MESSAGE, "bgcolor", problem)


@pytest.mark.parametrize(
    "text",
    [
        PNG_B64,
        f"data:image/png;base64,{PNG_B64}",
        f"data:image/jpeg;base64,{PNG_B64}",  # the bytes are sniffed later, not the label
        f"data:image/jpg;base64,{PNG_B64}",
        f"data:image/webp;base64,{PNG_B64}",
        f"DATA:IMAGE/PNG;BASE64,{PNG_B64}",
        f"data:image/png;name=a.png;base64,{PNG_B64}",
        f"  {PNG_B64}\n",
        # Line-wrapped, as `base64` prints it, and with the `=` padding left off.
        "\n".join(PNG_B64[i : i + 76] for i in range(0, len(PNG_B64), 76)),
        PNG_B64.rstrip("="),
        f"data:image/png;base64,{PNG_B64.rstrip('=')}",
    ],
    ids=[
        "bare", "png", "jpeg", "jpg", "webp", "upper-case", "parameter", "padded-by-spaces",
        "wrapped", "no-padding", "data-url-no-padding",
    ],
)  # fmt: skip
def test_images_are_bare_base64_or_image_data_urls(text: str) -> None:
    assert to_image(text, "img") == PNG


def test_the_fixture_base64_needs_padding() -> None:
    # Otherwise the "no-padding" cases above would prove nothing.
    assert PNG_B64.endswith("=")


@pytest.mark.parametrize(
    ("value", "message", "problem"),
    [
        ("", "img: must not be empty", "value_error"),
        ("   ", "img: must not be empty", "value_error"),
        (5, "img: must be a string", "type_error"),
        (["abc"], "img: must be a string", "type_error"),
        ("not base64!", "img: is not valid base64", "value_error"),
        ("a", "img: is not valid base64", "value_error"),  # a length no padding can fix
        ("====", "img: is not valid base64", "value_error"),
        ("ümlaut", "img: is not valid base64", "value_error"),
        (PNG_B64[:-4] + "-_" + PNG_B64[-2:], "img: is not valid base64", "value_error"),
        (
            "https://example.com/cat.png",
            "img: must be base64 or a data: URL; this server takes inline images only",
            "value_error",
        ),
        (
            "HTTP://example.com/cat.png",
            "img: must be base64 or a data: URL; this server takes inline images only",
            "value_error",
        ),
        (
            f"data:image/gif;base64,{PNG_B64}",
            "img: the data URL must be an image/png, image/jpeg or image/webp image",
            "value_error",
        ),
        (
            f"data:text/plain;base64,{PNG_B64}",
            "img: the data URL must be an image/png, image/jpeg or image/webp image",
            "value_error",
        ),
        (
            f"data:;base64,{PNG_B64}",
            "img: the data URL must be an image/png, image/jpeg or image/webp image",
            "value_error",
        ),
        (
            f"data:image/png,{PNG_B64}",
            "img: must be a base64 data URL, like data:image/png;base64,...",
            "value_error",
        ),
        (
            f"data:image/png;base64{PNG_B64}",
            "img: must be a base64 data URL, like data:image/png;base64,...",
            "value_error",
        ),
        (
            f"data:image/png;charset=utf-8,{PNG_B64}",
            "img: must be a base64 data URL, like data:image/png;base64,...",
            "value_error",
        ),
        ("data:image/png;base64,", "img: is not valid base64", "value_error"),
        ("data:image/png;base64,!!!!", "img: is not valid base64", "value_error"),
    ],
)
def test_bad_images_are_refused_naming_the_field(value: object, message: str, problem: str) -> None:
    assert_refused(refused(to_image, value, "img"), message, "img", problem)


def test_image_field_is_required_and_decoded() -> None:
    assert image({"img": PNG_B64}, "img") == PNG
    assert_refused(refused(image, {}, "img"), "img: is required", "img", "missing")
    assert_refused(refused(image, {"img": None}, "img"), "img: is required", "img", "missing")


def test_b64encode_is_bare_base64() -> None:
    assert b64encode(b"\x00\xff\x10") == "AP8Q"
    assert b64encode(PNG) == PNG_B64
    assert "\n" not in b64encode(bytes(200))


# --- options -------------------------------------------------------------------------------


def test_no_option_fields_keep_the_dialects_defaults() -> None:
    defaults = CutoutOptions(
        output_format="webp",
        post_process_mask=True,
        alpha_matting_background_threshold=20,
        alpha_matting_erode_size=5,
        bgcolor=(1, 2, 3),
    )
    assert cutout_options({}, defaults) == defaults
    nulls = {field.name: None for field in dataclasses.fields(CutoutOptions)}
    assert cutout_options(nulls, defaults) == defaults


def test_every_option_field_is_read() -> None:
    body: dict[str, object] = {
        "only_mask": True,
        "post_process_mask": "true",
        "alpha_matting": "True",
        "alpha_matting_foreground_threshold": 200,
        "alpha_matting_background_threshold": "30",
        "alpha_matting_erode_size": 7.0,
        "bgcolor": [1, 2, 3, 4],
        "output_format": "webp",  # not an option field here: each dialect has its own
        "unknown": "ignored",
    }
    assert cutout_options(body, CutoutOptions()) == CutoutOptions(
        only_mask=True,
        post_process_mask=True,
        alpha_matting=True,
        alpha_matting_foreground_threshold=200,
        alpha_matting_background_threshold=30,
        alpha_matting_erode_size=7,
        bgcolor=(1, 2, 3, 4),
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("only_mask", "false", False),
        ("post_process_mask", False, False),
        ("alpha_matting", "FALSE", False),
        ("alpha_matting_foreground_threshold", 250, 250),
        ("alpha_matting_background_threshold", 0, 0),
        ("alpha_matting_erode_size", 0, 0),
        ("bgcolor", [9, 8, 7], (9, 8, 7)),
    ],
)
def test_each_option_field_overrides_its_default_alone(
    field: str, value: object, expected: object
) -> None:
    defaults = CutoutOptions(
        only_mask=True, post_process_mask=True, alpha_matting=True, bgcolor=(0, 0, 0)
    )
    options = cutout_options({field: value}, defaults)
    assert options == dataclasses.replace(defaults, **{field: expected})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "message", "field", "problem"),
    [
        ({"only_mask": 1}, "only_mask: must be true or false", "only_mask", "type_error"),
        (
            {"post_process_mask": "yes"},
            "post_process_mask: must be true or false",
            "post_process_mask",
            "type_error",
        ),
        (
            {"alpha_matting": []},
            "alpha_matting: must be true or false",
            "alpha_matting",
            "type_error",
        ),
        (
            {"alpha_matting_foreground_threshold": 256},
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
            "alpha_matting_foreground_threshold",
            "value_error",
        ),
        (
            {"alpha_matting_background_threshold": -1},
            "alpha_matting_background_threshold: must be an integer from 0 to 255",
            "alpha_matting_background_threshold",
            "value_error",
        ),
        (
            {"alpha_matting_erode_size": 101},
            "alpha_matting_erode_size: must be an integer from 0 to 100",
            "alpha_matting_erode_size",
            "value_error",
        ),
        (
            {"alpha_matting_erode_size": "big"},
            "alpha_matting_erode_size: must be an integer from 0 to 100",
            "alpha_matting_erode_size",
            "type_error",
        ),
        ({"bgcolor": "red"}, BGCOLOR_MESSAGE, "bgcolor", "type_error"),
        (
            {"alpha_matting_foreground_threshold": 10},
            "alpha_matting_foreground_threshold: must be greater than "
            "alpha_matting_background_threshold",
            "alpha_matting_foreground_threshold",
            "value_error",
        ),
    ],
)
def test_bad_option_values_are_refused_naming_the_field(
    body: dict[str, object], message: str, field: str, problem: str
) -> None:
    assert_refused(refused(cutout_options, body, CutoutOptions()), message, field, problem)


def test_range_edges_are_accepted() -> None:
    options = cutout_options(
        {
            "alpha_matting_foreground_threshold": 255,
            "alpha_matting_background_threshold": 254,
            "alpha_matting_erode_size": 100,
        },
        CutoutOptions(),
    )
    assert options.alpha_matting_foreground_threshold == 255
    assert options.alpha_matting_background_threshold == 254
    assert options.alpha_matting_erode_size == 100
    low = cutout_options(
        {"alpha_matting_foreground_threshold": 1, "alpha_matting_background_threshold": 0},
        CutoutOptions(),
    )
    assert (low.alpha_matting_foreground_threshold, low.alpha_matting_background_threshold) == (
        1,
        0,
    )


def test_the_cross_check_covers_the_dialects_defaults() -> None:
    # A body that moves only the background threshold up to the default foreground one.
    error = refused(cutout_options, {"alpha_matting_background_threshold": 240}, CutoutOptions())
    assert error.field == "alpha_matting_foreground_threshold"


def test_the_image_field_constant_is_not_an_option() -> None:
    # cutout_options never reads an image: a dialect's image field is free to be anything.
    assert "image" not in {field.name for field in dataclasses.fields(CutoutOptions)}
    assert _common.IMAGE_MEDIA_TYPES == ("image/png", "image/jpeg", "image/jpg", "image/webp")
