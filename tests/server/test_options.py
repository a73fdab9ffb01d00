"""Validation of the cut-out options, field by field (shared by every dialect)."""

from __future__ import annotations

import dataclasses

import pytest

from server.errors import BadRequest
from server.imaging import OutputFormat
from server.option_text import Length, Margin, Position, Region
from server.options import CutoutOptions, parse_bgcolor

BOOLEANS = ("only_mask", "post_process_mask", "alpha_matting")
LEVELS = ("alpha_matting_foreground_threshold", "alpha_matting_background_threshold")
ERODE_MESSAGE = "alpha_matting_erode_size: must be an integer from 0 to 100"
BGCOLOR_MESSAGE = "bgcolor: must be 3 or 4 integers from 0 to 255, like 255,0,0 or [255, 0, 0, 255]"
THRESHOLD_MESSAGE = (
    "alpha_matting_foreground_threshold: must be greater than alpha_matting_background_threshold"
)


def parse(**fields: str) -> CutoutOptions:
    return CutoutOptions().with_fields(fields.get)


def refused(**fields: str) -> str:
    """The one message the fields are refused with."""
    with pytest.raises(BadRequest) as error:
        parse(**fields)
    assert len(error.value.messages) == 1
    return error.value.messages[0]


def test_defaults_are_the_plain_cutout() -> None:
    # Field by field against the documented defaults (README), not against CutoutOptions().
    assert dataclasses.astuple(parse()) == (
        *("png", False, False, False, 240, 10, 10, None, False),
        # Framing and the rest of issue 15: off, no margin, nothing capped.
        *(False, ((0.0, "px"), (0.0, "px"), (0.0, "px"), (0.0, "px")), None, None, None),
        *(False, None, None),
    )


def test_inverse_mask_is_not_a_form_field() -> None:
    # No form dialect has it: a Stability client sending it gets the plain cut-out.
    assert parse(inverse_mask="true").inverse_mask is False


def test_every_option_is_read() -> None:
    options = parse(
        output_format="WEBP",
        only_mask="true",
        post_process_mask="1",
        alpha_matting="True",
        alpha_matting_foreground_threshold="200",
        alpha_matting_background_threshold="20",
        alpha_matting_erode_size="5",
        bgcolor="[255, 0, 0]",
    )
    assert dataclasses.astuple(options) == (
        "webp",
        True,
        True,
        True,
        200,
        20,
        5,
        (255, 0, 0),
        False,
        *dataclasses.astuple(CutoutOptions())[9:],  # no form fields of their own
    )


@pytest.mark.parametrize(
    ("field", "raw", "value"),
    [
        ("output_format", "png", "png"),
        ("output_format", "webp", "webp"),
        ("output_format", "PNG", "png"),
        ("output_format", "WebP", "webp"),
        ("output_format", " webp ", "webp"),
        ("alpha_matting_foreground_threshold", "255", 255),
        ("alpha_matting_foreground_threshold", "11", 11),  # one above the default background
        ("alpha_matting_foreground_threshold", "+200", 200),
        ("alpha_matting_foreground_threshold", " 200 ", 200),
        ("alpha_matting_foreground_threshold", "000000200", 200),  # nine digits at most
        ("alpha_matting_background_threshold", "0", 0),
        ("alpha_matting_background_threshold", "239", 239),  # one below the default foreground
        ("alpha_matting_background_threshold", "-0", 0),
        ("alpha_matting_erode_size", "0", 0),
        ("alpha_matting_erode_size", "100", 100),
        ("alpha_matting_erode_size", "37", 37),
        ("bgcolor", "255,0,0", (255, 0, 0)),
        ("bgcolor", "[0, 128, 255]", (0, 128, 255)),
        ("bgcolor", " 1,2,3,4 ", (1, 2, 3, 4)),
        ("bgcolor", "[255, 0, 0, 255]", (255, 0, 0, 255)),
        ("bgcolor", "[ 7 , 8 , 9 ]", (7, 8, 9)),
        ("bgcolor", "0,0,0,0", (0, 0, 0, 0)),
        ("bgcolor", "255,255,255", (255, 255, 255)),
        ("bgcolor", "007,08,9", (7, 8, 9)),
    ],
)
def test_each_option_alone(field: str, raw: str, value: object) -> None:
    options = parse(**{field: raw})
    assert getattr(options, field) == value
    # Nothing else changed.
    assert dataclasses.replace(options, **{field: getattr(CutoutOptions(), field)}) == (
        CutoutOptions()
    )


