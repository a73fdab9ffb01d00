"""The GPU check's results: what each phase measured, the targets' verdicts, markdown and JSON.

Everything here is arithmetic on recorded numbers (no model, no GPU), so the verdicts
are tested on made-up figures (tests/benchmarks/test_gpu.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

PHASES = (
    "environment",
    "fidelity",
    "model limit",
    "matte end to end",
    "rembg path",
    "cuda graphs",
    "tensorrt",
)
# Targets from issue 16.
MIN_IOU = 0.995  # each fixture's mask against rembg's reference, fp16 on the GPU
LIMIT_RATIO_TARGET = 0.7  # Matte end to end at the top concurrency / the batched model limit
REMBG_RATIO_TARGET = 5.0  # Matte / rembg's request path, same size and concurrency
LONE_REQUEST_S = 0.060  # one 1 MP request alone (p50), strictly under
# Decode and encode must not be the bottleneck: the server keeps some cores idle.
CPU_SHARE_TARGET = 0.9
LONE_MEGAPIXELS = 1


@dataclass
class FidelityRow:
    photo: str
    iou: float


@dataclass
class LimitRow:
    batch: int
    images_per_s: float
    seconds_per_run: float
    cpu_per_image: float
    gpu_peak_mib: float | None = None
    gpu_busy_percent: float | None = None


@dataclass
class E2ERow:
    server: str  # "matte" or "rembg path"
    megapixels: int
    concurrency: int
    requests: int
    ok: int
    rejected: int
    images_per_s: float
    p50_s: float
    p99_s: float
    server_cores: float  # the server's CPU seconds per second of the run
    peak_rss_mib: float
    gpu_peak_mib: float | None = None
    gpu_busy_percent: float | None = None
    stages: dict[str, float] = field(default_factory=dict)  # Matte's mean seconds per stage


@dataclass
class VariantRow:
    variant: str  # "cuda graphs" or "tensorrt"
    batch: int
    images_per_s: float
    seconds_per_run: float
    note: str = ""


@dataclass
class Results:
    command: str
    date: str
    provider: str  # what was asked for: cuda, or cpu for the CI smoke run
    quick: bool
    budget_s: float
    cores: int
    environment: dict[str, str] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=lambda: dict.fromkeys(PHASES, "not run"))
    fidelity_engine: str = ""
    fidelity: list[FidelityRow] = field(default_factory=list)
    limits: list[LimitRow] = field(default_factory=list)
    e2e: list[E2ERow] = field(default_factory=list)
    variants: list[VariantRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return "not measured" if self.met is None else ("yes" if self.met else "no")


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing, zero or not a number."""
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    return numerator / denominator


def at_least(value: float | None, minimum: float) -> bool | None:
    return None if value is None else value >= minimum


def under(value: float | None, maximum: float) -> bool | None:
    if value is None or not math.isfinite(value):
        return None
    return value < maximum


def best_limit(limits: list[LimitRow]) -> LimitRow | None:
    return max(limits, key=lambda row: row.images_per_s, default=None)


def find(rows: list[E2ERow], server: str, megapixels: int, concurrency: int) -> E2ERow | None:
    for row in rows:
        if (row.server, row.megapixels, row.concurrency) == (server, megapixels, concurrency):
            return row
    return None


def top_concurrency(rows: list[E2ERow]) -> int | None:
    return max((row.concurrency for row in rows if row.server == "matte"), default=None)


