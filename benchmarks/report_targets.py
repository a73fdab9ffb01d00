"""RESULTS.md's targets: the standing ones (model limit, rembg, memory, INT8, overload)
and issue 12's, each with its figure, ratio and verdict, and the AMX arithmetic."""

from __future__ import annotations

import math
import os

import targets as bounds
from int8_mode import Int8Result
from model_limit import LimitResult, best
from overload import AT_ONCE_S, OverloadResult
from report import (
    FLAT_GROWTH,
    INT8_IOU_TARGET,
    INT8_SPEEDUP_MIN,
    INT8_SPEEDUP_TARGET,
    LIMIT_RATIO_TARGET,
    NOISY_OTHER,
    ORIGINAL,
    REMBG_RATIO_TARGET,
    RSS_TARGET_MIB,
    Report,
    base_precision,
    mib,
    pairs,
    soak_checkpoints,
    soak_is_flat,
)
from targets import REMBG_ORIGINAL_RATIO, Target


def targets(report: Report) -> str:
    rows = [
        "## Targets",
        "",
        f"Ratios are judged on wall-clock images/s when every run involved had `other` <= "
        f"{NOISY_OTHER} cores, else on CPU s/image (the wall figures then say more about "
        "the neighbours than about the servers).",
        "",
        "| target | wall clock | by CPU time | met |",
        "| --- | --- | --- | --- |",
    ]
    for matte, rembg in pairs(report.runs):
        if matte.result.concurrency != 4:
            continue
        label = f"{matte.megapixels} MP, c=4: Matte >="
        if report.limits:
            top = best(report.limits)
            cheapest = min(r.cpu_per_image for r in report.limits)
            rows.append(_target_row(
                f"{label} {LIMIT_RATIO_TARGET}x model limit", LIMIT_RATIO_TARGET,
                matte.result.images_per_s / top.images_per_s,
                cheapest / matte.result.cpu_per_image,
                max(matte.result.other_cores, top.other_cores),
            ))
        if rembg is not None:
            rows.append(_target_row(
                f"{label} {REMBG_RATIO_TARGET}x rembg", REMBG_RATIO_TARGET,
                matte.result.images_per_s / rembg.result.images_per_s,
                rembg.result.cpu_per_image / matte.result.cpu_per_image,
                max(matte.result.other_cores, rembg.result.other_cores),
            ))
    heavy = [run.result.peak_rss_kib for run in report.runs
             if run.server == "matte" and run.megapixels == 4 and run.result.concurrency == 16]
    soak = report.soak
    if soak is not None and soak.megapixels == 4 and soak.result.concurrency == 16:
        heavy.append(soak.result.peak_rss_kib)
    if heavy:
        peak = mib(max(heavy))
        rows.append(f"| peak RSS at 4 MP, c=16 <= {RSS_TARGET_MIB} MiB | {peak} MiB | "
                    f"| {'yes' if peak <= RSS_TARGET_MIB else 'no'} |")
    if report.soak is not None:
        points = soak_checkpoints(report.soak.result)
        flat = soak_is_flat(report.soak.result)
        rows.append(f"| RSS flat over the soak (growth <= {FLAT_GROWTH:.0%}) "
                    f"| {mib(points[0][1])} -> {mib(points[-1][1])} MiB | "
                    f"| {'yes' if flat else 'no'} |")
    if report.int8 is not None:
        rows += _int8_targets(report.int8, report.limits)
    if report.overload is not None:
        rows.append(_overload_target(report.overload))
    for server, kib in report.hwm_kib.items():
        rows.append(f"| (info) {server} VmHWM over all its runs | {mib(kib)} MiB | | |")
    return "\n".join(rows)


