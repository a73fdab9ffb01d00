"""Loading: the engine, warmed up, behind the scheduler, admission and pipeline the
settings describe. The server's lifespan and `matte remove` both start the model
here, so the command line runs under exactly the server's concurrency bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from . import matting
from .admission import Admission
from .engine import Engine, load_engine, warm_up
from .metrics import Metrics
from .pipeline import Pipeline
from .scheduler import Scheduler
from .settings import Layout, Settings

EngineFactory = Callable[[Settings], Engine]


@dataclass(frozen=True)
class Loaded:
    """A running pipeline and what it was built from (for logs and /readyz)."""

    pipeline: Pipeline
    engine: Engine
    layout: Layout
    warm_up_s: float


async def load_pipeline(
    settings: Settings,
    metrics: Metrics,
    factory: EngineFactory = load_engine,
    *,
    warm_matting: bool = True,
) -> Loaded:
    """Load and warm the engine (on threads: it takes seconds), start its scheduler
    and build the pipeline. `warm_matting`: load pymatting's compiled code now rather
    than on the first request that asks for alpha matting. The caller stops the
    scheduler (`pipeline.scheduler.stop()`) when it is done."""
    engine = await asyncio.to_thread(factory, settings)
    warm_s = await asyncio.to_thread(warm_up, engine)
    if warm_matting:
        await asyncio.to_thread(matting.warm_up)
    layout = settings.layout(engine.provider)
    scheduler = Scheduler(
        engine,
        workers=layout.workers,
        batch_size=layout.batch_size,
        batch_timeout_s=settings.batch_timeout_ms / 1000,
        on_batch=metrics.batch_size.observe,
        model_timeout_s=settings.model_timeout_s,
        on_timeout=metrics.model_timeouts.inc,
        on_run=metrics.model_run_seconds.observe,
    )
    await scheduler.start()
    admission = Admission(
        layout.max_pending,
        layout.max_queue,
        settings.queue_timeout_s,
        metrics,
        uploads=settings.uploads,
    )
    return Loaded(Pipeline(scheduler, admission, settings, metrics), engine, layout, warm_s)