def evaluate(results: Results) -> list[Target]:
    targets = [_fidelity_target(results)]
    top = top_concurrency(results.e2e)
    limit = best_limit(results.limits)
    sizes = sorted({row.megapixels for row in results.e2e if row.server == "matte"})
    for megapixels in sizes or [LONE_MEGAPIXELS]:
        matte = find(results.e2e, "matte", megapixels, top) if top else None
        rembg = find(results.e2e, "rembg path", megapixels, top) if top else None
        matte_rate = matte.images_per_s if matte else None
        to_limit = ratio(matte_rate, limit.images_per_s if limit else None)
        to_rembg = ratio(matte_rate, rembg.images_per_s if rembg else None)
        label = f"{megapixels} MP c={top}"
        targets.append(
            Target(
                f"end to end {label} vs the batched model limit",
                f">= {LIMIT_RATIO_TARGET}x",
                _times(to_limit, matte_rate, limit.images_per_s if limit else None),
                at_least(to_limit, LIMIT_RATIO_TARGET),
            )
        )
        targets.append(
            Target(
                f"end to end {label} vs rembg's request path",
                f">= {REMBG_RATIO_TARGET}x",
                _times(to_rembg, matte_rate, rembg.images_per_s if rembg else None),
                at_least(to_rembg, REMBG_RATIO_TARGET),
            )
        )
    lone = find(results.e2e, "matte", LONE_MEGAPIXELS, 1)
    lone_s = lone.p50_s if lone and lone.ok else None
    targets.append(
        Target(
            f"a lone {LONE_MEGAPIXELS} MP request (c=1, p50)",
            f"< {LONE_REQUEST_S * 1000:.0f} ms",
            "n/a" if lone_s is None else f"{lone_s * 1000:.1f} ms",
            under(lone_s, LONE_REQUEST_S),
        )
    )
    targets.append(_cpu_target(results, top))
    return targets


def _fidelity_target(results: Results) -> Target:
    ious = [row.iou for row in results.fidelity]
    low = min(ious) if ious else None
    measured = "n/a" if low is None else f"{low:.4f} (lowest of {len(ious)})"
    return Target(
        "fidelity: soft IoU against rembg's references",
        f">= {MIN_IOU}",
        measured,
        at_least(low, MIN_IOU),
    )


def _cpu_target(results: Results, top: int | None) -> Target:
    """The heaviest Matte run's CPU use: below CPU_SHARE_TARGET of the cores, the CPU
    stages kept up with the model (the GPU's busy share says the same from its side)."""
    rows = [row for row in results.e2e if row.server == "matte" and row.concurrency == top]
    heaviest = max(rows, key=lambda row: row.megapixels, default=None)
    if heaviest is None or not heaviest.ok:
        return Target(
            "CPU not the bottleneck (server cores at the top concurrency)",
            f"< {CPU_SHARE_TARGET:.0%} of {results.cores} cores",
            "n/a",
            None,
        )
    share = heaviest.server_cores / results.cores
    busy = (
        ""
        if heaviest.gpu_busy_percent is None
        else (f", GPU busy {heaviest.gpu_busy_percent:.0f}%")
    )
    return Target(
        f"CPU not the bottleneck ({heaviest.megapixels} MP c={top})",
        f"< {CPU_SHARE_TARGET:.0%} of {results.cores} cores",
        f"{heaviest.server_cores:.1f} cores ({share:.0%}){busy}",
        share < CPU_SHARE_TARGET,
    )


def _times(value: float | None, numerator: float | None, denominator: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x ({numerator:.1f} / {denominator:.1f} images/s)"


def to_json(results: Results) -> str:
    data: dict[str, Any] = dataclasses.asdict(results)
    data["targets"] = [
        {**dataclasses.asdict(target), "verdict": target.verdict} for target in evaluate(results)
    ]
    return json.dumps(data, indent=2, allow_nan=True) + "\n"


def render(results: Results) -> str:
    lines = [
        "# GPU check (issue 16)",
        "",
        f"- Date: {results.date}",
        f"- Command: `{results.command}`",
        f"- Provider asked for: {results.provider}"
        + (" (quick: tiny counts, a smoke run)" if results.quick else ""),
        f"- Time budget: {results.budget_s:.0f} s; each phase and run bounded in count and time",
        "",
        "## Phases",
        "",
        "| phase | status |",
        "| --- | --- |",
        *(f"| {name} | {status} |" for name, status in results.phases.items()),
        "",
        "## Environment",
        "",
        "| what | value |",
        "| --- | --- |",
        *(f"| {key} | {_cell(value)} |" for key, value in results.environment.items()),
        "",
        *_fidelity(results),
        *_limits(results),
        *_e2e(results),
        *_stages(results),
        *_variants(results),
        *_targets(results),
    ]
    if results.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in results.notes), ""]
    return "\n".join(lines)