def _int8_targets(int8: Int8Result, limits: list[LimitResult]) -> list[str]:
    rows = []
    fp32 = [r for r in limits if r.batch == 1]
    if int8.limits and fp32:
        fast, full = best(int8.limits), best(fp32)
        rows.append(_target_row(
            f"INT8: about {INT8_SPEEDUP_TARGET:g}x faster than {base_precision(limits)} "
            "(best layout; "
            f">= {INT8_SPEEDUP_MIN:.1f}x counts)", INT8_SPEEDUP_MIN,
            fast.images_per_s / full.images_per_s,
            min(r.cpu_per_image for r in fp32) / min(r.cpu_per_image for r in int8.limits),
            max(fast.other_cores, full.other_cores),
        ))
    if int8.ious:
        figures = ", ".join(f"{name} {iou:.4f}" for name, iou in int8.ious.items())
        met = all(iou >= INT8_IOU_TARGET for iou in int8.ious.values())
        rows.append(f"| INT8: soft IoU >= {INT8_IOU_TARGET} on each fixture | {figures} | "
                    f"| {'yes' if met else 'no'} |")
    return rows


def _overload_target(probe: OverloadResult) -> str:
    shown = (f"{len(probe.refused_at_once)} of {probe.burst} got 503 at once "
             f"({probe.expected_refused} expected; "
             f"{'all' if probe.all_well_formed else 'not all'} well formed), "
             f"max {probe.refused_latency(100):.3f} s" if probe.refused
             else f"no 503 in a burst of {probe.burst}")
    return (f"| overload: requests beyond the bounded queue get 503 with Retry-After at once "
            f"(< {AT_ONCE_S:g} s) | {shown} | | {'yes' if probe.met else 'no'} |")


def _target_row(label: str, target: float, wall: float, cpu: float, other: float) -> str:
    noisy = other > NOISY_OTHER
    value = cpu if noisy else wall
    if math.isnan(value):
        met = "n/a"
    else:
        met = ("yes" if value >= target else "no") + (
            f" (by CPU time: `other` reached {other:.2f})" if noisy else " (wall clock)")
    return f"| {label} | {wall:.2f}x | {cpu:.2f}x | {met} |"


