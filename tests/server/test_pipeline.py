"""server.pipeline: decode -> predict -> matte -> encode, on fake engines (no model)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from server import compositing, isnet, matting
from server.admission import Admission
from server.errors import ApiError, BadRequest, Unavailable
from server.imaging import OutputFormat, encode
from server.metrics import Metrics
from server.options import CutoutOptions
from server.pipeline import Cutout, Decoded, Pipeline
from server.rendering import Rendered
from server.scheduler import Scheduler
from server.settings import Settings
from tests.fakes import BrightnessEngine

Pixels = npt.NDArray[np.uint8]
SIDE = isnet.SIDE
STAGES = ("decode", "predict", "matte", "encode")


class PrescribedEngine(BrightnessEngine):
    """Predicts the same (1024, 1024) map for every image. A map that holds 0 and 255 is
    the mask itself for a 1024 x 1024 photo (to_mask's min-max scaling is then exact and
    there is no resize), so a test knows every mask value."""

    def __init__(self, prediction: npt.NDArray[np.float32]) -> None:
        super().__init__()
        self.prediction = prediction

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.batches.append(len(batch))
        return np.repeat(self.prediction[None], len(batch), axis=0)


class RecordingPipeline(Pipeline):
    """Records the thread each matte stage runs on."""

    def __init__(
        self, scheduler: Scheduler, admission: Admission, settings: Settings, metrics: Metrics
    ) -> None:
        super().__init__(scheduler, admission, settings, metrics)
        self.matte_threads: list[str] = []

    def _matte(self, decoded: Decoded, prediction: np.ndarray, options: CutoutOptions) -> Rendered:
        self.matte_threads.append(threading.current_thread().name)
        return super()._matte(decoded, prediction, options)


@dataclasses.dataclass
class Run:
    """One pipeline with one slot over a scheduler; `cutout` runs requests through it.
    With `stopped`, the scheduler is started and stopped before the first request (a
    server shutting down)."""

    engine: BrightnessEngine
    settings: Settings
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    stopped: bool = False

    def __post_init__(self) -> None:
        # A slot that is never handed back makes the next request wait this long, then 503.
        self.admission = Admission(slots=1, line=0, max_wait_s=1, metrics=self.metrics, uploads=1)
        self.scheduler = Scheduler(self.engine)
        self.pipeline = RecordingPipeline(
            self.scheduler, self.admission, self.settings, self.metrics
        )

    def cutout(self, *requests: tuple[bytes, CutoutOptions]) -> list[Cutout | ApiError]:
        """Each request in turn: its cut-out, or the ApiError it ended in."""

        async def main() -> list[Cutout | ApiError]:
            await self.scheduler.start()
            if self.stopped:
                await self.scheduler.stop()
            results: list[Cutout | ApiError] = []
            try:
                for data, options in requests:
                    try:
                        with self.admission.ticket() as ticket:
                            results.append(await self.pipeline.cutout(ticket, data, options, None))
                    except ApiError as error:
                        results.append(error)
            finally:
                await self.scheduler.stop()
            return results

        return asyncio.run(main())

    def one(self, data: bytes, options: CutoutOptions | None = None) -> Cutout:
        (result,) = self.cutout((data, options or CutoutOptions()))
        assert isinstance(result, Cutout), result
        return result

    def stage_count(self, stage: str) -> float | None:
        return self.metrics.registry.get_sample_value("matte_stage_seconds_count", {"stage": stage})

    def stage_sum(self, stage: str) -> float | None:
        return self.metrics.registry.get_sample_value("matte_stage_seconds_sum", {"stage": stage})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path)


def to_png(pixels: Pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def read(cutout: Cutout) -> Image.Image:
    image = Image.open(io.BytesIO(cutout.data))
    image.load()
    return image


def disc_photo(side: int = 96) -> Pixels:
    """A bright orange disc (the fake's 'foreground') on dark green, hard-edged."""
    y, x = np.mgrid[:side, :side]
    inside = np.hypot(y - side / 2, x - side / 2) < side / 3
    return np.where(inside[..., None], [250, 180, 90], [20, 90, 30]).astype(np.uint8)


def soft_disc_prediction() -> npt.NDArray[np.float32]:
    """A disc with an 80 px ramp at the model's size, 0 outside and 255 inside."""
    y, x = np.mgrid[:SIDE, :SIDE]
    ramp = (SIDE / 3 - np.hypot(y - SIDE / 2, x - SIDE / 2)) / 80 + 0.5
    prediction: npt.NDArray[np.float32] = np.rint(np.clip(ramp, 0, 1) * 255).astype(np.float32)
    return prediction


# --- the stages ---------------------------------------------------------------------------


def test_every_stage_is_timed_once_within_the_request(settings: Settings) -> None:
    run = Run(BrightnessEngine(), settings)
    started = time.perf_counter()
    run.one(to_png(disc_photo()))
    elapsed = time.perf_counter() - started
    for stage in STAGES:
        assert run.stage_count(stage) == 1, stage
        seconds = run.stage_sum(stage)
        assert seconds is not None and 0 < seconds <= elapsed, (stage, seconds)


def test_the_engine_sees_the_photo_at_the_models_size(settings: Settings) -> None:
    engine = BrightnessEngine()
    cutout = Run(engine, settings).one(to_png(disc_photo()), CutoutOptions(only_mask=True))
    assert engine.batches == [1]
    mask = np.asarray(read(cutout))
    # The fake calls the bright disc foreground: the mask is the disc, at the photo's size.
    assert mask.shape == (96, 96)
    assert mask[48, 48] == 255 and mask[2, 2] == 0


@pytest.mark.parametrize(
    ("fmt", "media_type", "magic"),
    [("png", "image/png", b"\x89PNG\r\n\x1a\n"), ("webp", "image/webp", b"RIFF")],
)
def test_output_format_and_media_type(
    settings: Settings, fmt: OutputFormat, media_type: str, magic: bytes
) -> None:
    options = CutoutOptions(output_format=fmt)
    cutout = Run(BrightnessEngine(), settings).one(to_png(disc_photo()), options)
    assert cutout.media_type == media_type
    assert cutout.data.startswith(magic)
    image = read(cutout)
    assert image.format == fmt.upper() and image.mode == "RGBA" and image.size == (96, 96)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_encoding_uses_the_settings_level_and_quality(
    settings: Settings, fmt: OutputFormat
) -> None:
    # Away from the defaults (level 1, quality 90), so that dropping either shows.
    tuned = dataclasses.replace(settings, png_compress_level=9, webp_quality=20)
    photo = to_png(disc_photo())
    pixels = np.asarray(read(Run(BrightnessEngine(), tuned).one(photo)))  # lossless PNG
    cutout = Run(BrightnessEngine(), tuned).one(photo, CutoutOptions(output_format=fmt))
    assert cutout.data == encode(pixels, fmt, png_level=9, webp_quality=20)
    assert cutout.data != encode(pixels, fmt, png_level=1, webp_quality=90)


# (min_side, min_pixels, max_pixels) away from the defaults (64, 4,096, 4,194,304).
@pytest.mark.parametrize(
    ("limits", "size", "message"),
    [
        ((100, 4_096, 4_194_304), (99, 120), "image: width and height must be at least 100 pixels"),
        ((64, 20_000, 4_194_304), (120, 120), "image: must have at least 20,000 pixels"),
        ((64, 4_096, 10_000), (120, 120), "image: must have at most 10,000 pixels, got 14,400"),
    ],
)
def test_decode_limits_come_from_the_settings(
    settings: Settings, limits: tuple[int, int, int], size: tuple[int, int], message: str
) -> None:
    min_side, min_pixels, max_pixels = limits
    limited = dataclasses.replace(
        settings, min_side=min_side, min_pixels=min_pixels, max_pixels=max_pixels
    )
    photo = to_png(np.zeros((size[1], size[0], 3), dtype=np.uint8))
    (error,) = Run(BrightnessEngine(), limited).cutout((photo, CutoutOptions()))
    assert isinstance(error, BadRequest) and error.messages == (message,)


# --- the mask -----------------------------------------------------------------------------


# (mask from the model, the input's own alpha, the cut-out's alpha = mask * alpha // 255)
ALPHA_PRODUCTS = [
    (255, 255, 255),
    (255, 0, 0),
    (0, 255, 0),
    (255, 100, 100),
    (100, 255, 100),
    (200, 200, 156),  # 156.9: truncated, not rounded
    (128, 128, 64),
    (1, 254, 0),  # 0.996
    (37, 91, 13),
]


def alpha_photo() -> tuple[bytes, PrescribedEngine]:
    """A 1024 x 1024 RGBA photo and an engine whose mask is known: one band of rows for
    every line of ALPHA_PRODUCTS."""
    rows = SIDE // len(ALPHA_PRODUCTS)
    prediction = np.zeros((SIDE, SIDE), dtype=np.float32)
    rgba = np.full((SIDE, SIDE, 4), 200, dtype=np.uint8)
    for i, (mask, alpha, _) in enumerate(ALPHA_PRODUCTS):
        prediction[i * rows : (i + 1) * rows] = mask
        rgba[i * rows : (i + 1) * rows, :, 3] = alpha
    return to_png(rgba), PrescribedEngine(prediction)


@pytest.mark.parametrize("only_mask", [True, False])
def test_the_inputs_own_alpha_multiplies_the_mask(settings: Settings, only_mask: bool) -> None:
    photo, engine = alpha_photo()
    image = read(Run(engine, settings).one(photo, CutoutOptions(only_mask=only_mask)))
    alpha = np.asarray(image) if only_mask else np.asarray(image)[:, :, 3]
    rows = SIDE // len(ALPHA_PRODUCTS)
    for i, (mask, own, expected) in enumerate(ALPHA_PRODUCTS):
        band = alpha[i * rows : (i + 1) * rows]
        assert np.all(band == expected), (mask, own, np.unique(band))


def test_only_mask_is_the_l_mask(settings: Settings) -> None:
    prediction = soft_disc_prediction()
    photo = to_png(np.full((SIDE, SIDE, 3), 90, dtype=np.uint8))
    cutout = Run(PrescribedEngine(prediction), settings).one(photo, CutoutOptions(only_mask=True))
    image = read(cutout)
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), prediction.astype(np.uint8))


