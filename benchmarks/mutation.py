"""`make mutation`'s report: the mutation score per module and every mutant that survived.

Run after `mutmut run` (the Makefile does both). It reads mutmut's own verdicts
(`mutmut results --all true`, `mutmut show NAME`), joins each survivor with its
explanation from `benchmarks/mutation_survivors.toml`, and writes
`benchmarks/MUTATION.md`. It exits non-zero when the score is under the target
or a survivor has no explanation, so a new untested line cannot slip by: kill
it with a test, or say in the TOML file why no test can (an equivalent mutant).

A survivor is matched by its function and the lines the mutant adds, not by
mutmut's numbering, which shifts whenever a function changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.90
# mutmut's verdicts, as `mutmut results` prints them. A timeout is a kill: the
# mutant made the tests hang, and the suite noticed.
KILLED = {"killed", "timeout", "caught by type check"}
NOT_RUN = {"skipped", "not checked"}
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:ǁ(?P<cls>\w+)ǁ|_)(?P<func>\w+?)__mutmut_\d+$")


@dataclass(frozen=True)
class Mutant:
    name: str
    status: str

    @property
    def module(self) -> str:
        match = NAME.match(self.name)
        return match["module"].replace(".", "/") + ".py" if match else "?"

    @property
    def function(self) -> str:
        match = NAME.match(self.name)
        if not match:
            return self.name
        return f"{match['cls']}.{match['func']}" if match["cls"] else match["func"]


def mutmut(*args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def verdicts() -> list[Mutant]:
    mutants = []
    for line in mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            mutants.append(Mutant(name, status.strip()))
    return mutants


def added_lines(diff: str) -> str:
    """The lines a mutant adds, stripped: what identifies it across renumbering."""
    lines = diff.splitlines()
    return "\n".join(
        line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")
    )


def explanations(path: Path) -> dict[tuple[str, str], str]:
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {
        (entry["function"], entry["mutation"].strip()): entry["why"].strip()
        for entry in data.get("survivor", [])
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def report(mutants: list[Mutant], known: dict[tuple[str, str], str]) -> tuple[str, float, int]:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for mutant in mutants:
        by_module[mutant.module][mutant.status] += 1
    counted = [m for m in mutants if m.status not in NOT_RUN]
    killed = sum(m.status in KILLED for m in counted)
    score = killed / len(counted) if counted else 0.0
    survivors = [m for m in counted if m.status not in KILLED]

    lines = [
        "# Mutation testing",
        "",
        f"- Date: {dt.date.today().isoformat()}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores",
        f"- Tool: mutmut {metadata.version('mutmut')}, over the fast tests "
        "(`[tool.mutmut]` in pyproject.toml)",
        f"- Commit: {commit()}",
        "- Command: `make mutation`",
        f"- Score: **{killed} of {len(counted)} mutants killed, {score:.1%}** "
        f"(target {TARGET:.0%}; a timeout counts as killed)",
        "",
        "| module | mutants | killed | survived | other |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for module in sorted(by_module):
        counts = by_module[module]
        total = sum(n for status, n in counts.items() if status not in NOT_RUN)
        dead = sum(counts[status] for status in KILLED)
        survived = counts["survived"]
        lines.append(f"| `{module}` | {total} | {dead} | {survived} | {total - dead - survived} |")

    lines += ["", "## Survivors", ""]
    unexplained = 0
    if not survivors:
        lines.append("None.")
    for mutant in survivors:
        diff = mutmut("show", mutant.name)
        why = known.get((mutant.function, added_lines(diff)))
        if why is None:
            unexplained += 1
            why = "**Not explained.** Kill it with a test, or say why in mutation_survivors.toml."
        body = "\n".join(line for line in diff.splitlines() if not line.startswith("# "))
        lines += [
            f"### `{mutant.function}` in `{mutant.module}` ({mutant.status})",
            "",
            "```diff",
            body.strip(),
            "```",
            "",
            why,
            "",
        ]
    return "\n".join(lines).rstrip() + "\n", score, unexplained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "MUTATION.md")
    parser.add_argument(
        "--explanations", type=Path, default=ROOT / "benchmarks" / "mutation_survivors.toml"
    )
    args = parser.parse_args()
    mutants = verdicts()
    if not mutants:
        print("mutation: no results; run `mutmut run` first", file=sys.stderr)
        return 2
    text, score, unexplained = report(mutants, explanations(args.explanations))
    args.out.write_text(text, encoding="utf-8")
    print(f"mutation: {score:.1%} killed, {unexplained} survivors unexplained -> {args.out}")
    return 0 if score >= TARGET and unexplained == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