@pytest.mark.parametrize("field", BOOLEANS)
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("on", True),
        ("On", True),
        (" true ", True),
        ("false", False),
        ("FALSE", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("No", False),
        ("off", False),
        ("OFF", False),
    ],
)
def test_both_boolean_forms_in_any_case(field: str, raw: str, value: bool) -> None:
    assert getattr(parse(**{field: raw}), field) is value
    # Over the opposite base too, so the value is really read, not left at the default.
    base = dataclasses.replace(CutoutOptions(), **{field: not value})  # type: ignore[arg-type]
    assert getattr(base.with_fields({field: raw}.get), field) is value


@pytest.mark.parametrize("field", BOOLEANS)
@pytest.mark.parametrize("raw", ["maybe", "2", "-1", "t", "y", "yes please", "truee", "onn"])
def test_other_boolean_text_is_refused(field: str, raw: str) -> None:
    assert refused(**{field: raw}) == f"{field}: must be true or false"


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("output_format", "gif", "output_format: must be one of png, webp"),
        ("output_format", "jpeg", "output_format: must be one of png, webp"),
        ("output_format", "pngx", "output_format: must be one of png, webp"),
        ("alpha_matting_erode_size", "101", ERODE_MESSAGE),
        ("alpha_matting_erode_size", "-1", ERODE_MESSAGE),
        ("alpha_matting_erode_size", "-3", ERODE_MESSAGE),
        ("alpha_matting_erode_size", "2 0", ERODE_MESSAGE),
        ("bgcolor", "red", BGCOLOR_MESSAGE),
        ("bgcolor", "255,0", BGCOLOR_MESSAGE),
        ("bgcolor", "1,2,3,4,5", BGCOLOR_MESSAGE),
        ("bgcolor", "256,0,0", BGCOLOR_MESSAGE),
        ("bgcolor", "0,0,256", BGCOLOR_MESSAGE),
        ("bgcolor", "0,0,0,256", BGCOLOR_MESSAGE),
        ("bgcolor", "1000,0,0", BGCOLOR_MESSAGE),
        ("bgcolor", "0255,0,0", BGCOLOR_MESSAGE),  # at most three digits each
        ("bgcolor", "-1,0,0", BGCOLOR_MESSAGE),
        ("bgcolor", "1.5,0,0", BGCOLOR_MESSAGE),
        ("bgcolor", "1,,2,3", BGCOLOR_MESSAGE),
        ("bgcolor", "[1,2,3", BGCOLOR_MESSAGE),
        ("bgcolor", "1,2,3]", BGCOLOR_MESSAGE),
        # Only a matching pair of brackets is taken off, not any first and last character.
        ("bgcolor", "[1,2,3)", BGCOLOR_MESSAGE),
        ("bgcolor", "(1,2,3]", BGCOLOR_MESSAGE),
        ("bgcolor", "(1,2,3)", BGCOLOR_MESSAGE),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, raw: str, message: str) -> None:
    assert refused(**{field: raw}) == message


@pytest.mark.parametrize("field", LEVELS)
@pytest.mark.parametrize("raw", ["256", "-1", "1.5", "ten", "1e2", "++1", "0x10", "0000000200"])
def test_levels_outside_0_to_255_are_refused(field: str, raw: str) -> None:
    # "0000000200": at most nine digits are read, so no huge number is ever parsed.
    assert refused(**{field: raw}) == f"{field}: must be an integer from 0 to 255"


