"""`python -m bench`: every row of issue #14's table in one run, side by side, with the
targets' ratios, RSS against cached tokens, p99 at half the maximum rate, snapshot scale,
token-validation micro-benchmarks, and PNG plots; writes bench/REPORT.md (and its figures).

    python -m bench [--rounds 5] [--duration 10] [--warmup 1] [--quick]
                    [--distinct-tokens 20000] [--rss-tokens 0,10000,50000,100000]
                    [--only NAME,...] [--skip-authorino] [--skip-other-algs]
                    [--skip-table] [--skip-memory] [--skip-scale] [--skip-micro]

`--quick` is 1 round of 3 s with smaller token counts: a check that the harness works, not
a measurement; `--only` runs some configurations (names in bench/table.py). The defaults
take about 20 minutes on two cores. Loopback only. Authorino and
ghz come from the tools cache (`hack/tools/build.sh bench`, which `make bench` runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import authorino, micro, plots, report, scale, table, throughput
from bench import memory as memory_bench
from bench.issuer import RESOURCE, SCOPE, StaticIssuer, policy_yaml

REPORT = Path(__file__).resolve().with_name("REPORT.md")


def _counts(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def _version_of(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "absent"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of every configuration")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--grpc-concurrency", type=int, default=32, help="ghz concurrent calls (one connection)")
    parser.add_argument("--distinct-tokens", type=int, default=20_000, help="tokens cycled in the cache-miss rows")
    parser.add_argument("--rss-tokens", type=_counts, default=[0, 10_000, 50_000, 100_000], help="N for RSS")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="seconds of each paced p99 run")
    parser.add_argument("--scale-policies", type=_counts, default=list(scale.POLICY_COUNTS))
    parser.add_argument(
        "--only", type=lambda text: [n for n in text.split(",") if n], default=None, help="configurations to run"
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, fewer tokens: checks the harness")
    parser.add_argument("--skip-authorino", action="store_true")
    parser.add_argument("--skip-other-algs", action="store_true", help="no RS256 / EdDSA distinct-token rows")
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.paced_seconds = 1, 3.0, 0.5, 3.0
        args.distinct_tokens = min(args.distinct_tokens, 12_000)
        args.rss_tokens = [0, 2_000, 12_000]
        args.scale_policies = [1, 100, 1_000]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    load_start = report.loadavg()
    machine_at_start = report.machine_info()  # the commit measured, not the one at the end
    server_prefix, load_prefix, pinning = throughput.pinning()
    ghz = authorino.built("ghz")
    with_authorino = not args.skip_authorino and authorino.built("authorino") is not None
    if args.only and not any("authorino" in name for name in args.only):
        with_authorino = False
    labels = {
        name: label.format(n=args.distinct_tokens, c=args.grpc_concurrency) for name, label in table.LABELS.items()
    }
    run = report.Run(
        started=started,
        elapsed=0.0,
        command="python -m bench" + ("".join(f" {a}" for a in sys.argv[1:]) if argv is None else " ".join(argv)),
        machine=[],
        load_start=load_start,
        load_end="",
        pinning=pinning,
        settings={
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "grpc_concurrency": args.grpc_concurrency,
        },
        labels=labels,
    )
    if not args.skip_authorino and not with_authorino:
        run.notes.append("Authorino is not built (`hack/tools/build.sh authorino`): its rows are empty.")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authgate-bench-")))
        issuer = stack.enter_context(StaticIssuer())
        token = issuer.token("ES256", RESOURCE, SCOPE)
        (work / "policy.yaml").write_text(policy_yaml(issuer.issuer))
        if not args.skip_micro:
            print("token validation micro-benchmarks ...", flush=True)
            run.micro = micro.measure(issuer, work / "policy.yaml")
        if not args.skip_table:
            print("the configurations side by side ...", flush=True)
            with contextlib.ExitStack() as servers:
                setup = table.start(
                    servers,
                    work / "table",
                    issuer,
                    token,
                    server_prefix,
                    distinct=args.distinct_tokens,
                    ghz=ghz,
                    with_authorino=with_authorino,
                    with_other_algs=not args.skip_other_algs,
                )
                run.notes += setup.notes
                run.rounds = table.run_rounds(
                    setup,
                    args.rounds,
                    args.duration,
                    args.warmup,
                    args.connections,
                    args.grpc_concurrency,
                    load_prefix,
                    ghz,
                    args.only,
                    server_prefix,
                )
        if not args.skip_memory:
            print("RSS against distinct tokens, p99 at half the maximum rate ...", flush=True)
            maximum = None
            if run.rounds is not None and run.rounds.runs.get("authgate-log-on"):
                maximum = statistics.median(m.rps for m in run.rounds.runs["authgate-log-on"])
            else:
                run.notes.append("No paced p99: it needs the maximum rate from the table (--skip-table was given).")
            run.memory = memory_bench.measure(
                work,
                issuer,
                token,
                server_prefix,
                load_prefix,
                args.rss_tokens,
                maximum / 2 if maximum else None,
                args.paced_seconds,
            )
        if not args.skip_scale:
            print("snapshot scale ...", flush=True)
            run.scale = scale.measure(issuer, args.scale_policies)

    figures_dir = args.output.parent
    stem = args.output.stem.lower()
    if run.rounds is not None:
        for name, draw in (("throughput", plots.throughput), ("latency_cdf", plots.latency_cdf)):
            path = draw(figures_dir / f"{stem}-{name}.png", run.rounds.runs, run.rounds.order)
            if path is not None:
                run.figures[name] = path.name
    if run.memory is not None:
        path = plots.rss(figures_dir / f"{stem}-rss.png", run.memory.points)
        if path is not None:
            run.figures["rss"] = path.name
    if (run.rounds is not None or run.memory is not None) and not run.figures:
        run.notes.append("No plots: matplotlib is not installed (`pip install -e '.[bench]'`, as `make bench` does).")
    run.machine = [
        *machine_at_start,
        ("Envoy", _version_of([str(Path(sys.executable).with_name("envoy")), "--version"]).split("version: ")[-1]),
        ("Authorino", _version_of([authorino.built("authorino") or "authorino", "version"])),
        ("ghz", _version_of([ghz or "ghz", "--version"])),
        ("vegeta", _version_of([authorino.built("vegeta") or "vegeta", "-version"]).split("\n", 1)[0]),
        ("grpcio", report._version("grpcio")),
    ]
    run.load_end = report.loadavg()
    run.elapsed = time.monotonic() - clock
    args.output.write_text(report.render(run))
    print(f"wrote {args.output} in {run.elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
