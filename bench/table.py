"""The issue #14 table in one run: every configuration measured side by side, alternating.

Servers (authgate, the baselines, Envoy, Authorino: every process under test) are pinned to
CPU 0, wrk and ghz to CPU 1. Each round runs every configuration once (a warm-up, then the
measured run), so a slow stretch of the shared machine hits all of them alike; the report
takes medians over rounds and accounts CPU per server process (Envoy and the authorizer
apart), from /proc, during each measured run.

Configurations (names are the keys of the report):

    raw-asgi            a raw ASGI app returning 200 (bench/baseline.py raw)
    starlette-async     a Starlette `async def` route returning 200
    authgate-log-on     authgate /ext-authz/envoy/..., cached valid token, default log level
    authgate-log-off    the same, --log-level warning
    authgate-no-token   the --log-level warning process, no token (401)
    authgate-distinct   ... N distinct valid tokens cycled (every lookup misses); also
                        -rs256 / -eddsa for the uncached-validation ratios
    authgate-grpc       authgate gRPC Check direct (ghz, one HTTP/2 connection)
    grpc-ceiling        a trivial grpc.aio servicer (bench/grpc_ceiling.py), same ghz settings
    grpc-ceiling-sync   the same on grpcio's synchronous server, as authgate's gRPC port runs
    envoy-jwt-authn     Envoy's jwt_authn filter
    envoy-http-authgate / envoy-grpc-authgate   Envoy + ext_authz → the warning-level authgate
    envoy-http-raw      Envoy + ext_authz HTTP → the raw ASGI app (an authorizer that does
                        nothing: the ceiling of that path for any Python authorizer)
    authorino-http / authorino-grpc / envoy-grpc-authorino   Authorino v0.27.0 (bench/authorino.py)
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.infra.ports import free_port

from bench import authorino, envoy, loadgen, micro, protoset
from bench.issuer import CHECK_URL, RESOURCE, SCOPE, StaticIssuer, policy_yaml
from bench.tokens import distinct_tokens, write_tokens

ROOT = Path(__file__).resolve().parents[1]
AUTHGATE = str(Path(sys.executable).with_name("authgate"))
HOST = CHECK_URL.split("/")[2]
PATH = "/" + CHECK_URL.split("/", 3)[3]
ENVOY_CHECK_PATH = "/ext-authz/envoy" + PATH
TOKEN_CACHE_FLAG = "--token-cache-entries"

LABELS = {
    "raw-asgi": "raw ASGI app returning 200 (uvicorn, httptools, uvloop, 1 worker)",
    "starlette-async": "Starlette `async def` route returning 200",
    "authgate-log-on": "authgate `/ext-authz/envoy/…`, cached valid token, default log level (decision log on)",
    "authgate-log-off": "same, `--log-level warning`",
    "authgate-no-token": "same, no token (401)",
    "authgate-distinct": "same, {n:,} distinct valid ES256 tokens (every lookup misses)",
    "authgate-distinct-rs256": "same, {n:,} distinct valid RS256 tokens",
    "authgate-distinct-eddsa": "same, {n:,} distinct valid EdDSA tokens",
    "authgate-grpc": "authgate gRPC Check, direct (ghz, {c} concurrent calls, one HTTP/2 connection)",
    "grpc-ceiling": "trivial grpc.aio unary servicer, fixed CheckResponse (same ghz settings)",
    "grpc-ceiling-sync": "the same servicer on grpcio's synchronous server (authgate's gRPC server since #14)",
    "envoy-jwt-authn": "Envoy `jwt_authn` (native filter, same token)",
    "envoy-http-authgate": "Envoy + ext_authz HTTP → authgate",
    "envoy-http-raw": "Envoy + ext_authz HTTP → the raw ASGI app (allows everything: the path's Python ceiling)",
    "envoy-grpc-authgate": "Envoy + ext_authz gRPC → authgate",
    "authorino-http": "Authorino v0.27.0 raw HTTP `/check`, same token and rules",
    "authorino-grpc": "Authorino gRPC Check, direct",
    "envoy-grpc-authorino": "Envoy + ext_authz gRPC → Authorino",
}
# Report order; rounds run in this order too.
ORDER = list(LABELS)
TABLE_ROWS = [name for name in ORDER if name not in ("authgate-distinct-rs256", "authgate-distinct-eddsa")]


@dataclass
class Config:
    name: str
    load: loadgen.Load
    expect_errors: bool = False  # the 401 row: every answer is a non-2xx
    metrics_port: int | None = None  # authgate's: its verified-token cache counters, read around each run
    cycles_tokens: bool = False  # its wrk script cycles over a token file: each run goes on where the last stopped
    reference_input: Path | None = None  # distinct-token rows: bench.micro's reference, measured after each run
    tokens_sent: int = 0

    def next_run(self) -> loadgen.Load:
        if self.cycles_tokens:
            self.load.env = {"BENCH_TOKEN_OFFSET": str(self.tokens_sent)}
        return self.load

    def sent(self, measured: loadgen.Measured, connections: int) -> None:
        self.tokens_sent += measured.requests + connections  # + the requests in flight when wrk stopped


_CACHE_COUNTER = re.compile(r'^authgate_verified_token_cache_total\{result="(\w+)"\}\s+([\d.e+]+)$', re.MULTILINE)


def parse_cache_counters(metrics_text: str) -> dict[str, float]:
    """authgate_verified_token_cache_total by result (hit, miss, ...) from a /metrics page."""
    return {result: float(value) for result, value in _CACHE_COUNTER.findall(metrics_text)}


def cache_counters(metrics_port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return {}
    return parse_cache_counters(text)


@dataclass
class Authgate:
    name: str
    process: subprocess.Popen
    check_port: int
    grpc_port: int
    admin_port: int
    metrics_port: int
    log_path: Path

    @property
    def check_url(self) -> str:
        return f"http://127.0.0.1:{self.check_port}{ENVOY_CHECK_PATH}"

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class Setup:
    """Everything one run started: configurations by name, and the processes behind them."""

    configs: dict[str, Config] = field(default_factory=dict)
    authgates: dict[str, Authgate] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    authorino_version: str = ""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def authgate_supports(flag: str) -> bool:
    done = subprocess.run([AUTHGATE, "serve", "--help"], capture_output=True, text=True, check=False)
    return flag in done.stdout


def wait_http(
    url: str, process: subprocess.Popen, log_path: Path, ok: Callable[[httpx.Response], bool], **kwargs
) -> httpx.Response:
    deadline = time.monotonic() + 30
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}\n{log_path.read_text()[-3000:]}")
        try:
            response = httpx.get(url, timeout=2.0, trust_env=False, **kwargs)
            if ok(response):
                return response
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after 30 s ({last})\n{log_path.read_text()[-3000:]}")


def start_authgate(
    name: str,
    policy_file: Path,
    work: Path,
    log_level: str,
    prefix: list[str],
    token: str,
    cache_entries: int | None = None,
    decision_entries: int | None = None,
) -> Authgate:
    port, check_port, grpc_port, admin_port, metrics_port = (free_port() for _ in range(5))
    command = [*prefix, AUTHGATE, "--log-level", log_level, "serve", "--policy", str(policy_file)]
    command += ["--address", "127.0.0.1", "--port", str(port), "--check-port", str(check_port)]
    command += ["--grpc-port", str(grpc_port), "--admin-port", str(admin_port), "--metrics-port", str(metrics_port)]
    command += ["--insecure-http", "--egress-allow", "127.0.0.1"]
    if cache_entries is not None:
        command += [TOKEN_CACHE_FLAG, str(cache_entries)]
    if decision_entries is not None:
        command += ["--decision-cache-entries", str(decision_entries)]
    log_path = work / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    authgate = Authgate(name, process, check_port, grpc_port, admin_port, metrics_port, log_path)
    try:
        wait_http(f"http://127.0.0.1:{admin_port}/readyz", process, log_path, lambda r: r.status_code == 200)
        # keys are fetched in the background after start: wait for a real allow
        response = wait_http(
            authgate.check_url,
            process,
            log_path,
            lambda r: r.status_code == 200,
            headers={"Host": HOST, "Authorization": f"Bearer {token}"},
        )
        if response.headers.get("x-auth-subject") != "bench-user":
            raise RuntimeError(f"{name}: allow without the identity headers: {dict(response.headers)}")
    except BaseException:
        authgate.stop()
        raise
    return authgate


def _spawn(stack: contextlib.ExitStack, command: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    stack.callback(_stop, process)
    return process


def _probe(url: str, headers: dict[str, str], want: int, what: str) -> None:
    status = httpx.get(url, headers=headers, timeout=5, trust_env=False).status_code
    if status != want:
        raise RuntimeError(f"{what}: answered {status}, expected {want}")


def start(
    stack: contextlib.ExitStack,
    work: Path,
    issuer: StaticIssuer,
    token: str,
    server_prefix: list[str],
    *,
    distinct: int,
    ghz: str | None,
    with_authorino: bool,
    with_other_algs: bool,
) -> Setup:
    """Start every server once, check each answers as expected, and return the configurations."""
    setup = Setup()
    work.mkdir(parents=True, exist_ok=True)
    policy_file = work / "policy.yaml"
    policy_file.write_text(policy_yaml(issuer.issuer))
    bearer = {"Host": HOST, "Authorization": f"Bearer {token}"}
    scripts = work / "scripts"
    scripts.mkdir()

    def script(name: str, headers: dict[str, str], tokens_file: Path | None = None) -> Path:
        path = scripts / f"{name}.lua"
        path.write_text(loadgen.wrk_script(headers, tokens_file))
        return path

    with_token = script("token", bearer)
    no_token = script("no-token", {"Host": HOST})

    # Baselines: a raw ASGI app, a Starlette route (one process each).
    raw_port, starlette_port, ceiling_port, sync_ceiling_port = free_port(), free_port(), free_port(), free_port()
    raw = _spawn(
        stack, [*server_prefix, sys.executable, "-m", "bench.baseline", str(raw_port), "raw"], work / "raw.log"
    )
    starlette = _spawn(
        stack, [*server_prefix, sys.executable, "-m", "bench.baseline", str(starlette_port)], work / "starlette.log"
    )
    for process, url, log in (
        (raw, f"http://127.0.0.1:{raw_port}/", "raw.log"),
        (starlette, f"http://127.0.0.1:{starlette_port}/async", "starlette.log"),
    ):
        wait_http(url, process, work / log, lambda r: r.status_code == 200)
    setup.configs["raw-asgi"] = Config(
        "raw-asgi",
        loadgen.Load("wrk", {"server": raw.pid}, url=f"http://127.0.0.1:{raw_port}{PATH}", script=with_token),
    )
    setup.configs["starlette-async"] = Config(
        "starlette-async",
        loadgen.Load(
            "wrk", {"server": starlette.pid}, url=f"http://127.0.0.1:{starlette_port}/async", script=with_token
        ),
    )

    # authgate: default log level (info: the decision log on) and warning.
    on = start_authgate("authgate-log-on", policy_file, work, "info", server_prefix, token)
    stack.callback(on.stop)
    # The distinct-token rows cycle over `distinct` tokens on this process: its verified-token
    # cache holds half of them (the decision cache, 10,000 LRU entries, also cycles out), so
    # every lookup of those rows misses whatever the default size; the one-token rows hit.
    off = start_authgate(
        "authgate-log-off", policy_file, work, "warning", server_prefix, token, cache_entries=max(1, distinct // 2)
    )
    stack.callback(off.stop)
    setup.authgates = {"log-on": on, "log-off": off}
    setup.configs["authgate-log-on"] = Config(
        "authgate-log-on",
        loadgen.Load("wrk", {"authgate": on.process.pid}, url=on.check_url, script=with_token),
        metrics_port=on.metrics_port,
    )
    setup.configs["authgate-log-off"] = Config(
        "authgate-log-off",
        loadgen.Load("wrk", {"authgate": off.process.pid}, url=off.check_url, script=with_token),
        metrics_port=off.metrics_port,
    )
    _probe(off.check_url, {"Host": HOST}, 401, "authgate without a token")
    setup.configs["authgate-no-token"] = Config(
        "authgate-no-token",
        loadgen.Load("wrk", {"authgate": off.process.pid}, url=off.check_url, script=no_token),
        expect_errors=True,
    )
    for alg, name in (
        ("ES256", "authgate-distinct"),
        ("RS256", "authgate-distinct-rs256"),
        ("EdDSA", "authgate-distinct-eddsa"),
    ):
        if alg != "ES256" and not with_other_algs:
            continue
        tokens = write_tokens(work / f"tokens-{alg}.txt", distinct_tokens(issuer, alg, RESOURCE, SCOPE, distinct))
        distinct_script = script(name, {"Host": HOST}, tokens)
        sample = tokens.read_text().split("\n", 1)[0]
        reference_input = micro.write_reference_input(work / f"reference-{alg}.json", issuer, alg, sample, RESOURCE)
        setup.configs[name] = Config(
            name,
            loadgen.Load("wrk", {"authgate": off.process.pid}, url=off.check_url, script=distinct_script),
            metrics_port=off.metrics_port,
            cycles_tokens=True,
            reference_input=reference_input,
        )

    # gRPC direct: authgate's gRPC port and the trivial grpc.aio servicer, same ghz settings.
    protoset_file = protoset.write_protoset(work / "external_auth.protoset")
    check_data = protoset.write_check_request(work / "check.json", HOST, PATH, "GET", token)
    ceiling = _spawn(
        stack, [*server_prefix, sys.executable, "-m", "bench.grpc_ceiling", str(ceiling_port)], work / "ceiling.log"
    )

    def grpc_load(pids: dict[str, int], port: int) -> loadgen.Load:
        return loadgen.Load(
            "ghz", pids, address=f"127.0.0.1:{port}", call=protoset.CALL, protoset=protoset_file, data_file=check_data
        )

    setup.configs["authgate-grpc"] = Config(
        "authgate-grpc", grpc_load({"authgate": off.process.pid}, off.grpc_port), metrics_port=off.metrics_port
    )
    setup.configs["grpc-ceiling"] = Config("grpc-ceiling", grpc_load({"server": ceiling.pid}, ceiling_port))
    sync_ceiling = _spawn(
        stack,
        [*server_prefix, sys.executable, "-m", "bench.grpc_ceiling", str(sync_ceiling_port), "sync"],
        work / "ceiling-sync.log",
    )
    setup.configs["grpc-ceiling-sync"] = Config(
        "grpc-ceiling-sync", grpc_load({"server": sync_ceiling.pid}, sync_ceiling_port)
    )
    if ghz is not None:
        _wait_grpc(ghz, setup.configs["grpc-ceiling"].load, ceiling, work / "ceiling.log")
        _wait_grpc(ghz, setup.configs["grpc-ceiling-sync"].load, sync_ceiling, work / "ceiling-sync.log")
        _wait_grpc(ghz, setup.configs["authgate-grpc"].load, off.process, off.log_path)

    # Envoy: jwt_authn, ext_authz HTTP and gRPC to the warning-level authgate.
    def start_envoy(
        kind: str, name: str, grpc_port: int, check_port: int = off.check_port
    ) -> tuple[subprocess.Popen, str]:
        process, url = envoy.start_envoy(
            kind,
            work,
            server_prefix,
            name=name,
            grpc_port=grpc_port,
            check_port=check_port,
            jwks=issuer.jwks(),
            issuer=issuer.issuer,
        )
        stack.callback(_stop, process)
        wait_http(url, process, work / f"envoy-{name}.log", lambda r: r.status_code == 200, headers=bearer)
        if check_port == off.check_port:
            _probe(url, {"Host": HOST}, 401, f"envoy {name} without a token")
        return process, url

    jwt_envoy, jwt_url = start_envoy("jwt_authn", "jwt-authn", off.grpc_port)
    setup.configs["envoy-jwt-authn"] = Config(
        "envoy-jwt-authn", loadgen.Load("wrk", {"envoy": jwt_envoy.pid}, url=jwt_url, script=with_token)
    )
    for kind in ("http", "grpc"):
        process, url = start_envoy(kind, f"{kind}-authgate", off.grpc_port)
        setup.configs[f"envoy-{kind}-authgate"] = Config(
            f"envoy-{kind}-authgate",
            loadgen.Load("wrk", {"envoy": process.pid, "authgate": off.process.pid}, url=url, script=with_token),
            metrics_port=off.metrics_port,
        )
    process, url = start_envoy("http", "http-raw", off.grpc_port, check_port=raw_port)
    setup.configs["envoy-http-raw"] = Config(
        "envoy-http-raw",
        loadgen.Load("wrk", {"envoy": process.pid, "server": raw.pid}, url=url, script=with_token),
    )

    if with_authorino:
        peer = authorino.start(work / "authorino", HOST, issuer.issuer, token, server_prefix)
        stack.callback(peer.stop)
        setup.authorino_version = authorino.tool_version("authorino")
        pid = peer.process.pid
        setup.configs["authorino-http"] = Config(
            "authorino-http", loadgen.Load("wrk", {"authorino": pid}, url=peer.check_url, script=with_token)
        )
        setup.configs["authorino-grpc"] = Config("authorino-grpc", grpc_load({"authorino": pid}, peer.grpc_port))
        if ghz is not None:
            _wait_grpc(ghz, setup.configs["authorino-grpc"].load, peer.process, peer.log_path)
        process, url = start_envoy("grpc", "grpc-authorino", peer.grpc_port)
        setup.configs["envoy-grpc-authorino"] = Config(
            "envoy-grpc-authorino",
            loadgen.Load("wrk", {"envoy": process.pid, "authorino": pid}, url=url, script=with_token),
        )
    else:
        setup.notes.append("Authorino skipped (--skip-authorino or not built): its three rows are empty.")
    if ghz is None:
        setup.notes.append("ghz is not built: the gRPC-direct rows are empty (run `hack/tools/build.sh ghz`).")
        for name in ("authgate-grpc", "grpc-ceiling", "grpc-ceiling-sync", "authorino-grpc"):
            setup.configs.pop(name, None)
    return setup


def _wait_grpc(ghz: str, load: loadgen.Load, process: subprocess.Popen, log_path: Path) -> None:
    """One short ghz run must get OK answers (the server is up and allows the token)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            measured = loadgen.run(loadgen.Load(**{**load.__dict__, "pids": {}}), 1, 1, [], ghz)
            if measured.statuses.get("OK", 0) > 0 and measured.errors == 0:
                return
            last = str(measured.statuses)
        except RuntimeError as error:
            last = str(error)
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gRPC {load.address}: no OK answers ({last})\n{log_path.read_text()[-2000:]}")
        time.sleep(0.5)


