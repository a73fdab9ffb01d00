"""The pipeline every dialect shares: decode -> predict -> matte -> encode."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from . import compositing, isnet, matting
from .admission import Admission, Ticket
from .errors import Unavailable
from .imaging import Limits, Picture, decode, encode
from .metrics import Metrics
from .options import CutoutOptions
from .presence import ClientGone, Presence
from .scheduler import ModelTimedOut, Scheduler, SchedulerStopped
from .settings import Settings


@dataclass(frozen=True)
class Cutout:
    data: bytes
    media_type: str


class Pipeline:
    def __init__(
        self, scheduler: Scheduler, admission: Admission, settings: Settings, metrics: Metrics
    ) -> None:
        self.scheduler = scheduler
        self.admission = admission
        self.settings = settings
        self.metrics = metrics
        self.limits = Limits(settings.min_side, settings.min_pixels, settings.max_pixels)

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
            await presence.unless_gone(held.enter_async_context(ticket.slot()), "while in line")
            picture, small = await run_in_threadpool(self._decode, data)
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
            self.metrics.stage_seconds.labels("predict").observe(time.perf_counter() - started)
            # (A client gone by the time the prediction came is caught by that wait.)
            del small
            if options.alpha_matting:
                # Matting costs as much CPU as the model: it takes a model thread.
                pixels = await self.scheduler.run_bounded(self._matte, picture, prediction, options)
            else:
                pixels = await run_in_threadpool(self._matte, picture, prediction, options)
            del picture, prediction
            presence.check("before encoding")
            encoded = await run_in_threadpool(self._encode, pixels, options)
        return Cutout(encoded, f"image/{options.output_format}")

    def _decode(self, data: bytes) -> tuple[Picture, np.ndarray]:
        with self.metrics.stage("decode"):
            picture = decode(data, self.limits)
            return picture, isnet.to_model_size(picture.rgb)

    def _matte(
        self, picture: Picture, prediction: np.ndarray, options: CutoutOptions
    ) -> np.ndarray:
        with self.metrics.stage("matte"):
            mask = isnet.to_mask(prediction, picture.size)
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
            if picture.alpha is not None:
                # Pixels the input already had transparent stay transparent.
                mask = (mask.astype(np.uint16) * picture.alpha // 255).astype(np.uint8)
            if options.inverse_mask:
                return 255 - mask
            if options.only_mask:
                return mask
            return compositing.composite(rgb, mask, options.bgcolor)

    def _encode(self, pixels: np.ndarray, options: CutoutOptions) -> bytes:
        with self.metrics.stage("encode"):
            return encode(
                pixels,
                options.output_format,
                png_level=self.settings.png_compress_level,
                webp_quality=self.settings.webp_quality,
            )
