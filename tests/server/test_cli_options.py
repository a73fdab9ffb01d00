"""`matte remove`'s cut-out flags (server/option_flags.py): one per CutoutOptions field,
each parsed as the API parses that field."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from server.errors import BadRequest
from server.option_flags import add_option_flags, form_fields, option_flags, options_from
from server.option_text import CENTER, Length, Margin, Region
from server.options import CutoutOptions


def parsed(*argv: str, output_format: str | None = None) -> CutoutOptions:
    flags = option_flags()
    parser = argparse.ArgumentParser()
    add_option_flags(parser, flags)
    return options_from(parser.parse_args(list(argv)), flags, output_format)


def test_every_field_of_the_options_has_a_flag() -> None:
    # A field added to CutoutOptions without a flag here fails this test.
    fields = {field.name for field in dataclasses.fields(CutoutOptions)}
    assert {flag.field for flag in option_flags()} == fields
    assert len({flag.flag for flag in option_flags()}) == len(fields)


def test_the_form_fields_are_those_the_stability_form_reads() -> None:
    # Named here as README's table of the endpoint names them, not read from the code.
    assert sorted(form_fields()) == sorted(
        [
            "output_format",
            "only_mask",
            "post_process_mask",
            "alpha_matting",
            "alpha_matting_foreground_threshold",
            "alpha_matting_background_threshold",
            "alpha_matting_erode_size",
            "bgcolor",
        ]
    )


def test_no_flags_are_the_plain_cutout() -> None:
    assert parsed() == CutoutOptions()


def test_the_form_fields_flags() -> None:
    options = parsed(
        "--format",
        "WEBP",
        "--only-mask",
        "--post-process-mask",
        "--alpha-matting",
        "--alpha-matting-foreground-threshold",
        "200",
        "--alpha-matting-background-threshold",
        "+20",
        "--alpha-matting-erode-size",
        "5",
        "--bgcolor",
        "[1, 2, 3, 4]",
    )
    assert options == CutoutOptions(
        output_format="webp",
        only_mask=True,
        post_process_mask=True,
        alpha_matting=True,
        alpha_matting_foreground_threshold=200,
        alpha_matting_background_threshold=20,
        alpha_matting_erode_size=5,
        bgcolor=(1, 2, 3, 4),
    )
    assert parsed("-f", "jpg").output_format == "jpg"
    assert parsed("--output-format", "auto").output_format == "auto"
    assert parsed("--no-only-mask").only_mask is False


def test_the_framing_flags(tmp_path: Path) -> None:
    backdrop = tmp_path / "backdrop.png"
    backdrop.write_bytes(b"the image's bytes")
    options = parsed(
        "--crop",
        "--crop-margin",
        "10px 5%",
        "--roi",
        "0 0 50% 100px",
        "--scale",
        "80%",
        "--position",
        "center",
        "--decontaminate",
        "--inverse-mask",
        "--bg-image",
        str(backdrop),
        "--size",
        "preview",
        "--bgcolor",
        "#00ff0080",
    )
    px10, pc5 = Length(10.0, "px"), Length(5.0, "%")
    assert options == dataclasses.replace(
        CutoutOptions(),
        crop=True,
        crop_margin=Margin(px10, pc5, px10, pc5),
        roi=Region(Length(0.0), Length(0.0), Length(50.0, "%"), Length(100.0, "px")),
        scale=0.8,
        position=CENTER,
        decontaminate=True,
        inverse_mask=True,
        bg_image=b"the image's bytes",
        max_output_pixels=250_000,
        bgcolor=(0, 255, 0, 128),
    )


def test_the_extension_gives_the_format_unless_format_is_given() -> None:
    assert parsed(output_format="webp").output_format == "webp"
    assert parsed("--format", "png", output_format="webp").output_format == "png"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--alpha-matting-erode-size", "101"],
            "alpha_matting_erode_size: must be an integer from 0 to 100",
        ),
        (
            ["--alpha-matting-foreground-threshold", "x"],
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
        ),
        (
            [
                "--alpha-matting-foreground-threshold",
                "10",
                "--alpha-matting-background-threshold",
                "10",
            ],
            "alpha_matting_foreground_threshold: must be greater than "
            "alpha_matting_background_threshold",
        ),
        (["--scale", "5%"], "scale: must be a percentage from 10% to 100%, or original"),
        (
            ["--size", "huge"],
            "size: must be one of preview, small, regular, medium, hd, full, 4k, auto, 50mp",
        ),
        (
            ["--crop-margin", "1 2 3"],
            "crop_margin: must be 1, 2 or 4 lengths like 30px or 10% (top right bottom left)",
        ),
    ],
)
def test_a_bad_value_is_refused_with_the_apis_message(argv: list[str], message: str) -> None:
    with pytest.raises(BadRequest) as error:
        parsed(*argv)
    assert error.value.messages == (message,)


def test_help_names_each_flag_with_its_default() -> None:
    parser = argparse.ArgumentParser(prog="x")
    add_option_flags(parser, option_flags())
    text = " ".join(parser.format_help().split())
    assert "--alpha-matting-erode-size N matting: pixels by which both sure regions are " in text
    assert "eroded (default: 10)" in text
    assert "--alpha-matting-foreground-threshold N" in text and "(default: 240)" in text
    assert "-f FORMAT, --format FORMAT, --output-format FORMAT" in text
    assert "--crop-margin MARGIN" in text and "--size PRESET" in text
