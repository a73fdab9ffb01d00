"""What a benchmark run measures: the command line, read into one `Plan`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from quiet import Quiet
from servers import ROOT

PHOTO = ROOT.parent / "shared" / "fixtures" / "rembg" / "cloth-1.jpg"

USAGE = """\
    .venv/bin/python benchmarks/run.py            # the full run (~12 min on 2 idle cores)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run: 1 MP, c=1 and 2, no rembg (~1 min)
    MATTE_WORKERS=2 .venv/bin/python benchmarks/run.py --no-rembg   # compare a setting

MATTE_* variables pass through to the Matte server under test.
"""


@dataclass(frozen=True)
class Plan:
    sizes: list[int]  # megapixels
    concurrency: list[int]
    requests: int | None  # per run; None: max(24, 4 x concurrency)
    soak: int  # requests in the soak; 0 skips it
    rembg: bool
    limit: bool
    quick: bool
    photo: Path
    out: Path
    logs: Path
    rss_limit_mib: int  # a server past this is killed (see load.RssSampler)
    quiet: Quiet

    def requests_for(self, concurrency: int) -> int:
        # Images/s is successes over the whole run, so its first wave (the model idle
        # while the first uploads decode) and its last (while the last encode) count:
        # at 8 requests and c=4 they were half the run. (On 2026-12-03 the 4 MP figure
        # moved little, 3.005 -> 3.042 images/s: the longer run is for steadiness.)
        return self.requests if self.requests else max(24, 4 * concurrency)


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 MP, c=1,2, 3 requests, no rembg, no soak, "
                             "1 model run, no waiting for quiet")
    parser.add_argument("--no-rembg", action="store_true", help="skip rembg's server")
    parser.add_argument("--no-limit", action="store_true", help="skip the model-limit sweep")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--sizes", type=_ints, help="megapixels, e.g. 1,4 (default 1,4)")
    parser.add_argument("--concurrency", type=_ints, help="e.g. 1,4,16 (default 1,4,16)")
    parser.add_argument("--requests", type=int, help="requests per run (default max(24, 4c))")
    parser.add_argument("--soak", type=int, help="soak requests at 4 MP, c=max (default 200)")
    parser.add_argument("--photo", type=Path, default=PHOTO, help="the photo to resize")
    parser.add_argument("--logs", type=Path, default=ROOT / "benchmarks" / "out",
                        help="server logs (default benchmarks/out, git-ignored)")
    parser.add_argument("--rss-limit-mib", type=int, default=_default_rss_limit_mib(),
                        help="kill a server whose RSS passes this (default: half the "
                             "memory available at start)")
    parser.add_argument("--attempts", type=int,
                        help="runs per measurement when others' load hit it (default 3)")
    parser.add_argument("--max-wait", type=float,
                        help="seconds to wait for a quiet machine before each run (default 90)")
    parser.add_argument("--quiet-threshold", type=float, default=0.2,
                        help="others' CPU, in cores, that still counts as quiet (default 0.2)")
    args = parser.parse_args(argv)
    quick = args.quick
    quiet = Quiet(
        threshold=args.quiet_threshold,
        max_wait_s=args.max_wait if args.max_wait is not None else (0 if quick else 90),
        attempts=args.attempts or (1 if quick else 3),
    )
    return Plan(
        sizes=args.sizes or ([1] if quick else [1, 4]),
        concurrency=args.concurrency or ([1, 2] if quick else [1, 4, 16]),
        requests=args.requests or (3 if quick else None),
        soak=args.soak if args.soak is not None else (0 if quick else 200),
        rembg=not (args.no_rembg or quick),
        limit=not args.no_limit,
        quick=quick,
        photo=args.photo,
        out=args.out,
        logs=args.logs,
        rss_limit_mib=args.rss_limit_mib,
        quiet=quiet,
    )


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def _default_rss_limit_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return max(2048, int(line.split()[1]) // 1024 // 2)
    return 8192
