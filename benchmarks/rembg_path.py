"""rembg's request path, re-implemented for the GPU machine, where rembg cannot be installed.

    python benchmarks/rembg_path.py --port 7000 --model cuda-fp16.onnx --provider cuda

The GPU machine reaches no package registry, and rembg brings opencv, gradio and
fastapi with it, so this is its per-request path as rembg 2.x's source has it,
served the way `rembg s` serves it:
- the session: `new_session`'s default `SessionOptions` (only inter-op threads
  from OMP_NUM_THREADS) and providers CUDA then CPU, with their default options;
- `remove()`: open, EXIF transpose, `DisSession.predict`, `naive_cutout` (its
  default: composite over transparent black), PNG at Pillow's default level;
- `predict`: `BaseSession.normalize` (RGB, LANCZOS to 1024x1024, divide by the
  image's max, minus mean (0.485, 0.456, 0.406), std (1, 1, 1), float64 then
  float32), one unbatched run of every output, the first min-max normalised,
  *255 truncated to uint8, LANCZOS back to the photo's size;
- the server: each request's `remove` in the thread pool (anyio's default of 40
  threads, as FastAPI's `asyncify` uses), all on one shared session.
It runs the file it is given: the check gives it Matte's own graph, so the two
servers differ in their request paths only (rembg's own file also computes six
side outputs, which would make it slower still).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

MEAN = (0.485, 0.456, 0.406)
STD = (1.0, 1.0, 1.0)
SIDE = 1024
MODEL = "isnet-general-use"


def session(model: Path, provider: str) -> Any:
    import onnxruntime as ort  # heavy: only when serving

    if provider == "cuda":
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels, as Matte does
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(model), ort.SessionOptions(), providers=providers)


def normalize(image: Image.Image) -> np.ndarray:
    """(1, 3, 1024, 1024) float32, as rembg's BaseSession.normalize makes it."""
    pixels = np.array(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS))
    scaled = pixels / max(float(np.max(pixels)), 1e-6)  # the image's max, not 255
    planes = np.zeros((SIDE, SIDE, 3))
    for channel in range(3):
        planes[:, :, channel] = (scaled[:, :, channel] - MEAN[channel]) / STD[channel]
    return np.expand_dims(planes.transpose((2, 0, 1)), 0).astype(np.float32)


def predict(onnx: Any, image: Image.Image) -> Image.Image:
    outputs = onnx.run(None, {onnx.get_inputs()[0].name: normalize(image)})
    prediction = outputs[0][:, 0, :, :]
    high, low = np.max(prediction), np.min(prediction)
    scaled = np.squeeze((prediction - low) / (high - low))
    mask = Image.fromarray((scaled * 255).astype("uint8"), mode="L")
    return mask.resize(image.size, Image.Resampling.LANCZOS)


def remove(data: bytes, onnx: Any) -> bytes:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    mask = predict(onnx, image)
    cutout = Image.composite(image, Image.new("RGBA", image.size, 0), mask)
    buffer = io.BytesIO()
    cutout.save(buffer, "PNG")
    return buffer.getvalue()


def create_app(onnx: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def remove_route(request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return PlainTextResponse("a `file` part is required", status_code=422)
        png = await run_in_threadpool(remove, await upload.read(), onnx)
        return Response(png, media_type="image/png")

    async def ready(request: Request) -> Response:
        return PlainTextResponse("rembg request path")

    return Starlette(
        routes=[
            Route("/api/remove", remove_route, methods=["POST"]),
            Route("/api", ready, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args(argv)
    # Loaded before listening: the harness's ready check then means "model loaded".
    app = create_app(session(args.model, args.provider))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
