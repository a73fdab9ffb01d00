"""The pipeline every dialect shares: decode -> predict -> matte -> encode.

decode: the photo (shrunk to a size preset's cap), the region the model looks at, a
background image; predict: the model on that region; matte: the mask back up to the
photo, matting, then rendering.py (edge colours, framing, background, format); encode.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from . import compositing, isnet, matting, rendering, request_log
from .admission import Admission, Ticket
from .backdrop import decode_background
from .errors import Unavailable
from .framing import Box, resolve_region, scaled_box
from .imaging import MEDIA_TYPES, Limits, Picture, decode, downscaled, encode
from .metrics import Metrics
from .options import CutoutOptions
from .presence import ClientGone, Presence
from .scheduler import ModelTimedOut, Scheduler, SchedulerStopped
from .settings import Settings


@dataclass(frozen=True)
class Cutout:
    data: bytes
    media_type: str
    width: int  # of the output image
    height: int
    # The subject's box in the output's pixels (framing.foreground_box); None: empty mask.
    foreground: Box | None
    has_transparency: bool


@dataclass(frozen=True)
class Decoded:
    picture: Picture
    small: np.ndarray  # the model's input
    region: Box | None  # roi in the picture's pixels: where the model looked
    background: Picture | None


class Pipeline:
    def __init__(
        self, scheduler: Scheduler, admission: Admission, settings: Settings, metrics: Metrics
    ) -> None:
        self.scheduler = scheduler
        self.admission = admission
        self.settings = settings
        self.metrics = metrics
        self.limits = Limits(settings.min_side, settings.min_pixels, settings.max_pixels)
        # A background is only scaled to cover: its pixels are bounded, not its smallness
        # (the minimums are the model's), so a 1 x 1 swatch is a colour.
        self.background_limits = Limits(1, 1, settings.max_pixels)

    async def cutout(
        self, ticket: Ticket, data: bytes, options: CutoutOptions, receive: Receive | None
    ) -> Cutout:
        """Wait for a pipeline slot (first come, first served), then cut the image out.

        `receive`: the request's, its body already read; a client that disconnects
        leaves the line or stops before the next stage (ClientGone: a 499). A stage
        already running on a thread finishes first, holding its slot, so the
        memory bound holds.
        """
        try:
            async with Presence(receive) as presence:
                return await self._cutout(ticket, data, options, presence)
        except ClientGone:
            self.metrics.rejected.labels("disconnected").inc()
            raise

    async def _cutout(
        self, ticket: Ticket, data: bytes, options: CutoutOptions, presence: Presence
    ) -> Cutout:
        async with contextlib.AsyncExitStack() as held:
            queued = time.perf_counter()
            try:
                await presence.unless_gone(held.enter_async_context(ticket.slot()), "while in line")
            finally:  # also the wait of a request refused after it (503) or gone (499)
                request_log.note_queue_wait(time.perf_counter() - queued)
            decoded = await run_in_threadpool(self._decode, data, options)
            picture, small = decoded.picture, decoded.small
            started = time.perf_counter()
            try:
                prediction = await presence.unless_gone(
                    self.scheduler.predict(small), "while waiting for the model"
                )
            except SchedulerStopped:
                raise Unavailable("server: shutting down, please retry shortly") from None
            except ModelTimedOut:
                message = "server: the model did not answer in time, please retry shortly"
                raise Unavailable(message) from None
            self.metrics.observe_stage("predict", time.perf_counter() - started)
            # (A client gone by the time the prediction came is caught by that wait.)
            del small
            if options.alpha_matting or rendering.estimates_colours(options):
                # Matting, or the edge colours' estimate (~0.5 s of CPU at 4 MP), costs
                # as much CPU as the model: it takes a model thread.
                matted = await self.scheduler.run_bounded(self._matte, decoded, prediction, options)
            else:
                matted = await run_in_threadpool(self._matte, decoded, prediction, options)
            del decoded, picture, prediction
            presence.check("before encoding")
            encoded = await run_in_threadpool(self._encode, matted.pixels, matted.fmt)
        width, height = matted.size
        return Cutout(
            encoded,
            MEDIA_TYPES[matted.fmt],
            width,
            height,
            matted.foreground,
            matted.has_transparency,
        )

    def _decode(self, data: bytes, options: CutoutOptions) -> Decoded:
        with self.metrics.stage("decode"):
            picture = decode(data, self.limits)
            request_log.note_image(*picture.size, len(data))
            width, height = picture.size
            region = None if options.roi is None else resolve_region(options.roi, width, height)
            # The background first: a bad one is refused before the model's time is spent.
            background = None
            if options.bg_image is not None:
                background = decode_background(options.bg_image, self.background_limits)
            picture, factor = downscaled(picture, options.max_output_pixels)
            if region is not None and factor != 1.0:
                region = scaled_box(region, factor, *picture.size)
            rgb = picture.rgb
            if region is not None:
                rgb = rgb[region.top : region.bottom, region.left : region.right]
            return Decoded(picture, isnet.to_model_size(rgb), region, background)

    def _matte(
        self, decoded: Decoded, prediction: np.ndarray, options: CutoutOptions
    ) -> rendering.Rendered:
        """The output's pixels, the subject's box in them and whether any is transparent."""
        with self.metrics.stage("matte"):
            picture, region = decoded.picture, decoded.region
            if region is None:
                mask = isnet.to_mask(prediction, picture.size)
            else:
                # Outside the region of interest is background.
                mask = np.zeros(picture.rgb.shape[:2], dtype=np.uint8)
                inside = isnet.to_mask(prediction, (region.width, region.height))
                mask[region.top : region.bottom, region.left : region.right] = inside
            if options.post_process_mask:
                mask = compositing.post_process_mask(mask)
            rgb = picture.rgb
            if options.alpha_matting:
                refined = matting.refine_alpha(
                    rgb,
                    mask,
                    fg_threshold=options.alpha_matting_foreground_threshold,
                    bg_threshold=options.alpha_matting_background_threshold,
                    erode_size=options.alpha_matting_erode_size,
                    max_unknown_pixels=self.settings.matting_max_unknown_pixels,
                )
                # None: the trimap had no foreground or no background; keep the plain mask.
                if refined is not None:
                    mask, rgb = refined
            estimated = rgb is not picture.rgb
            if picture.alpha is not None:
                # Pixels the input already had transparent stay transparent.
                mask = (mask.astype(np.uint16) * picture.alpha // 255).astype(np.uint8)
            return rendering.render(rgb, mask, options, decoded.background, estimated)

    def _encode(self, pixels: np.ndarray, fmt: rendering.EncodedFormat) -> bytes:
        with self.metrics.stage("encode"):
            return encode(
                pixels,
                fmt,
                png_level=self.settings.png_compress_level,
                webp_quality=self.settings.webp_quality,
            )
