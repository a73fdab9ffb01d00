"""Issue 16's GPU check in one command: fidelity, the model's batched limit, Matte and
rembg's request path end to end, CUDA graphs and TensorRT, and the targets.

    python benchmarks/gpu.py --out DIR --fixtures DIR            # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --cpu --out /tmp/gpu      # every phase, tiny, on a CPU

benchmarks/gpu_stage.py prepares the files that travel to the GPU machine and prints
the calls that run this there. DIR gets gpu-results.md and gpu-results.json, rewritten
after every phase and every run, so a run killed at its time limit keeps what it
measured; server logs go to DIR/logs. Each phase has a share of --budget-s and each
run within it a share of that, so the whole check ends inside the machine's limit.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

ROOT = Path(__file__).resolve().parents[1]
# On the GPU machine Matte is not installed: the checkout itself is the package.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gpu_meter import GpuSampler, Nvml  # noqa: E402
from gpu_report import PHASES, E2ERow, FidelityRow, LimitRow, Results, render, to_json  # noqa: E402
from gpu_variants import VARIANTS, measure_variant, read_rows, tensorrt_missing  # noqa: E402
from int8_mode import FIXTURES, soft_iou  # noqa: E402
from load import Endpoint, run_load  # noqa: E402
from model_limit import Layout, measure  # noqa: E402
from rembg_server import rembg_endpoint  # noqa: E402
from report import machine  # noqa: E402
from run import make_jpeg  # noqa: E402
from servers import (  # noqa: E402
    Server,
    Spec,
    free_port,
    matte_endpoint,
    matte_spec,
    server_settings,
    stage_means,
    stage_totals,
)

if TYPE_CHECKING:
    from server.settings import Settings

PHOTO = "cloth-1.jpg"  # the model limit's input and the JPEGs' source, as benchmarks/run.py
QUICK_FIXTURE = "car-1.jpg"  # the smallest: the CPU smoke run checks one photo
VARIANT_BATCHES = [1, 8]  # a lone image, and the server's CUDA batch size
# Seconds of the budget each phase may take at most in a full run; the last phase
# (TensorRT, whose engine build is the least predictable) gets whatever is left.
SHARES = {
    "fidelity": 40,
    "model limit": 70,
    "matte end to end": 150,
    "rembg path": 110,
    "cuda graphs": 50,
}
MIN_PHASE_S = 10.0  # with less left a phase is skipped, saying so


@dataclass(frozen=True)
class Plan:
    provider: str  # "cuda" or "cpu"
    quick: bool
    out: Path
    fixtures: Path
    budget_s: float
    sizes: list[int]  # megapixels
    concurrency: list[int]
    batches: list[int]

    def requests_for(self, concurrency: int) -> int:
        return concurrency if self.quick else max(16, 4 * concurrency)

    def runs_for(self, batch: int) -> int:
        return 1 if self.quick else max(3, 32 // batch)

    @property
    def photos(self) -> list[Path]:
        photos = sorted(self.fixtures.glob("*.jpg"))
        return [p for p in photos if p.name == QUICK_FIXTURE] if self.quick else photos


@dataclass
class Check:
    plan: Plan
    results: Results
    env: dict[str, str]
    nvml: Nvml | None
    started: float = field(default_factory=time.monotonic)
    cuda_failed: str = ""  # why the CUDA provider did not start, once known

    @property
    def deadline(self) -> float:
        return self.started + self.plan.budget_s

    @property
    def settings(self) -> Settings:
        from server.settings import Settings

        return Settings.from_env(self.env)

    @property
    def read_gpu(self) -> Callable[[], Any] | None:
        return self.nvml.read if self.nvml else None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.plan.out.mkdir(parents=True, exist_ok=True)
        (self.plan.out / "gpu-results.md").write_text(render(self.results))
        (self.plan.out / "gpu-results.json").write_text(to_json(self.results))

    def gpu_skip(self) -> str:
        """Why a phase that needs the GPU cannot run; empty when it can (or on the CPU run)."""
        return f"the CUDA provider did not start ({self.cuda_failed})" if self.cuda_failed else ""


Phase = Callable[[Check, float], str]  # (check, phase deadline) -> "" or why it was skipped


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# --- phases ---------------------------------------------------------------------------------


def environment(check: Check, deadline: float) -> str:
    import numpy
    import onnxruntime as ort
    import PIL

    env = check.results.environment
    nvml = check.nvml
    if nvml is not None:
        env["GPU"] = f"{nvml.name()}, {nvml.total_mib():.0f} MiB"
        env["driver"] = f"{nvml.driver()} (CUDA {nvml.cuda_driver()} at most)"
    else:
        env["GPU"] = "none (no libnvidia-ml.so.1: no NVIDIA driver)"
    env["onnxruntime"] = f"{ort.__version__} from {Path(ort.__file__).parent}"
    env["providers available"] = ", ".join(ort.get_available_providers())
    if check.plan.provider == "cuda":
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            preload()  # loads CUDA and cuDNN from the nvidia-* wheels, as the server does
        env["CUDA runtime"] = _library_version("libcudart.so", "cudaRuntimeGetVersion")
        env["cuDNN"] = _library_version("libcudnn.so", "cudnnGetVersion")
    env["nvidia wheels"] = _nvidia_wheels() or "none"
    served = server_settings(check.env, check.plan.provider)
    env["Matte settings"] = ", ".join(f"{key} {value}" for key, value in served.items())
    env["CPU"] = machine()
    env["Python"] = (
        f"{platform.python_version()}, numpy {numpy.__version__}, pillow {PIL.__version__}"
    )
    return ""


def fidelity(check: Check, deadline: float) -> str:
    from server.engine import load_engine
    from server.imaging import Limits, decode
    from server.isnet import to_mask, to_tensor

    settings = check.settings
    engine = load_engine(settings)
    check.results.fidelity_engine = (
        f"{engine.engine} {engine.provider} {engine.precision} ({Path(engine.model_file).name})"
    )
    if check.plan.provider == "cuda" and engine.provider != "cuda":
        check.cuda_failed = "the server's engine fell back to the CPU; see the log above"
        return check.gpu_skip()
    limits = Limits(settings.min_side, settings.min_pixels, settings.max_pixels)
    for photo in check.plan.photos:
        if time.monotonic() > deadline:
            check.results.notes.append(f"fidelity: {photo.stem} not checked, out of time")
            continue
        picture = decode(photo.read_bytes(), limits)
        prediction = engine.run(to_tensor(picture.rgb)[None])[0]
        mask = to_mask(prediction, (picture.rgb.shape[1], picture.rgb.shape[0]))
        iou = soft_iou(mask, _reference(photo))
        check.results.fidelity.append(FidelityRow(photo.stem, iou))
        log(f"fidelity {photo.stem}: soft IoU {iou:.4f}")
        check.write()
    return ""


def model_limit(check: Check, deadline: float) -> str:
    if check.gpu_skip():
        return check.gpu_skip()
    settings = check.settings
    layout = Layout(1, settings.cores)
    for batch in check.plan.batches:
        if time.monotonic() > deadline:
            check.results.notes.append(f"model limit: batch {batch} not run, out of time")
            continue
        with GpuSampler(check.read_gpu) as gpu:
            result = measure(
                settings,
                check.plan.fixtures / PHOTO,
                layout,
                batch,
                warmup=1 if check.plan.quick else 2,
                runs=check.plan.runs_for(batch),
            )
        use = gpu.result
        check.results.limits.append(
            LimitRow(
                batch,
                result.images_per_s,
                result.seconds_per_run,
                result.cpu_per_image,
                use.peak_mib if use else None,
                use.busy_percent if use else None,
            )
        )
        log(
            f"model limit batch {batch}: {result.images_per_s:.2f} images/s "
            f"({result.seconds_per_run * 1000:.1f} ms/run)"
        )
        check.write()
        gc.collect()  # the batch's session goes before the next one's memory is read
    return ""


def matte_end_to_end(check: Check, deadline: float) -> str:
    if check.gpu_skip():
        return check.gpu_skip()
    spec = matte_spec(free_port(), check.env)
    _serve(check, spec, partial(matte_endpoint, spec), deadline, stages=True)
    return ""


def rembg_path(check: Check, deadline: float) -> str:
    if check.gpu_skip():
        return check.gpu_skip()
    provider: Literal["cuda", "cpu"] = "cuda" if check.plan.provider == "cuda" else "cpu"
    model = check.settings.model_file(provider)
    port = free_port()
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "rembg_path.py"),
        "--port",
        str(port),
        "--model",
        str(model),
        "--provider",
        provider,
    ]
    env = {k: v for k, v in check.env.items() if not k.startswith("MATTE_")}
    spec = Spec("rembg path", argv, env, f"http://127.0.0.1:{port}", "/api")
    check.results.notes.append(
        f"rembg's request path: benchmarks/rembg_path.py on {model.name} (Matte's graph), "
        "rembg's ONNX Runtime options (default SessionOptions, default provider options), "
        "one unbatched run per request in anyio's 40-thread pool."
    )
    _serve(check, spec, partial(rembg_endpoint, spec), deadline, stages=False)
    return ""


def cuda_graphs(check: Check, deadline: float) -> str:
    return _variant(check, "cuda graphs", deadline, "")


def tensorrt(check: Check, deadline: float) -> str:
    import onnxruntime as ort

    return _variant(check, "tensorrt", deadline, tensorrt_missing(ort.get_available_providers()))


PHASE_FUNCTIONS: dict[str, Phase] = {
    "environment": environment,
    "fidelity": fidelity,
    "model limit": model_limit,
    "matte end to end": matte_end_to_end,
    "rembg path": rembg_path,
    "cuda graphs": cuda_graphs,
    "tensorrt": tensorrt,
}
assert tuple(PHASE_FUNCTIONS) == PHASES


# --- helpers --------------------------------------------------------------------------------


def _serve(
    check: Check,
    spec: Spec,
    endpoint_for: Callable[[bytes], Endpoint],
    deadline: float,
    *,
    stages: bool,
) -> None:
    """Start `spec`'s server, warm it up, then every size at every concurrency."""
    plan = check.plan
    images = {mp: make_jpeg(plan.fixtures / PHOTO, mp) for mp in plan.sizes}
    log_path = plan.out / "logs" / f"{spec.name.replace(' ', '-')}.log"
    log(f"starting {spec.name}: {shlex.join(spec.argv)}")
    ready_timeout = max(MIN_PHASE_S, min(300.0, deadline - time.monotonic()))
    with Server(spec, log_path, ready_timeout_s=ready_timeout) as server:
        endpoints = {mp: endpoint_for(data) for mp, data in images.items()}
        for endpoint in endpoints.values():
            warm = run_load(endpoint, server.pid, 1, 1)  # first runs pick kernels, grow arenas
            if warm.failed:
                raise RuntimeError(f"{spec.name}: warm-up request failed\n{server.log_tail()}")
        todo = [(c, mp) for c in plan.concurrency for mp in plan.sizes]
        for index, (concurrency, megapixels) in enumerate(todo):
            share = (deadline - time.monotonic()) / (len(todo) - index)
            if share < 1.0 or not server.alive:
                check.results.notes.append(
                    f"{spec.name} {megapixels} MP c={concurrency}: "
                    "not run, out of time or the server stopped"
                )
                continue
            before = stage_totals(spec.base_url) if stages else {}
            with GpuSampler(check.read_gpu) as gpu:
                result = run_load(
                    endpoints[megapixels],
                    server.pid,
                    concurrency,
                    plan.requests_for(concurrency),
                    deadline_s=share,
                )
            after = stage_totals(spec.base_url) if stages else {}
            use = gpu.result
            row = E2ERow(
                spec.name,
                megapixels,
                concurrency,
                len(result.samples),
                len(result.ok),
                result.rejected,
                result.images_per_s,
                result.latency(50),
                result.latency(99),
                result.server_cpu_s / result.elapsed_s if result.elapsed_s > 0 else 0.0,
                result.peak_rss_kib / 1024,
                use.peak_mib if use else None,
                use.busy_percent if use else None,
                stage_means(before, after),
            )
            check.results.e2e.append(row)
            log(
                f"{spec.name} {megapixels} MP c={concurrency}: {row.images_per_s:.2f} images/s, "
                f"{row.ok}/{row.requests} ok, p50 {row.p50_s * 1000:.1f} ms, "
                f"{row.server_cores:.2f} server cores"
            )
            check.write()