@pytest.mark.parametrize("only_mask", [True, False])
def test_inverse_mask_is_the_mask_with_black_and_white_swapped(
    settings: Settings, only_mask: bool
) -> None:
    # A mask whatever only_mask says; the input's own transparency counts as background.
    photo, engine = alpha_photo()
    options = CutoutOptions(only_mask=only_mask, inverse_mask=True)
    image = read(Run(engine, settings).one(photo, options))
    assert image.mode == "L"
    rows = SIDE // len(ALPHA_PRODUCTS)
    for i, (mask, own, expected) in enumerate(ALPHA_PRODUCTS):
        band = np.asarray(image)[i * rows : (i + 1) * rows]
        assert np.all(band == 255 - expected), (mask, own, np.unique(band))


def test_post_process_mask_smooths_the_models_mask(settings: Settings) -> None:
    prediction = soft_disc_prediction()
    photo = to_png(np.full((SIDE, SIDE, 3), 90, dtype=np.uint8))
    options = CutoutOptions(only_mask=True, post_process_mask=True)
    mask = np.asarray(read(Run(PrescribedEngine(prediction), settings).one(photo, options)))
    expected = compositing.post_process_mask(prediction.astype(np.uint8))
    np.testing.assert_array_equal(mask, expected)
    assert not np.array_equal(expected, prediction)  # it did smooth (binary now)


