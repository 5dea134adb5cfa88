"""`python -m bench`: token-validation micro-benchmarks, then wrk throughput; writes bench/REPORT.md.

    python -m bench [--duration 10] [--rounds 3] [--skip-micro] [--skip-throughput]

Bounded: with the defaults about three minutes on two cores. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import micro, report, throughput
from bench.issuer import StaticIssuer, policy_yaml

REPORT = Path(__file__).resolve().with_name("REPORT.md")
ORDER = ["authgate", "starlette-lambda", "authgate-info", "starlette-async"]


def run_throughput(issuer: StaticIssuer, policy_file: Path, work_dir: Path, args) -> report.ThroughputResult:
    server_prefix, wrk_prefix, pinning = throughput.pinning()
    token = issuer.token("ES256", "https://bench.example.com/mcp", "mcp:read mcp:write")
    script = throughput.write_lua(work_dir / "check.lua", token)
    targets: dict[str, throughput.Target] = {}
    try:
        for name, level in (("authgate", "warning"), ("authgate-info", "info")):
            targets[name] = throughput.start_authgate(name, policy_file, work_dir, level, server_prefix, token)
        for target in throughput.start_starlette(work_dir, server_prefix):
            targets[target.name] = target
        runs = []
        info_requests = 1  # the readiness check
        for round_no in range(1, args.rounds + 1):
            for name in ORDER:
                target = targets[name]
                warm = throughput.run_wrk(target, script, wrk_prefix, args.warmup, args.connections)
                result = throughput.run_wrk(target, script, wrk_prefix, args.duration, args.connections)
                if name == "authgate-info":
                    info_requests += warm.requests + result.requests
                if result.non_2xx or result.socket_errors:
                    print(f"warning: {name}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
                runs.append((round_no, name, result))
                print(
                    f"  round {round_no} {name:17s} {result.rps:9,.0f} req/s  p99 {result.p99_ms:6.2f} ms  "
                    f"others' CPU {result.other_cpu:.2f}",
                    flush=True,
                )
        time.sleep(0.5)  # let the info-level server finish writing its last lines
        info_log = targets["authgate-info"].log_path
        decisions = throughput.count_decisions(info_log)
        log_bytes = info_log.stat().st_size
    finally:
        for target in targets.values():
            target.stop()
    return report.ThroughputResult(
        pinning=pinning,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        rounds=args.rounds,
        order=ORDER,
        runs=runs,
        decisions_logged=decisions,
        requests_sent_info=info_requests,
        log_bytes=log_bytes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server, alternating")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if not args.skip_throughput and shutil.which("wrk") is None:
        print("error: wrk is not installed: run `make tools` (Debian package wrk)", file=sys.stderr)
        return 1

    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    load_start = report.loadavg()
    micro_result = throughput_result = None
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authgate-bench-")))
        issuer = stack.enter_context(StaticIssuer())
        policy_file = work_dir / "policy.yaml"
        policy_file.write_text(policy_yaml(issuer.issuer))
        if not args.skip_micro:
            print("token validation micro-benchmarks ...", flush=True)
            micro_result = micro.measure(issuer, policy_file)
            for row in micro_result.rows:
                print(
                    f"  {row.alg:6s} floor {row.floor_us:6.1f}  uncached {row.uncached_us:6.1f}  "
                    f"cached {row.cached_us:5.1f}  jwcrypto {row.jwcrypto_us:6.1f} µs"
                )
        if not args.skip_throughput:
            print("throughput (wrk) ...", flush=True)
            throughput_result = run_throughput(issuer, policy_file, work_dir, args)

    command = "python -m bench" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:]))
    text = report.render(
        started,
        time.monotonic() - clock,
        command.strip(),
        report.machine_info(),
        load_start,
        report.loadavg(),
        throughput_result,
        micro_result,
    )
    args.output.write_text(text)
    print(f"wrote {args.output} in {time.monotonic() - clock:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