def _variant(check: Check, name: str, deadline: float, missing: str) -> str:
    if check.plan.provider != "cuda":
        return f"{name} needs the CUDA provider (this run: {check.plan.provider})"
    if check.gpu_skip() or missing:
        return check.gpu_skip() or missing
    result = check.plan.out / f"{name.replace(' ', '-')}.json"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "variant",
        name,
        "--batches",
        ",".join(map(str, VARIANT_BATCHES)),
        "--runs",
        str(check.plan.runs_for(max(VARIANT_BATCHES))),
        "--photo",
        str(check.plan.fixtures / PHOTO),
        "--result",
        str(result),
    ]
    status = run_child(
        argv,
        check.env,
        deadline - time.monotonic(),
        check.plan.out / "logs" / f"{name.replace(' ', '-')}.log",
    )
    rows = read_rows(result)
    check.results.variants += rows
    for row in rows:
        log(f"{name} batch {row.batch}: {row.images_per_s:.2f} images/s ({row.note})")
    return status


def run_child(argv: list[str], env: dict[str, str], timeout_s: float, log_path: Path) -> str:
    """Run a variant's child within `timeout_s`: "" when it finished, else why not."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as output:
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=max(1.0, timeout_s),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"stopped at its time limit ({timeout_s:.0f} s); rows measured before are kept"
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"the child exited {done.returncode}: {tail[0][:200]}"
    return ""


def _reference(photo: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(photo.with_name(photo.stem + ".isnet-general-use.png")) as reference:
        return np.asarray(reference.convert("RGBA"))[:, :, 3]


def _library_version(prefix: str, function: str) -> str:
    """The version a loaded CUDA library reports, found by its path in this process's maps."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    paths = sorted(
        {
            line.split()[-1]
            for line in maps.splitlines()
            if f"/{prefix}" in line and line.split()[-1].startswith("/")
        }
    )
    if not paths:
        return "not loaded"
    try:
        getter = getattr(ctypes.CDLL(paths[0]), function)
        if function == "cudnnGetVersion":
            getter.restype = ctypes.c_size_t
            version = int(getter())
        else:
            value = ctypes.c_int(0)
            getter(ctypes.byref(value))
            version = value.value
    except (OSError, AttributeError) as error:  # a version line must not fail the phase
        return f"unknown ({Path(paths[0]).name}: {error})"
    return f"{version} ({Path(paths[0]).name})"