def test_bgcolor_composites_over_the_colour(settings: Settings) -> None:
    prediction = np.zeros((SIDE, SIDE), dtype=np.float32)
    prediction[:, 400:] = 128
    prediction[:, 700:] = 255
    photo = to_png(np.full((SIDE, SIDE, 3), 200, dtype=np.uint8))
    options = CutoutOptions(bgcolor=(10, 20, 30))
    out = np.asarray(read(Run(PrescribedEngine(prediction), settings).one(photo, options)))
    assert out.shape == (SIDE, SIDE, 4) and np.all(out[:, :, 3] == 255)
    assert np.all(out[:, :400, :3] == (10, 20, 30))
    assert np.all(out[:, 700:, :3] == 200)
    # 200 * 128/255 + c * 127/255: 105.4, 110.4, 115.4.
    assert np.all(out[:, 400:700, :3] == (105, 110, 115))


def test_without_bgcolor_the_cutout_is_transparent_outside(settings: Settings) -> None:
    prediction = np.zeros((SIDE, SIDE), dtype=np.float32)
    prediction[:, 512:] = 255
    photo = to_png(np.full((SIDE, SIDE, 3), 200, dtype=np.uint8))
    out = np.asarray(read(Run(PrescribedEngine(prediction), settings).one(photo)))
    assert np.all(out[:, :512] == 0)
    assert np.all(out[:, 512:] == (200, 200, 200, 255))