def test_bgcolor_parser_strips_its_own_input() -> None:
    # Every dialect reaches it through with_fields today, but it is public and documented.
    assert parse_bgcolor("bgcolor", " [1, 2, 3] ") == (1, 2, 3)
    assert parse_bgcolor("background", "1,2,3") == (1, 2, 3)
    with pytest.raises(BadRequest) as error:
        parse_bgcolor("background", "1,2")
    assert error.value.messages == (
        "background: must be 3 or 4 integers from 0 to 255, like 255,0,0 or [255, 0, 0, 255]",
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # One sent, the other at its default (foreground 240, background 10).
        ({"alpha_matting_foreground_threshold": "11"}, (11, 10)),
        ({"alpha_matting_background_threshold": "239"}, (240, 239)),
        (
            {"alpha_matting_foreground_threshold": "1", "alpha_matting_background_threshold": "0"},
            (1, 0),
        ),
        (
            {
                "alpha_matting_foreground_threshold": "255",
                "alpha_matting_background_threshold": "254",
            },
            (255, 254),
        ),
    ],
)
def test_thresholds_one_apart_leave_an_unknown_band(
    fields: dict[str, str], expected: tuple[int, int]
) -> None:
    options = parse(**fields)
    assert (
        options.alpha_matting_foreground_threshold,
        options.alpha_matting_background_threshold,
    ) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"alpha_matting_foreground_threshold": "10"},  # equal to the default background
        {"alpha_matting_foreground_threshold": "0"},
        {"alpha_matting_background_threshold": "240"},  # equal to the default foreground
        {"alpha_matting_background_threshold": "255"},
        {"alpha_matting_foreground_threshold": "100", "alpha_matting_background_threshold": "100"},
        {"alpha_matting_foreground_threshold": "100", "alpha_matting_background_threshold": "200"},
    ],
)
def test_thresholds_must_leave_an_unknown_band(fields: dict[str, str]) -> None:
    assert refused(**fields) == THRESHOLD_MESSAGE


def test_the_threshold_cross_check_also_guards_a_given_base() -> None:
    base = CutoutOptions(
        alpha_matting_foreground_threshold=50, alpha_matting_background_threshold=50
    )
    with pytest.raises(BadRequest) as error:
        base.with_fields(lambda name: None)
    assert error.value.messages == (THRESHOLD_MESSAGE,)


def test_fields_apply_over_the_given_base() -> None:
    base = CutoutOptions(output_format="webp", bgcolor=(1, 2, 3))
    assert base.with_fields({"only_mask": "yes"}.get) == dataclasses.replace(base, only_mask=True)


@pytest.mark.parametrize(
    "field",
    [
        "output_format",
        *BOOLEANS,
        "alpha_matting_foreground_threshold",
        "alpha_matting_background_threshold",
        "alpha_matting_erode_size",
        "bgcolor",
    ],
)
@pytest.mark.parametrize("raw", ["", " ", "\t \n"])
def test_empty_text_counts_as_not_sent(field: str, raw: str) -> None:
    # Form clients often send every field of a form, the unused ones empty.
    base = CutoutOptions(
        output_format="webp", only_mask=True, alpha_matting_erode_size=3, bgcolor=(1, 2, 3)
    )
    assert base.with_fields({field: raw}.get) == base


# --- checked(): options built from typed values (the JSON dialects) -----------------------


def test_checked_returns_valid_options_unchanged() -> None:
    options = CutoutOptions(
        output_format="webp",
        alpha_matting_foreground_threshold=255,
        alpha_matting_background_threshold=254,
        alpha_matting_erode_size=100,
        bgcolor=(0, 0, 0, 255),
    )
    assert options.checked() is options
    low = CutoutOptions(
        alpha_matting_foreground_threshold=1,
        alpha_matting_background_threshold=0,
        alpha_matting_erode_size=0,
        bgcolor=(255, 255, 255),
    )
    assert low.checked() is low


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"output_format": "jpeg"}, "output_format", "output_format: must be one of png, webp"),
        ({"output_format": "PNG"}, "output_format", "output_format: must be one of png, webp"),
        (
            {"alpha_matting_foreground_threshold": 256},
            "alpha_matting_foreground_threshold",
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
        ),
        (
            {"alpha_matting_background_threshold": -1},
            "alpha_matting_background_threshold",
            "alpha_matting_background_threshold: must be an integer from 0 to 255",
        ),
        ({"alpha_matting_erode_size": 101}, "alpha_matting_erode_size", ERODE_MESSAGE),
        ({"alpha_matting_erode_size": -1}, "alpha_matting_erode_size", ERODE_MESSAGE),
        ({"bgcolor": (0, 0)}, "bgcolor", BGCOLOR_MESSAGE),
        ({"bgcolor": (0, 0, 0, 0, 0)}, "bgcolor", BGCOLOR_MESSAGE),
        ({"bgcolor": (256, 0, 0)}, "bgcolor", BGCOLOR_MESSAGE),
        ({"bgcolor": (0, 0, -1)}, "bgcolor", BGCOLOR_MESSAGE),
        (
            {"alpha_matting_background_threshold": 240},
            "alpha_matting_foreground_threshold",
            THRESHOLD_MESSAGE,
        ),
    ],
)
def test_checked_refuses_out_of_range_values_naming_the_field(
    changes: dict[str, object], field: str, message: str
) -> None:
    options = dataclasses.replace(CutoutOptions(), **changes)  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as error:
        options.checked()
    assert error.value.messages == (message,)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"output_format": "gif"}, "output_format"),
        ({"only_mask": "maybe"}, "only_mask"),
        ({"alpha_matting_erode_size": "x"}, "alpha_matting_erode_size"),
        ({"alpha_matting_background_threshold": "300"}, "alpha_matting_background_threshold"),
        ({"bgcolor": "1,2"}, "bgcolor"),
        ({"bgcolor": "1,2,300"}, "bgcolor"),
    ],
)
def test_form_errors_name_their_field_too(fields: dict[str, str], field: str) -> None:
    with pytest.raises(BadRequest) as error:
        CutoutOptions().with_fields(fields.get)
    assert error.value.field == field


