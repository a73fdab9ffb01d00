"""Matte's benchmark: the model's own limit, Matte over real HTTP, rembg's server beside it.

    .venv/bin/python benchmarks/run.py --help

The tables go to benchmarks/RESULTS.md (--out), rewritten after every phase so
a long run that dies still leaves what it measured.
"""

from __future__ import annotations

import io
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from int8_mode import FIXTURES, Int8Result, fixture_ious, int8_file, int8_settings
from load import Endpoint, read_status_kib, run_load
from model_limit import Layout, LimitResult, cases, measure
from overload import probe
from PIL import Image
from plan import Plan, parse_args
from rembg_server import ensure_venv, install_weights, rembg_endpoint, rembg_spec, versions
from report import ORIGINAL, E2ERun, EngineRun, Report, render
from servers import (
    Server,
    Spec,
    free_port,
    matte_endpoint,
    matte_settings,
    matte_spec,
    server_settings,
    stage_means,
    stage_totals,
)

if TYPE_CHECKING:
    from server.settings import Settings

SIDES = {1: 1000, 4: 2048}  # 4 MP is 2048x2048: exactly Matte's default max_pixels
# The overload burst goes this far past the server's slots and line (--quick: less,
# as every admitted request still costs a model run).
OVERLOAD_EXTRA = 16
OVERLOAD_EXTRA_QUICK = 2
# The engine comparison: today's ONNX Runtime path and OpenVINO's exact mode; the
# served engine and precision join them when they are neither.
FP32_CASES = (("onnxruntime", "fp32"), ("openvino", "fp32"))