# --- alpha matting ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm() -> None:
    # pymatting's numba code loads once (or compiles, ~40 s on a cold cache) for the module.
    matting.warm_up()


@functools.cache
def matting_case() -> tuple[Pixels, npt.NDArray[np.float32], Pixels]:
    """A small two-colour photo with a soft-edged disc, a sloppy prediction of it at the
    model's size, and the mask the pipeline makes of that prediction for the photo."""
    y, x = np.mgrid[:96, :96]
    radius = np.hypot(y - 48, x - 48)
    true_alpha = np.clip((30 - radius) / 3, 0, 1)[..., None]
    rgb = np.rint(true_alpha * [250, 180, 90] + (1 - true_alpha) * [20, 90, 30]).astype(np.uint8)
    y, x = np.mgrid[:SIDE, :SIDE] * (96 / SIDE)
    sloppy = np.clip((34 - np.hypot(y - 48, x - 48)) / 8, 0, 1)
    prediction = np.rint(sloppy * 255).astype(np.float32)
    return rgb, prediction, isnet.to_mask(prediction, (96, 96))


@functools.cache
def refine(fg: int, bg: int, erode: int, max_unknown: int) -> tuple[Pixels, Pixels]:
    """refine_alpha on the matting case's photo and mask (once per set of arguments)."""
    rgb, _, mask = matting_case()
    refined = matting.refine_alpha(rgb, mask, fg, bg, erode, max_unknown_pixels=max_unknown)
    assert refined is not None
    return refined


DEFAULT_MATTING = (240, 10, 10, 65_536)


