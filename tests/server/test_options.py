"""Validation of the cut-out options, field by field (shared by every dialect)."""

from __future__ import annotations

import pytest

from server.errors import BadRequest
from server.options import CutoutOptions


def parse(**fields: str) -> CutoutOptions:
    return CutoutOptions().with_fields(fields.get)


def test_defaults_are_the_plain_cutout() -> None:
    options = parse()
    assert options == CutoutOptions()
    assert not options.alpha_matting and not options.only_mask and options.bgcolor is None


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
    assert options == CutoutOptions("webp", True, True, True, 200, 20, 5, (255, 0, 0))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("255,0,0", (255, 0, 0)), ("[0, 128, 255]", (0, 128, 255)), (" 1,2,3,4 ", (1, 2, 3, 4))],
)
def test_bgcolor_forms(raw: str, expected: tuple[int, ...]) -> None:
    assert parse(bgcolor=raw).bgcolor == expected


def test_empty_fields_count_as_not_sent() -> None:
    assert parse(alpha_matting="", bgcolor=" ") == CutoutOptions()


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("output_format", "gif", "output_format: must be one of png, webp"),
        ("only_mask", "maybe", "only_mask: must be true or false"),
        ("post_process_mask", "2", "post_process_mask: must be true or false"),
        ("alpha_matting", "yes please", "alpha_matting: must be true or false"),
        ("alpha_matting_foreground_threshold", "256", "must be an integer from 0 to 255"),
        ("alpha_matting_foreground_threshold", "-1", "must be an integer from 0 to 255"),
        ("alpha_matting_background_threshold", "1.5", "must be an integer from 0 to 255"),
        ("alpha_matting_background_threshold", "ten", "must be an integer from 0 to 255"),
        ("alpha_matting_erode_size", "-3", "alpha_matting_erode_size: must be an integer from 0"),
        ("alpha_matting_erode_size", "101", "alpha_matting_erode_size: must be an integer from 0"),
        ("bgcolor", "red", "bgcolor: must be 3 or 4 integers from 0 to 255"),
        ("bgcolor", "255,0", "bgcolor: must be 3 or 4 integers"),
        ("bgcolor", "1,2,3,4,5", "bgcolor: must be 3 or 4 integers"),
        ("bgcolor", "256,0,0", "bgcolor: must be 3 or 4 integers"),
        ("bgcolor", "-1,0,0", "bgcolor: must be 3 or 4 integers"),
        ("bgcolor", "[1,2,3", "bgcolor: must be 3 or 4 integers"),
    ],
)
def test_bad_values_name_the_field(field: str, raw: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse(**{field: raw})
    assert len(refused.value.messages) == 1
    assert refused.value.messages[0].startswith(field)
    assert message in refused.value.messages[0]


def test_thresholds_must_leave_an_unknown_band() -> None:
    with pytest.raises(BadRequest, match="must be greater than"):
        parse(alpha_matting_foreground_threshold="10", alpha_matting_background_threshold="10")