def _fidelity(results: Results) -> list[str]:
    return [
        "## Fidelity",
        "",
        f"Engine: {results.fidelity_engine or 'n/a'}; the server's decode, pre- and "
        "post-processing; soft IoU of the mask against rembg's reference.",
        "",
        "| photo | soft IoU |",
        "| --- | ---: |",
        *(f"| {row.photo} | {row.iou:.4f} |" for row in results.fidelity),
        "",
    ]


def _limits(results: Results) -> list[str]:
    top = best_limit(results.limits)
    rows = [
        f"| {row.batch} | {row.images_per_s:.2f} | {row.seconds_per_run * 1000:.1f} "
        f"| {row.cpu_per_image * 1000:.1f} | {_number(row.gpu_peak_mib, '.0f')} "
        f"| {_number(row.gpu_busy_percent, '.0f')} | {'best' if row is top else ''} |"
        for row in results.limits
    ]
    return [
        "## Model limit",
        "",
        "The server's own engine (`load_engine`), one caller, no HTTP: `model_limit.measure`. "
        "GPU memory is the device's peak during the batch (session load included).",
        "",
        "| batch | images/s | ms/run | CPU ms/image | GPU MiB peak | GPU busy % | |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
    ]


def _e2e(results: Results) -> list[str]:
    rows = [
        f"| {row.server} | {row.megapixels} MP | {row.concurrency} | {row.requests} | {row.ok} "
        f"| {row.rejected} | {row.images_per_s:.2f} | {row.p50_s * 1000:.1f} "
        f"| {row.p99_s * 1000:.1f} | {row.server_cores:.2f} | {row.peak_rss_mib:.0f} "
        f"| {_number(row.gpu_peak_mib, '.0f')} | {_number(row.gpu_busy_percent, '.0f')} |"
        for row in results.e2e
    ]
    return [
        "## End to end",
        "",
        "Over HTTP on loopback (benchmarks/load.py), PNG out; Matte is `python -m server serve`, "
        "rembg's request path is benchmarks/rembg_path.py.",
        "",
        "| server | size | concurrency | requests | ok | 503s | images/s | p50 ms | p99 ms "
        "| server cores | peak RSS MiB | GPU MiB peak | GPU busy % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
        *rows,
        "",
    ]


def _stages(results: Results) -> list[str]:
    rows = [row for row in results.e2e if row.stages]
    names = sorted({name for row in rows for name in row.stages})
    if not rows:
        return []
    return [
        "## Matte's stages",
        "",
        "Mean ms per request from the server's `matte_stage_seconds`.",
        "",
        "| size | concurrency | " + " | ".join(names) + " |",
        "| --- | ---: |" + " ---: |" * len(names),
        *(
            f"| {row.megapixels} MP | {row.concurrency} | "
            + " | ".join(_number(_ms(row.stages.get(name)), ".1f") for name in names)
            + " |"
            for row in rows
        ),
        "",
    ]


def _variants(results: Results) -> list[str]:
    plain = {row.batch: row.images_per_s for row in results.limits}
    rows = []
    for row in results.variants:
        speedup = ratio(row.images_per_s, plain.get(row.batch))
        rows.append(
            f"| {row.variant} | {row.batch} | {row.images_per_s:.2f} "
            f"| {_number(plain.get(row.batch), '.2f')} "
            f"| {'n/a' if speedup is None else f'{speedup:.2f}x'} | {row.note} |"
        )
    return [
        "## CUDA graphs and TensorRT",
        "",
        "Beside plain CUDA (the model limit's row at the same batch); the phases' status "
        "says why one was skipped.",
        "",
        "| variant | batch | images/s | plain CUDA images/s | speed-up | note |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
    ]


def _targets(results: Results) -> list[str]:
    return [
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "| --- | --- | --- | --- |",
        *(f"| {t.name} | {t.goal} | {t.measured} | {t.verdict} |" for t in evaluate(results)),
        "",
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