def _nvidia_wheels() -> str:
    import importlib.metadata as metadata

    names = sorted(
        {
            f"{d.metadata['Name']} {d.version}"
            for d in metadata.distributions()
            if (d.metadata["Name"] or "").lower().startswith("nvidia-")
        }
    )
    return ", ".join(names)


# --- running the check ----------------------------------------------------------------------


def run_phases(check: Check) -> bool:
    """Every phase in order within its share of the budget; False if any failed."""
    ok = True
    names = list(PHASE_FUNCTIONS)
    for index, name in enumerate(names):
        left = check.left()
        if left < MIN_PHASE_S:
            check.results.phases[name] = f"skipped: {max(0.0, left):.0f} s of the budget left"
            check.write()
            continue
        last = index == len(names) - 1
        share = left if check.plan.quick or last else min(left, SHARES.get(name, left))
        log(f"phase {name} ({share:.0f} s at most)")
        begun = time.monotonic()
        try:
            skipped = PHASE_FUNCTIONS[name](check, begun + share)
        except Exception as error:  # one phase's failure must not lose the others' figures
            traceback.print_exc()
            first = (str(error).strip().splitlines() or [""])[0][:200]
            check.results.phases[name] = f"failed: {type(error).__name__}: {first}"
            ok = False
        else:
            took = time.monotonic() - begun
            check.results.phases[name] = (
                f"skipped: {skipped}" if skipped else f"done in {took:.0f} s"
            )
        log(f"phase {name}: {check.results.phases[name]}")
        check.write()
    return ok


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=FIXTURES,
        help="rembg's photos and reference masks (default ../shared/fixtures/rembg)",
    )
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--cpu", action="store_true", help="--provider cpu --quick (what CI runs)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=520.0,
        help="seconds for the whole check (default 520: the GPU machine "
        "allows 600 a command, installing takes some)",
    )
    args = parser.parse_args(argv)
    quick = args.quick or args.cpu
    if not (args.fixtures / PHOTO).is_file():
        parser.error(f"--fixtures {args.fixtures}: no {PHOTO} there")
    return Plan(
        provider="cpu" if args.cpu else args.provider,
        quick=quick,
        out=args.out,
        fixtures=args.fixtures,
        budget_s=args.budget_s,
        sizes=[1] if quick else [1, 4],
        concurrency=[1, 2] if quick else [1, 16, 64],
        batches=[1] if quick else [1, 2, 4, 8, 16, 32],
    )


