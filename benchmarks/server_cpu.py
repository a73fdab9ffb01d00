"""Where a served image's CPU goes: user and kernel time, page faults, and each thread.

    .venv/bin/python benchmarks/server_cpu.py [--size 4] [--concurrency 4] [--requests 24]

Starts Matte as `make bench` does (MATTE_* variables pass through), sends a warm-up and
then `--requests` JPEG-to-PNG requests at `--concurrency`, and reads the server's
/proc counters before and after: CPU ms per image in user and kernel mode, minor page
faults per image, and the CPU ms per image of each of its threads, busiest first. The
model's threads (OpenVINO's own and the scheduler's `matte-predict`) are the two at
about 0.2 s each in bf16 on 2 cores; the rest are the stages around it, uvicorn's event
loop and OpenVINO's idle helpers. benchmarks/PIPELINE.md has what it showed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from load import MINFLT, STIME, UTIME, run_load, stat_fields
from run import make_jpeg
from servers import ROOT, Server, free_port, matte_endpoint, matte_spec

PHOTO = ROOT.parent / "shared" / "fixtures" / "rembg" / "car-1.jpg"
TICK = os.sysconf("SC_CLK_TCK")


def process_counters(pid: int) -> tuple[float, float, int]:
    """(user s, kernel s, minor faults) of the whole process."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    return int(fields[UTIME]) / TICK, int(fields[STIME]) / TICK, int(fields[MINFLT])


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each of the process's threads, by thread id."""
    seconds: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = stat_fields(Path(f"/proc/{pid}/task/{tid}/stat"))
        except OSError:
            continue  # the thread ended
        seconds[int(tid)] = (int(fields[UTIME]) + int(fields[STIME])) / TICK
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4, help="megapixels")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--log", type=Path, default=ROOT / "benchmarks" / "out" / "server_cpu.log")
    args = parser.parse_args()
    jpeg = make_jpeg(PHOTO, args.size)
    env = {name: value for name, value in os.environ.items() if name.startswith("MATTE_")}
    spec = matte_spec(free_port(), env)
    with Server(spec, args.log) as server:
        endpoint = matte_endpoint(spec, jpeg)
        run_load(endpoint, server.pid, 1, 2)  # warm-up, not counted
        user, kernel, faults = process_counters(server.pid)
        threads = thread_cpu(server.pid)
        result = run_load(endpoint, server.pid, args.concurrency, args.requests)
        user_after, kernel_after, faults_after = process_counters(server.pid)
        threads_after = thread_cpu(server.pid)
    images = len(result.ok)
    if not images:
        sys.exit("no request succeeded: see " + str(args.log))
    print(f"{args.size} MP, concurrency {args.concurrency}, {images}/{len(result.samples)} ok: "
          f"{result.images_per_s:.2f} images/s")
    print(f"user {1000 * (user_after - user) / images:.0f} ms an image, kernel "
          f"{1000 * (kernel_after - kernel) / images:.0f} ms, "
          f"{(faults_after - faults) / images:.0f} minor faults")
    spent = {tid: threads_after[tid] - threads.get(tid, 0.0) for tid in threads_after}
    for tid, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds > 0:
            role = " (the main thread)" if tid == server.pid else ""
            print(f"  thread {tid}: {1000 * seconds / images:6.1f} ms an image{role}")


if __name__ == "__main__":
    main()
