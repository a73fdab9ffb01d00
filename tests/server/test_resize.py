"""Band-parallel resizing gives exactly the pixels of one whole `Image.resize`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from server import cores as cores_module
from server.resize import resize

LANCZOS = Image.Resampling.LANCZOS


@pytest.fixture(params=[2, 3, 7])
def cores(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """As if the machine had this many cores (bands), whatever it has."""
    monkeypatch.setattr(cores_module, "cores", lambda: request.param)
    yield request.param


def noise(width: int, height: int, mode: str = "L") -> Image.Image:
    """Random pixels: the worst case for rounding, where a real photo hides differences."""
    channels = {"L": 1, "RGB": 3}[mode]
    values = np.random.default_rng(width * height).integers(0, 256, (height, width, channels))
    return Image.fromarray(values.astype(np.uint8).squeeze(), mode)


@pytest.mark.parametrize(
    ("source", "target", "mode"),
    [
        ((1672, 2508), (1024, 1024), "RGB"),  # a 4 MP photo down to the model's side
        ((2508, 1672), (1024, 1024), "RGB"),  # the same, landscape: the width shrinks more
        ((1024, 1024), (1672, 2508), "L"),  # the mask back up
        ((816, 1224), (1024, 1024), "RGB"),  # 1 MP: up in one axis, down in the other
        ((1224, 816), (1024, 1024), "RGB"),
        ((1024, 1024), (1672, 1536), "L"),
        ((1024, 1024), (1672, 768), "L"),  # the height shrinks, the width grows
        ((1024, 1024), (3001, 1536), "L"),  # odd sizes, bands of unequal height
        ((1024, 1024), (1000, 1023), "L"),  # no whole source row to cut the height at
        ((2048, 2048), (1024, 1024), "RGB"),
    ],
)
def test_bands_give_the_whole_resize_exactly(
    cores: int, source: tuple[int, int], target: tuple[int, int], mode: str
) -> None:
    image = noise(*source, mode=mode)
    whole = image.resize(target, LANCZOS, reducing_gap=3.0)
    banded = resize(image, target, LANCZOS, reducing_gap=3.0)
    assert banded.size == whole.size and banded.mode == whole.mode
    assert np.array_equal(np.asarray(banded), np.asarray(whole))


def calls_to_pillow(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The `box` of every Image.resize call from here on."""
    calls: list[object] = []
    original = Image.Image.resize

    def spy(self: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("box"))
        return original(self, size, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "resize", spy)
    return calls


def test_a_large_resize_is_cut_into_one_band_per_core(
    cores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = calls_to_pillow(monkeypatch)
    resize(noise(1024, 1024), (1024, 2560), LANCZOS)  # the height pass only
    assert len(calls) == cores
    tops = sorted(box[1] for box in calls if isinstance(box, tuple))
    assert tops[0] == 0.0 and len(set(tops)) == cores


def test_a_small_resize_or_a_box_reduce_stays_whole(
    cores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Image.Image.resize
    calls = calls_to_pillow(monkeypatch)
    resize(noise(64, 64), (100, 100), LANCZOS)  # under MIN_BAND_PIXELS
    # 6144 rows down to 1024 is a 6x shrink: with reducing_gap 3 Pillow box-reduces
    # by 2 first, whose blocks a band would start at its own edge.
    tall = noise(600, 6144)
    assert np.array_equal(
        np.asarray(resize(tall, (1024, 1024), LANCZOS, reducing_gap=3.0)),
        np.asarray(original(tall, (1024, 1024), LANCZOS, reducing_gap=3.0)),
    )
    assert calls == [None, None]