def variant_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gpu.py variant")
    parser.add_argument("name", choices=VARIANTS)
    parser.add_argument("--batches", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    from server.settings import Settings

    batches = [int(item) for item in args.batches.split(",")]
    measure_variant(args.name, Settings.from_env(), args.photo, batches, args.runs, args.result)
    return 0


def _stop(signum: int, frame: object) -> None:
    # `timeout` sends SIGTERM: unwind, so the servers are stopped and the files kept.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["variant"]:
        return variant_main(argv[1:])
    plan = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    # The Matte server's images and usage go to a throwaway folder, not the user's.
    with tempfile.TemporaryDirectory(prefix="matte-gpu-data-") as data_dir:
        env = {**os.environ, "MATTE_PROVIDER": plan.provider, "MATTE_DATA_DIR": data_dir}
        return check(plan, env, argv)


def check(plan: Plan, env: dict[str, str], argv: list[str]) -> int:
    results = Results(
        command=shlex.join(["python", "benchmarks/gpu.py", *argv]),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        provider=plan.provider,
        quick=plan.quick,
        budget_s=plan.budget_s,
        cores=os.cpu_count() or 1,
    )
    state = Check(plan, results, env, Nvml.open())
    state.write()
    ok = run_phases(state)
    state.write()
    log(f"wrote {plan.out / 'gpu-results.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