def issue_targets(report: Report) -> str:
    """Issue 12's targets, each with its figure, ratio and verdict, and the AMX arithmetic."""
    amx_here = "amx_bf16" in report.cpu_flags
    model_s = _served_run_s(report)
    model_cpu = min((r.cpu_per_image for r in report.limits), default=math.nan)
    ort_fp32 = _engine_s(report, "onnxruntime", "fp32")
    rows: list[Target] = []
    cores = os.cpu_count() or 1
    for matte, peer in pairs(report.runs, ORIGINAL):
        if (matte.megapixels, matte.result.concurrency) != (4, 4) or peer is None:
            continue
        amx = ""
        if not amx_here and not math.isnan(model_cpu) and ort_fp32 is not None:
            estimate = bounds.amx_peer_ratio(matte.result.cpu_per_image, model_cpu, cores,
                                              peer.result.images_per_s, ort_fp32)
            amx = f"{estimate:.2f}x"
        rows.append(bounds.throughput(
            f"4 MP PNG, c=4: >= {REMBG_ORIGINAL_RATIO:g}x rembg given original-fp16.onnx",
            matte.result.images_per_s / peer.result.images_per_s,
            peer.result.cpu_per_image / matte.result.cpu_per_image,
            max(matte.result.other_cores, peer.result.other_cores),
            REMBG_ORIGINAL_RATIO, NOISY_OTHER, amx))
    for matte, peer in pairs(report.runs):
        if (matte.megapixels, matte.result.concurrency) == (4, 4) and peer is not None:
            wall = matte.result.images_per_s / peer.result.images_per_s
            cpu = peer.result.cpu_per_image / matte.result.cpu_per_image
            rows.append(Target("(reported) 4 MP PNG, c=4: against rembg given Matte's pruned "
                               "cpu-fp32.onnx", f"{wall:.2f}x wall clock, {cpu:.2f}x by CPU "
                               "time", wall, "(no bound)"))
    if report.limits:
        top = best(report.limits)
        for megapixels, bound in ((4, bounds.LIMIT_RATIO_4MP), (1, bounds.LIMIT_RATIO_1MP)):
            for run in report.runs:
                if (run.server, run.megapixels, run.result.concurrency) != ("matte", megapixels,
                                                                             4):
                    continue
                amx = "" if amx_here else (
                    f"{bounds.amx_limit_ratio(run.result.cpu_per_image, model_cpu):.2f}x")
                rows.append(bounds.throughput(
                    f"{megapixels} MP, c=4: >= {bound}x the model's own limit "
                    f"({top.engine} {top.precision})",
                    run.result.images_per_s / top.images_per_s,
                    model_cpu / run.result.cpu_per_image,
                    max(run.result.other_cores, top.other_cores), bound, NOISY_OTHER, amx))
    lone = next((r for r in report.runs if (r.server, r.megapixels, r.result.concurrency)
                 == ("matte", 4, 1)), None)
    if lone is not None:
        rows.append(bounds.lone_latency(lone.result.latency(50), model_s, amx_here))
    png, webp = report.lone.get("png"), report.lone.get("webp")
    if png is not None and webp is not None:
        rows.append(bounds.webp(png.result.latency(50), webp.result.latency(50), model_s,
                                 amx_here))
    soak = report.soak
    if soak is not None and (soak.megapixels, soak.result.concurrency) == (4, 16):
        heavy = [r.result.peak_rss_kib for r in report.runs
                 if (r.server, r.megapixels, r.result.concurrency) == ("matte", 4, 16)]
        points = soak_checkpoints(soak.result)
        rows.append(bounds.rss(mib(max([soak.result.peak_rss_kib, *heavy])),
                                mib(points[0][1]), mib(points[-1][1]),
                                soak_is_flat(soak.result)))
    openvino_fp32 = _engine_s(report, "openvino", "fp32")
    if ort_fp32 is not None and openvino_fp32 is not None:
        rows.append(bounds.fp32(ort_fp32, openvino_fp32))
    lines = [
        "## Targets (issue 12)",
        "",
        "The issue's targets are for an AMX CPU at precision `auto`. The ratio column is the "
        "figure over its bound's unit (a speed ratio, or seconds / seconds). Speed ratios are "
        "judged as in the table above (wall clock on a quiet machine, else CPU time).",
        "",
        "| target | measured | ratio | met | on AMX (estimate) |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for row in rows:
        lines.append(f"| {row.label} | {row.figure} | {row.ratio:.2f} | {row.met} "
                     f"| {row.amx} |")
    lines += ["", _amx_note(report, amx_here, model_s, model_cpu, ort_fp32)]
    return "\n".join(lines)


def _amx_note(report: Report, amx_here: bool, model_s: float | None, model_cpu: float,
              ort_fp32: float | None) -> str:
    if amx_here:
        return "This CPU has AMX: the measured figures are the targets' own."
    here = f"{model_s:.3f} s" if model_s is not None else "not measured"
    speed = (f" ({model_s / bounds.AMX_MODEL_S:.1f}x the AMX run)"
             if model_s is not None else "")
    return (
        f"This CPU has no AMX. One {report.served or 'served'} model run here (batch 1, every "
        f"core): {here}{speed}, against {bounds.AMX_MODEL_S} s on the issue's AMX Xeon "
        f"({bounds.AMX_MODEL_CPU_S} CPU s; ONNX Runtime fp32 there {bounds.AMX_ORT_FP32_S} s"
        f", here {f'{ort_fp32:.3f} s' if ort_fp32 is not None else 'not measured'}). The "
        "estimates keep this run's time outside the model and swap the model's part for "
        "AMX's: latency - model run here + 0.214 s; CPU s/image - model CPU s/image here "
        f"({model_cpu:.2f}) + 0.380 s, with Matte keeping every core busy (cores / that) "
        "and rembg sped up as much as ONNX Runtime fp32 is on AMX. What reaches a target "
        "then is the model's AMX speed plus the time outside the model shown here: where "
        "an estimate misses, that outside time is what to cut."
    )


def _engine_s(report: Report, engine: str, precision: str) -> float | None:
    for run in report.engine_runs:
        if (run.engine, run.precision) == (engine, precision):
            return run.median_s
    return None


def _served_run_s(report: Report) -> float | None:
    """One model run at the served engine and precision: the engine table's, else the
    limit's one-caller batch-1 row."""
    engine, _, precision = report.served.partition(" ")
    measured = _engine_s(report, engine, precision)
    if measured is not None:
        return measured
    lone = [r for r in report.limits if r.layout.callers == 1 and r.batch == 1]
    return lone[0].seconds_per_run if lone else None
