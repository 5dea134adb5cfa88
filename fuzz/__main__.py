"""`python -m fuzz [--seconds 60] [TARGET ...]` (`make fuzz`): each target under atheris for a
bounded time, one after the other, with a seed corpus kept in .local/fuzz/<target>; prints
and writes (fuzz/REPORT.md) the executions and the crashes found. Not run in CI."""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from pathlib import Path

from fuzz.targets import TARGETS, write_seeds

ROOT = Path(__file__).resolve().parents[1]
REPORT = Path(__file__).with_name("REPORT.md")


def run(target: str, seconds: int) -> tuple[int, int, str]:
    corpus = ROOT / ".local" / "fuzz" / target
    artifacts = ROOT / ".local" / "fuzz" / f"{target}-crashes"
    write_seeds(corpus, target)
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "fuzz.run_target",
        target,
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/",
        "-rss_limit_mb=2048",
        "-max_len=65536",
        str(corpus),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    output = result.stdout + result.stderr
    done = re.findall(r"Done (\d+) runs", output) or re.findall(r"#(\d+)\s", output)
    executions = int(done[-1]) if done else 0
    crashes = len(list(artifacts.glob("crash-*"))) + len(list(artifacts.glob("timeout-*")))
    return executions, crashes, output[-3000:] if result.returncode else ""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz")
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("targets", nargs="*", default=sorted(TARGETS))
    args = parser.parse_args()
    rows, failed = [], False
    for target in args.targets:
        executions, crashes, tail = run(target, args.seconds)
        print(f"{target:20s} {executions:>12,} executions in {args.seconds} s, {crashes} crashes", flush=True)
        if tail:
            print(tail)
        failed |= crashes > 0 or bool(tail)
        rows.append(f"| {target} | {args.seconds} s | {executions:,} | {crashes} |")
    REPORT.write_text(
        f"# Fuzzing ({datetime.date.today().isoformat()})\n\n"
        "`make fuzz` (atheris, libFuzzer): each target fed mutated bytes for the time shown; a crash is\n"
        "any exception other than the refusal the input deserves (fuzz/targets.py). Crash inputs are\n"
        "kept in .local/fuzz/<target>-crashes.\n\n"
        "| target | time | executions | crashes |\n|---|---|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