def make_jpeg(photo: Path, megapixels: int) -> bytes:
    """A square crop of `photo` resized to about `megapixels`, as a quality-90 JPEG."""
    side = SIDES.get(megapixels) or round(math.sqrt(megapixels * 1e6))
    with Image.open(photo) as image:
        rgb = image.convert("RGB")
    crop = min(rgb.size)
    left, top = (rgb.width - crop) // 2, (rgb.height - crop) // 2
    square = rgb.crop((left, top, left + crop, top + crop))
    buffer = io.BytesIO()
    square.resize((side, side), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def model_target(env: dict[str, str]) -> tuple[str, Path]:
    """The provider and ONNX file the server would pick, chosen by the server's own code."""
    import onnxruntime as ort

    from server.engine import choose_provider
    from server.settings import Settings

    settings = Settings.from_env(env)
    provider = choose_provider(settings, ort)
    return provider, settings.model_file(provider)


def measure_limits(plan: Plan, env: dict[str, str]) -> list[LimitResult]:
    from server.settings import Settings

    return _sweep(plan, Settings.from_env(env), cases(os.cpu_count() or 1, [1, 2], plan.quick))


def _sweep(plan: Plan, settings: Settings, todo: list[tuple[Layout, int]]) -> list[LimitResult]:
    results = []
    runs = 1 if plan.quick else 3
    for layout, batch in todo:
        once = partial(_limit_once, plan, settings, layout, batch, runs)
        results.append(plan.quiet.measure(once, lambda r: r.other_cores, log))
    return results


def measure_int8(plan: Plan, env: dict[str, str], provider: str,
                 limits: list[LimitResult], report: Report) -> Int8Result | None:
    """int8 at fp32's batch-1 layouts, and its masks against fp32's; None (and a note) if not."""
    from server.settings import Settings

    settings = Settings.from_env(env)
    skip = _int8_skip(settings, provider, limits)
    if skip:
        report.notes.append(f"INT8 fast mode: not measured, {skip}.")
        return None
    # The same layouts as fp32's rows (one in --quick), so each has its fp32 figure.
    layouts = [(r.layout, 1) for r in limits if r.batch == 1]
    result = Int8Result(limits=_sweep(plan, int8_settings(settings), layouts))
    photos = sorted(FIXTURES.glob("*.jpg"))
    result.ious = fixture_ious(settings, photos)
    log("int8 soft IoU vs fp32: " + ", ".join(f"{k} {v:.4f}" for k, v in result.ious.items()))
    return result


def _int8_skip(settings: Settings, provider: str, limits: list[LimitResult]) -> str:
    """Why the int8 section cannot be measured in this run; empty when it can."""
    model = int8_file(settings)
    if settings.model_path is not None or settings.precision == "int8":
        return "MATTE_MODEL_PATH or MATTE_PRECISION=int8 is set: the model limit is not fp32's"
    if provider != "cpu":
        return "the provider is not the CPU (the int8 model is for the CPU only)"
    if not model.is_file():
        return f"{model} is missing (`make model-int8` builds it)"
    if not limits:
        return "it needs the fp32 model limit to compare with (--no-limit)"
    return ""


def _limit_once(plan: Plan, settings: Settings, layout: Layout, batch: int,
                runs: int) -> LimitResult:
    result = measure(settings, plan.photo, layout, batch, warmup=1 if plan.quick else 2,
                     runs=runs)
    precision = " int8" if settings.precision == "int8" else ""
    log(f"model limit{precision} {layout.label} batch={batch}: {result.images_per_s:.3f} images/s "
        f"({result.seconds_per_run:.2f} s/run, {result.cpu_per_image:.2f} CPU s/image, "
        f"others {result.other_cores:.2f} cores)")
    return result


def load_runs(
    server: Server, endpoint_for: Callable[[bytes], Endpoint], plan: Plan,
    images: dict[int, bytes], concurrencies: list[int], report: Report,
) -> None:
    """Each size at each concurrency against a started server, after an untimed warm-up."""
    endpoints = {megapixels: endpoint_for(images[megapixels]) for megapixels in plan.sizes}
    for endpoint in endpoints.values():
        warm = run_load(endpoint, server.pid, 1, 1)  # rembg loads its model here
        if warm.failed:
            raise RuntimeError(f"{server.spec.name}: warm-up request failed\n{server.log_tail()}")
    for concurrency in concurrencies:
        for megapixels, endpoint in endpoints.items():
            if not server.alive:  # the memory guard stopped it in an earlier run
                report.notes.append(f"{server.spec.name} {megapixels} MP c={concurrency}: not run,"
                                    " the server was killed by the memory guard before it")
                continue
            once = partial(_load_once, server, plan, endpoint, megapixels, concurrency)
            report.runs.append(plan.quiet.measure(once, lambda r: r.result.other_cores, log))


def _load_once(server: Server, plan: Plan, endpoint: Endpoint, megapixels: int,
               concurrency: int) -> E2ERun:
    matte = server.spec.name == "matte"
    before = stage_totals(server.spec.base_url) if matte else {}
    result = run_load(endpoint, server.pid, concurrency, plan.requests_for(concurrency),
                      plan.rss_limit_mib * 1024)
    stages = {}
    if matte and server.alive:
        stages = stage_means(before, stage_totals(server.spec.base_url))
    log(f"{server.spec.name} {megapixels} MP c={concurrency}: {result.images_per_s:.3f} "
        f"images/s, {len(result.ok)}/{len(result.samples)} ok, {result.rejected} 503s, "
        f"p50 {result.latency(50):.2f}s, peak RSS {result.peak_rss_kib // 1024} MiB, "
        f"{result.cpu_per_image:.2f} CPU s/image, others {result.other_cores:.2f} cores")
    return E2ERun(server.spec.name, megapixels, result, stages)


def serve(spec: Spec, plan: Plan) -> Server:
    log(f"starting {spec.name}: {shlex.join(spec.argv)}")
    return Server(spec, plan.logs / f"{spec.name}.log")


def run(plan: Plan) -> Report:
    env = dict(os.environ)
    provider, model = model_target(env)
    report = Report(command=_command(), date=time.strftime("%Y-%m-%d %H:%M %Z"),
                    provider=f"{provider} ({model.name})", settings=server_settings(env, provider))
    images = {mp: make_jpeg(plan.photo, mp) for mp in plan.sizes}
    _describe(plan, images, report)
    _describe_cpu(env, provider, report)
    if plan.limit:
        report.limits = measure_limits(plan, env)
        _write(plan, report)
    if provider == "cpu":
        report.engine_runs = compare_engines(plan, env, report.served)
    report.int8 = measure_int8(plan, env, provider, report.limits, report)
    _write(plan, report)
    peers = _prepare_rembg(plan, model, report) if plan.rembg else []
    # Interleaved, one server at a time, so noise from elsewhere hits both alike;
    # without rembg one Matte server serves every concurrency.
    rounds = [[c] for c in plan.concurrency] if peers else [plan.concurrency]
    for concurrencies in rounds:
        spec = matte_spec(free_port(), env)
        with serve(spec, plan) as server:
            report.provider = f"{server.ready_body.get('provider', provider)} ({model.name})"
            load_runs(server, partial(matte_endpoint, spec), plan, images, concurrencies, report)
            if concurrencies is rounds[0]:  # once, a request at a time
                _lone_formats(plan, server, images, report)
            if max(plan.concurrency) in concurrencies:  # once, after the heaviest runs
                _overload(plan, env, provider, server, images, report)
            _note_hwm(report, server)
        for name, (rembg, home) in peers:
            spec = rembg_spec(rembg, free_port(), home, env, name)
            with serve(spec, plan) as server:
                load_runs(server, partial(rembg_endpoint, spec), plan, images, concurrencies,
                          report)
                _note_hwm(report, server)
        _write(plan, report)
    if plan.soak:
        report.soak = _soak(plan, env, images, report)
    return report


def _describe_cpu(env: dict[str, str], provider: str, report: Report) -> None:
    """The CPU's model and flags, OpenVINO's view of it, and what the server will run."""
    import openvino as ov
    from engines import cpu  # imports the server's engine code: only when run

    from server.openvino_engine import resolve_precision
    from server.settings import Settings

    report.cpu_model, report.cpu_flags = cpu()
    report.capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    settings = Settings.from_env(env)
    if provider == "cuda":
        report.served = "onnxruntime fp16"
    elif settings.engine == "onnxruntime":
        report.served = f"onnxruntime {'int8' if settings.precision == 'int8' else 'fp32'}"
    else:
        report.served = f"openvino {resolve_precision(settings.precision, report.capabilities)}"


def compare_engines(plan: Plan, env: dict[str, str], served: str) -> list[EngineRun]:
    """One model run on ONNX Runtime fp32, OpenVINO fp32 and the served engine and precision,
    measured as benchmarks/engines.py does."""
    import dataclasses

    from engines import CASES
    from engines import measure as one_run

    from server.settings import Settings

    served_case = tuple(served.split(" ", 1))
    cases = [case for case in CASES if case in FP32_CASES or case == served_case]
    base = dataclasses.replace(Settings.from_env(env), provider="cpu")
    runs, results = (1 if plan.quick else 7), []
    for engine, precision in cases:
        if plan.quiet.max_wait_s > 0:
            plan.quiet.wait()
        settings = dataclasses.replace(base, engine=engine, precision=precision)
        measured = one_run(settings, runs)
        if isinstance(measured, str):
            results.append(EngineRun(engine, precision, None, measured))
            log(f"engines: {engine} {precision}: not here ({measured})")
            continue
        median, fastest, loaded = measured
        results.append(EngineRun(engine, precision, median,
                                 f"best {fastest:.3f} s of {runs}, loaded in {loaded:.1f} s"))
        log(f"engines: {engine} {precision}: {median:.3f} s/run (median of {runs})")
    return results


def _lone_formats(plan: Plan, server: Server, images: dict[int, bytes], report: Report) -> None:
    """A request at a time at the largest size, PNG then WebP, to the same server."""
    megapixels = max(plan.sizes)
    for output_format in ("png", "webp"):
        endpoint = matte_endpoint(server.spec, images[megapixels], output_format)
        once = partial(_load_once, server, plan, endpoint, megapixels, 1)
        run = plan.quiet.measure(once, lambda r: r.result.other_cores, log)
        report.lone[output_format] = run
        log(f"lone {megapixels} MP {output_format}: p50 {run.result.latency(50):.3f}s")


def _overload(plan: Plan, env: dict[str, str], provider: str, server: Server,
              images: dict[int, bytes], report: Report) -> None:
    """One burst past the server's slots and line at the largest size, each request tried once."""
    if not server.alive:
        report.notes.append("Overload probe: not run, the server was killed before it")
        return
    layout = matte_settings(env).layout(provider)
    extra = OVERLOAD_EXTRA_QUICK if plan.quick else OVERLOAD_EXTRA
    burst = layout.max_pending + layout.max_queue + extra
    megapixels = max(plan.sizes)
    if plan.quiet.max_wait_s > 0:  # the refusals' latency is the point: no neighbours' burst
        plan.quiet.wait()
    log(f"overload: a burst of {burst} requests of {megapixels} MP, one attempt each")
    endpoint = matte_endpoint(server.spec, images[megapixels])
    result = probe(endpoint, burst, megapixels, layout.max_pending, layout.max_queue)
    report.overload = result
    log(f"overload: {result.ok} x 200, {len(result.refused_at_once)} x 503 at once and "
        f"{result.timed_out} late (well formed: "
        f"{result.all_well_formed}), 503 p50 {result.refused_latency(50):.3f}s "
        f"max {result.refused_latency(100):.3f}s, {result.other} other")


def _describe(plan: Plan, images: dict[int, bytes], report: Report) -> None:
    quiet = plan.quiet
    report.notes += [
        "Inputs: " + "; ".join(f"{mp} MP = {SIDES.get(mp, '?')}px square JPEG q90 from "
                               f"{plan.photo.name}, {len(data) // 1024} KiB"
                               for mp, data in images.items()),
        f"Shared machine: each run waits up to {quiet.max_wait_s:.0f} s for others' CPU to stay "
        f"<= {quiet.threshold} cores, and is repeated (at most {quiet.attempts} tries, the "
        "quietest kept) when they went above it meanwhile.",
        f"Memory guard: a server past {plan.rss_limit_mib} MiB RSS is killed "
        "(the machine has no swap and is shared).",
    ]


def _bench_dir() -> Path:
    """The harness's own cache (rembg's virtualenv and weights), beside Matte's models."""
    cache = os.environ.get("MATTE_CACHE_DIR") or str(Path.home() / ".cache" / "matte")
    return Path(cache).expanduser() / "bench"


def _prepare_rembg(plan: Plan, model: Path, report: Report) -> list[tuple[str, tuple[Path, Path]]]:
    """rembg's server twice: given Matte's pruned graph (`rembg`), and the original graph
    as its users run it (`rembg-original`), each with its own U2NET_HOME."""
    venv = _bench_dir() / "rembg-venv"
    log(f"rembg: virtualenv {venv}")
    rembg = ensure_venv(venv, plan.logs / "rembg-install.log")
    pruned = _bench_dir() / "u2net"
    install_weights(model, pruned)
    peers = [("rembg", (rembg, pruned))]
    report.notes.append(f"rembg: `rembg s --no-ui` ({versions(venv)}), its default threads; "
                        f"`rembg` given Matte's {model.name} as isnet-general-use.onnx")
    original = model.parent / "original-fp16.onnx"
    if original.is_file():
        install_weights(original, _bench_dir() / "u2net-original")
        peers.append((ORIGINAL, (rembg, _bench_dir() / "u2net-original")))
        report.notes.append(f"`{ORIGINAL}` given the original, unpruned {original.name} "
                            "as isnet-general-use.onnx, as rembg's users run it")
    else:
        report.notes.append(f"`{ORIGINAL}`: not run, {original} is missing (`make model`)")
    return peers


def _soak(plan: Plan, env: dict[str, str], images: dict[int, bytes], report: Report) -> E2ERun:
    megapixels, concurrency = max(plan.sizes), max(plan.concurrency)
    spec = matte_spec(free_port(), env)
    with serve(spec, plan) as server:
        endpoint = matte_endpoint(spec, images[megapixels])
        # Memory, not speed, is the point here: one quiet start, no retries.
        if plan.quiet.max_wait_s > 0:
            plan.quiet.wait()
        log(f"soak: {plan.soak} requests of {megapixels} MP at c={concurrency}")
        result = run_load(endpoint, server.pid, concurrency, plan.soak, plan.rss_limit_mib * 1024)
        _note_hwm(report, server)
    log(f"soak: {result.images_per_s:.3f} images/s, peak RSS {result.peak_rss_kib // 1024} MiB")
    return E2ERun("matte", megapixels, result)


def _note_hwm(report: Report, server: Server) -> None:
    # VmHWM is gone with a killed server; its sampled peaks still say how high it went.
    sampled = [run.result.peak_rss_kib for run in report.runs if run.server == server.spec.name]
    hwm = max([read_status_kib(server.pid, "VmHWM"), *sampled])
    report.hwm_kib[server.spec.name] = max(hwm, report.hwm_kib.get(server.spec.name, 0))


def _command() -> str:
    settings = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                if k.startswith("MATTE_") and k != "MATTE_CACHE_DIR"]
    args = [".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]]
    return " ".join([*settings, shlex.join(args)])


def _write(plan: Plan, report: Report) -> None:
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(render(report))


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    report = run(plan)
    _write(plan, report)
    log(f"wrote {plan.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