# Each case moves one of the four away from the defaults, far enough to change the matte:
# a low foreground threshold (or a high background one) with no erosion makes pixels of
# the photo's soft edge known, which the matte must then keep at exactly 255 (or 0).
@pytest.mark.parametrize(
    ("fg", "bg", "erode", "max_unknown"),
    [
        DEFAULT_MATTING,
        (100, 10, 0, 65_536),
        (250, 150, 0, 65_536),
        (240, 10, 3, 65_536),
        (240, 10, 10, 600),
    ],
)
def test_alpha_matting_refines_with_the_requests_options(
    settings: Settings, warm: None, fg: int, bg: int, erode: int, max_unknown: int
) -> None:
    rgb, prediction, mask = matting_case()
    options = CutoutOptions(
        alpha_matting=True,
        alpha_matting_foreground_threshold=fg,
        alpha_matting_background_threshold=bg,
        alpha_matting_erode_size=erode,
    )
    tuned = dataclasses.replace(settings, matting_max_unknown_pixels=max_unknown)
    out = np.asarray(read(Run(PrescribedEngine(prediction), tuned).one(to_png(rgb), options)))

    alpha, foreground = refine(fg, bg, erode, max_unknown)
    # The matte's alpha and its decontaminated colours, not the photo's.
    np.testing.assert_array_equal(out, compositing.composite(foreground, alpha))
    assert not np.array_equal(alpha, mask) and not np.array_equal(foreground, rgb)
    if (fg, bg, erode, max_unknown) != DEFAULT_MATTING:
        # The case has power: ignoring the changed value would change the matte.
        assert not np.array_equal(alpha, refine(*DEFAULT_MATTING)[0])


def test_alpha_matting_with_nothing_to_propagate_keeps_the_mask(
    settings: Settings, warm: None
) -> None:
    # All foreground but one row: eroded, the trimap has no background, so refine_alpha
    # gives None and the plain mask stays.
    prediction = np.full((SIDE, SIDE), 255, dtype=np.float32)
    prediction[0] = 0
    photo = to_png(np.full((SIDE, SIDE, 3), 90, dtype=np.uint8))
    options = CutoutOptions(alpha_matting=True, only_mask=True)
    mask = np.asarray(read(Run(PrescribedEngine(prediction), settings).one(photo, options)))
    np.testing.assert_array_equal(mask, prediction.astype(np.uint8))


@pytest.mark.parametrize("alpha_matting", [True, False])
def test_matting_takes_a_model_thread_and_plain_matte_does_not(
    settings: Settings, warm: None, alpha_matting: bool
) -> None:
    # Matting costs as much CPU as the model: it must run on the scheduler's threads
    # ("matte-predict_N"), inside the model's concurrency bound. The plain matte (a resize
    # and a composite) leaves those threads to the model.
    run = Run(BrightnessEngine(), settings)
    run.one(to_png(disc_photo()), CutoutOptions(alpha_matting=alpha_matting))
    (thread,) = run.pipeline.matte_threads
    assert thread.startswith("matte-predict") == alpha_matting, thread


# --- errors -------------------------------------------------------------------------------


def test_a_stopped_scheduler_answers_shutting_down(settings: Settings) -> None:
    run = Run(BrightnessEngine(), settings, stopped=True)
    (error,) = run.cutout((to_png(disc_photo()), CutoutOptions()))
    assert isinstance(error, Unavailable)
    assert error.status == 503
    assert error.messages == ("server: shutting down, please retry shortly",)
    assert error.headers == {"retry-after": "1"}
    assert error.__cause__ is None and error.__suppress_context__
    assert not run.stage_count("predict")  # no model time to report


@pytest.mark.parametrize("stopped", [False, True])
def test_the_slot_is_released_after_an_error(settings: Settings, stopped: bool) -> None:
    # One slot: a request that fails (a bad upload, or a scheduler shutting down) must
    # hand it back, or the next one would wait for max_wait_s and get a 503.
    run = Run(BrightnessEngine(), settings, stopped=stopped)
    photo = to_png(disc_photo())
    results = run.cutout(
        (photo if stopped else b"not an image", CutoutOptions()), (photo, CutoutOptions())
    )
    assert isinstance(results[0], Unavailable if stopped else BadRequest)
    # The second request got the slot: its own answer, not a wait for one ("no capacity
    # within 1 seconds").
    second = results[1]
    if stopped:
        assert isinstance(second, Unavailable)
        assert second.messages == ("server: shutting down, please retry shortly",)
    else:
        assert isinstance(second, Cutout)
    assert run.admission.busy_slots == 0
    assert run.metrics.registry.get_sample_value("matte_images_in_flight") == 0