# --- issue 15: formats per dialect, framing values built by the dialects -------------------


def test_a_dialect_passes_the_formats_it_takes() -> None:
    formats: tuple[OutputFormat, ...] = ("png", "jpg", "zip", "webp", "auto")
    assert CutoutOptions().with_fields({"output_format": "JPG"}.get, formats).output_format == "jpg"
    assert CutoutOptions(output_format="zip").checked(formats).output_format == "zip"
    # The older dialects' default stays png and webp alone.
    assert refused(output_format="jpg") == "output_format: must be one of png, webp"
    with pytest.raises(BadRequest) as error:
        CutoutOptions(output_format="auto").checked()
    assert error.value.messages == ("output_format: must be one of png, webp",)


@pytest.mark.parametrize(
    "field", ["crop", "crop_margin", "roi", "scale", "position", "decontaminate", "bg_image"]
)
def test_framing_options_are_not_form_fields(field: str) -> None:
    # The older dialects' clients sending these get today's cut-out, as before.
    assert parse(**{field: "10%"}) == CutoutOptions()


def test_checked_takes_valid_framing() -> None:
    options = CutoutOptions(
        crop=True,
        crop_margin=Margin(Length(30, "px"), Length(10, "%"), Length(0), Length(500, "px")),
        roi=Region(Length(0), Length(10, "%"), Length(100, "%"), Length(300, "px")),
        scale=0.1,
        position=Position(0.0, 1.0),
        decontaminate=True,
        bg_image=b"\x89PNG",
        max_output_pixels=250_000,
    )
    assert options.checked() is options
    assert CutoutOptions(scale=1.0, position=Position(1.0, 0.0)).checked().scale == 1.0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"scale": 0.09}, "scale", "scale: must be from 0.1 to 1"),
        ({"scale": 1.01}, "scale", "scale: must be from 0.1 to 1"),
        ({"scale": float("nan")}, "scale", "scale: must be from 0.1 to 1"),
        ({"position": Position(-0.1, 0.5)}, "position", "position: must be from 0 to 1"),
        ({"position": Position(0.5, 1.5)}, "position", "position: must be from 0 to 1"),
        (
            {"crop_margin": Margin(Length(-1, "px"))},
            "crop_margin",
            "crop_margin: must be from 0 to 1e+07",
        ),
        (
            {"crop_margin": Margin(left=Length(1, "em"))},  # type: ignore[arg-type]
            "crop_margin",
            "crop_margin: lengths must be in px or %",
        ),
        (
            {"roi": Region(Length(50, "%"), Length(0), Length(40, "%"), Length(10, "px"))},
            "roi",
            "roi: x2 and y2 must be greater than x1 and y1",
        ),
        (
            {"roi": Region(Length(0), Length(0), Length(float("inf"), "px"), Length(1, "px"))},
            "roi",
            "roi: must be from 0 to 1e+07",
        ),
        ({"max_output_pixels": 0}, "max_output_pixels", "max_output_pixels: must be at least 1"),
        ({"bg_image": b""}, "bg_image", "bg_image: is empty"),
    ],
)
def test_checked_refuses_bad_framing_naming_the_field(
    changes: dict[str, object], field: str, message: str
) -> None:
    options = dataclasses.replace(CutoutOptions(), **changes)  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as error:
        options.checked()
    assert error.value.messages == (message,)
    assert error.value.field == field