@dataclass
class Rounds:
    runs: dict[str, list[loadgen.Measured]]
    order: list[str]


def run_rounds(
    setup: Setup,
    rounds: int,
    duration: float,
    warmup: float,
    connections: int,
    grpc_concurrency: int,
    load_prefix: list[str],
    ghz: str | None,
    only: list[str] | None = None,
    server_prefix: list[str] | None = None,
) -> Rounds:
    order = [name for name in ORDER if name in setup.configs and (not only or name in only)]
    runs: dict[str, list[loadgen.Measured]] = {name: [] for name in order}
    for round_no in range(1, rounds + 1):
        for name in order:
            config = setup.configs[name]
            width = grpc_concurrency if config.load.kind == "ghz" else connections
            if warmup > 0:
                config.sent(loadgen.run(config.next_run(), warmup, width, load_prefix, ghz), width)
            before = cache_counters(config.metrics_port) if config.metrics_port else {}
            measured = loadgen.run(config.next_run(), duration, width, load_prefix, ghz)
            config.sent(measured, width)
            if config.reference_input is not None:
                done = subprocess.run(
                    [
                        *(server_prefix or []),
                        sys.executable,
                        "-m",
                        "bench.micro",
                        "reference",
                        str(config.reference_input),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=ROOT,
                    timeout=120,
                )
                measured.reference = json.loads(done.stdout)
            if config.metrics_port:
                after = cache_counters(config.metrics_port)
                measured.cache = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            bad = measured.requests - measured.errors if config.expect_errors else measured.errors
            if bad:
                print(f"warning: {name}: {bad} unexpected answers ({measured.statuses or 'non-2xx'})", flush=True)
            runs[name].append(measured)
            split = ", ".join(f"{role} {measured.cpu_us_per_request(role):.0f}" for role in measured.cpu)
            print(
                f"  round {round_no} {name:24s} {measured.rps:9,.0f} req/s  {measured.cpu_us_per_request():7.1f} µs/req"
                f" ({split})  p99 {measured.p99_ms:6.2f} ms  others' CPU {measured.other_cpu:.2f}",
                flush=True,
            )
    return Rounds(runs, order)
