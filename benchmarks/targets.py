"""Issue 12's targets: each bound, its verdict, and what an AMX CPU would make of a figure.

The targets are for an AMX CPU (the issue's Xeon). On a CPU without AMX the model
runs slower, so each speed figure also gets an estimate for AMX: this run's time
outside the model kept, the model's part replaced by the issue's own AMX figures.
Pure arithmetic on numbers handed in, so tests can check it on made-up ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Issue 12's figures on its AMX Xeon (2 cores), OpenVINO bf16 and ONNX Runtime fp32,
# one 1024x1024 image with both threads.
AMX_MODEL_S = 0.214  # wall seconds of one bf16 run
AMX_MODEL_CPU_S = 0.380  # CPU seconds of one bf16 run
AMX_ORT_FP32_S = 1.10  # wall seconds of one ONNX Runtime fp32 run (rembg's engine)

# The bounds, as the issue states them.
REMBG_ORIGINAL_RATIO = 5.0  # 4 MP PNG, c=4, against rembg given original-fp16.onnx
LIMIT_RATIO_4MP = 0.75  # 4 MP, c=4, against the model's own limit
LIMIT_RATIO_1MP = 0.85  # 1 MP, c=4
LONE_4MP_P50_S = 0.4
WEBP_PNG_RATIO = 1.3
RSS_BYTES = 1.5e9  # "1.5 GB"
RSS_MIB = RSS_BYTES / 2**20  # 1430.5 MiB: the MiB figures are compared with this
FP32_RATIO = 1.0  # OpenVINO fp32 at least as fast as ONNX Runtime fp32


@dataclass(frozen=True)
class Target:
    label: str
    figure: str  # the measured figure(s), as shown
    ratio: float  # the figure over its bound's unit (a speed ratio, seconds over seconds)
    met: str  # "yes", "no", or "n/a" (not measured)
    amx: str = ""  # the estimate for an AMX CPU, where the target is for one


def verdict(value: float, bound: float, *, at_most: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return "yes" if (value <= bound if at_most else value >= bound) else "no"


def judged(wall: float, cpu: float, other: float, noisy_other: float) -> tuple[float, str]:
    """The ratio to judge (wall clock on a quiet machine, else CPU time) and its basis."""
    if other > noisy_other:
        return cpu, f"by CPU time: `other` reached {other:.2f}"
    return wall, "wall clock"


def amx_seconds(seconds_here: float, model_s_here: float) -> float:
    """A latency with this CPU's model run swapped for the AMX one, the rest kept."""
    return seconds_here - model_s_here + AMX_MODEL_S


def amx_cpu_per_image(cpu_here: float, model_cpu_here: float) -> float:
    """CPU seconds an image costs with the model's part at the AMX figure."""
    return cpu_here - model_cpu_here + AMX_MODEL_CPU_S


def amx_limit_ratio(cpu_here: float, model_cpu_here: float) -> float:
    """Matte over the model limit, by CPU time, once the model costs what it does on AMX:
    the time outside the model weighs more against a faster model."""
    return AMX_MODEL_CPU_S / amx_cpu_per_image(cpu_here, model_cpu_here)


def amx_peer_ratio(
    cpu_here: float, model_cpu_here: float, cores: int, peer_rate: float, ort_fp32_here_s: float
) -> float:
    """Matte over rembg on AMX: Matte keeping `cores` busy at the AMX cost per image,
    rembg sped up as much as ONNX Runtime fp32 is there (its time is mostly the model)."""
    matte_rate = cores / amx_cpu_per_image(cpu_here, model_cpu_here)
    peer = peer_rate * ort_fp32_here_s / AMX_ORT_FP32_S
    return matte_rate / peer


def amx_webp_ratio(png_s: float, webp_s: float, model_s_here: float) -> float:
    """WebP over PNG once the model part of both is the AMX run: the encode weighs more."""
    return amx_seconds(webp_s, model_s_here) / amx_seconds(png_s, model_s_here)


def throughput(
    label: str,
    wall: float,
    cpu: float,
    other: float,
    bound: float,
    noisy_other: float,
    amx: str = "",
) -> Target:
    """A speed ratio (Matte over rembg, or over the model limit) against its lower bound."""
    value, basis = judged(wall, cpu, other, noisy_other)
    met = verdict(value, bound)
    shown = f"{wall:.2f}x wall clock, {cpu:.2f}x by CPU time"
    return Target(label, shown, value, met if met == "n/a" else f"{met} ({basis})", amx)


def lone_latency(p50_s: float, model_s_here: float | None, amx_here: bool) -> Target:
    amx = ""
    if model_s_here is not None and not amx_here:
        estimate = amx_seconds(p50_s, model_s_here)
        amx = (
            f"{p50_s:.3f} - {model_s_here:.3f} (model here) + {AMX_MODEL_S} (AMX) = "
            f"{estimate:.3f} s: {verdict(estimate, LONE_4MP_P50_S, at_most=True)}"
        )
    return Target(
        f"a lone 4 MP request: p50 <= {LONE_4MP_P50_S} s",
        f"p50 {p50_s:.3f} s",
        p50_s / LONE_4MP_P50_S,
        verdict(p50_s, LONE_4MP_P50_S, at_most=True),
        amx,
    )


def webp(png_s: float, webp_s: float, model_s_here: float | None, amx_here: bool) -> Target:
    ratio = webp_s / png_s if png_s > 0 else math.nan
    amx = ""
    if model_s_here is not None and not amx_here:
        estimate = amx_webp_ratio(png_s, webp_s, model_s_here)
        amx = (
            f"({webp_s:.3f} - {model_s_here:.3f} + {AMX_MODEL_S}) / ({png_s:.3f} - "
            f"{model_s_here:.3f} + {AMX_MODEL_S}) = {estimate:.2f}x: "
            f"{verdict(estimate, WEBP_PNG_RATIO, at_most=True)}"
        )
    return Target(
        f"WebP output: at most {WEBP_PNG_RATIO}x the PNG request's time (lone, p50)",
        f"WebP p50 {webp_s:.3f} s, PNG p50 {png_s:.3f} s",
        ratio,
        verdict(ratio, WEBP_PNG_RATIO, at_most=True),
        amx,
    )


def rss(peak_mib: float, first_mib: float, last_mib: float, flat: bool) -> Target:
    """Peak RSS at c=16, 4 MP against 1.5 GB, and flat from the soak's start to its end."""
    met = verdict(peak_mib, RSS_MIB, at_most=True)
    if met != "n/a":
        met = "yes" if met == "yes" and flat else "no"
    return Target(
        f"peak RSS at c=16, 4 MP: <= 1.5 GB ({RSS_MIB:.0f} MiB), flat over the soak",
        f"peak {peak_mib:.0f} MiB; {first_mib:.0f} -> {last_mib:.0f} MiB "
        f"({'flat' if flat else 'not flat'})",
        peak_mib / RSS_MIB,
        met,
    )


def fp32(ort_s: float, openvino_s: float) -> Target:
    """OpenVINO fp32 against ONNX Runtime fp32, one model run each: the ratio is the speed-up."""
    ratio = ort_s / openvino_s if openvino_s > 0 else math.nan
    return Target(
        "fp32 (exact): OpenVINO at least as fast as today's ONNX Runtime path "
        "(one model run; also what a CPU without bf16 gets)",
        f"OpenVINO {openvino_s:.3f} s, ONNX Runtime {ort_s:.3f} s",
        ratio,
        verdict(ratio, FP32_RATIO),
    )
