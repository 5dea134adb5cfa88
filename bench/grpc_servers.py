"""Trivial fixed-answer `Authorization/Check` servers side by side: which Python gRPC server
(and which grpc.aio options) costs least per call, direct and behind Envoy's ext_authz.

    python -m bench.grpc_servers [--rounds 2] [--duration 3] [--only aio,grpclib]
    python -m bench.grpc_servers serve VARIANT PORT     # one server, for a look by hand

Every variant takes the request as bytes and answers one prebuilt CheckResponse (status OK),
so what differs is the server's own cost per call. Servers (and Envoy) are pinned to CPU 0,
ghz and wrk to CPU 1 (bench/throughput.py's pinning); ghz uses the bench's settings (32
concurrent calls on one HTTP/2 connection, `--cpus 1`, bench/protoset.py's protoset). Each
round runs every variant once (warm-up, then the measured run), alternating, so a slow
stretch of the shared machine hits them alike; the report takes medians over rounds.

Then, for the `--envoy` variants: Envoy (`--concurrency 1`, bench/envoy.py's ext_authz gRPC
config) in front of each, wrk through Envoy, the CPU of Envoy and of the server per request;
and one more run each with `perf stat` counting both processes' syscalls (tracepoints), so
the syscalls Envoy makes per request to each server can be compared; and a frame census: a
plain h2 client makes sequential calls and counts the HTTP/2 frames each server sends back.

grpclib, Hypercorn and pyvoy come from the `bench` extra (`pip install -e '.[bench]'`); a
variant whose library is missing is skipped with a note. The findings are in bench/GRPC.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format
from google.rpc import status_pb2

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "envoy.service.auth.v3.Authorization"
METHOD = f"/{SERVICE}/Check"
ANSWER = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0)).SerializeToString()
MAX_MESSAGE = 1024 * 1024  # authgate's cap is a little more (dialects/envoy_grpc.py); the order is what matters
CAP = [("grpc.max_receive_message_length", MAX_MESSAGE)]

# grpc core channel arguments (include/grpc/impl/channel_arg_names.h), one at a time and together.
AIO_OPTIONS: dict[str, list[tuple[str, object]]] = {
    "aio": [],
    # no BDP pings: by default core answers incoming data with a PING to estimate the bandwidth-delay
    # product (it sizes the flow-control window); the peer must answer each with a PING ACK
    "aio-no-bdp": [("grpc.http2.bdp_probe", 0)],
    "aio-throughput": [("grpc.optimization_target", "throughput")],
    "aio-no-channelz": [("grpc.enable_channelz", 0)],
    "aio-minimal-stack": [("grpc.minimal_stack", 1)],
    "aio-tuned": [
        ("grpc.http2.bdp_probe", 0),
        ("grpc.enable_channelz", 0),
        ("grpc.optimization_target", "throughput"),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", 1000),
    ],
}
SYNC_POOLS = {"sync-2": 2, "sync-8": 8, "sync-32": 32, "sync-8-loop": 8}
LABELS = {
    "aio": "grpc.aio, uvloop, options as authgate today (message-size cap only)",
    "aio-no-bdp": "grpc.aio + `grpc.http2.bdp_probe` 0",
    "aio-throughput": "grpc.aio + `grpc.optimization_target` throughput",
    "aio-no-channelz": "grpc.aio + `grpc.enable_channelz` 0",
    "aio-minimal-stack": "grpc.aio + `grpc.minimal_stack` 1",
    "aio-tuned": "grpc.aio + bdp_probe 0, channelz 0, throughput, so_reuseport 0, max_concurrent_streams 1000",
    "sync-2": "grpcio sync server, ThreadPoolExecutor(2)",
    "sync-8": "grpcio sync server, ThreadPoolExecutor(8)",
    "sync-32": "grpcio sync server, ThreadPoolExecutor(32)",
    "sync-8-loop": "sync-8, each call answered by a coroutine on an asyncio (uvloop) loop thread (as authgate needs)",
    "grpclib": "grpclib 0.4 (pure Python, h2), uvloop",
    "hypercorn": "Hypercorn 0.18 (h2c, uvloop worker), a raw ASGI gRPC app (trailers extension)",
    "pyvoy": "pyvoy 1.3 (Envoy + embedded Python, uvloop), the same raw ASGI gRPC app",
}
VARIANTS = list(LABELS)
ENVOY_DEFAULT = ("aio", "aio-tuned", "sync-8", "sync-8-loop", "grpclib", "pyvoy")


# --- the servers ---------------------------------------------------------------------------


def _install_uvloop() -> None:
    import uvloop  # as authgate's process runs

    uvloop.install()


async def _serve_aio(port: int, options: list[tuple[str, object]]) -> None:
    import grpc

    server = grpc.aio.server(options=[*CAP, *options])

    async def check(request: bytes, context) -> bytes:
        return ANSWER

    handlers = {"Check": grpc.unary_unary_rpc_method_handler(check)}  # no (de)serializers: bytes in, bytes out
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _serve_sync(port: int, workers: int, on_loop: bool) -> None:
    import grpc

    def check(request: bytes, context) -> bytes:
        return ANSWER

    if on_loop:  # authgate's checks are coroutines on one event loop: each call crosses to it and back
        import threading

        _install_uvloop()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()

        async def decide(request: bytes) -> bytes:
            return ANSWER

        def check(request: bytes, context) -> bytes:
            return asyncio.run_coroutine_threadsafe(decide(request), loop).result()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=CAP)
    handlers = {"Check": grpc.unary_unary_rpc_method_handler(check)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


async def _serve_grpclib(port: int) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.encoding.base import CodecBase
    from grpclib.server import Server

    class Bytes(CodecBase):
        """Messages stay bytes (as authgate's servicer takes them)."""

        __content_subtype__ = "proto"

        def encode(self, message, message_type) -> bytes:
            return message

        def decode(self, data: bytes, message_type) -> bytes:
            return data

    class Authorization:
        async def check(self, stream) -> None:
            await stream.recv_message()
            await stream.send_message(ANSWER)

        def __mapping__(self) -> dict:
            return {METHOD: Handler(self.check, Cardinality.UNARY_UNARY, bytes, bytes)}

    server = Server([Authorization()], codec=Bytes())
    await server.start("127.0.0.1", port)
    await server.wait_closed()


async def asgi_app(scope, receive, send) -> None:
    """A unary gRPC call as plain ASGI: read the length-prefixed request, answer the prefixed
    CheckResponse and `grpc-status: 0` as trailers (the ASGI `http.response.trailers` extension)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/grpc")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"\0" + len(ANSWER).to_bytes(4, "big") + ANSWER})
    await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]})


async def _serve_hypercorn(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.h2_max_concurrent_streams = 1000
    await serve(asgi_app, config)


def serve(variant: str, port: int) -> None:
    if variant in AIO_OPTIONS:
        _install_uvloop()
        asyncio.run(_serve_aio(port, AIO_OPTIONS[variant]))
    elif variant in SYNC_POOLS:
        _serve_sync(port, SYNC_POOLS[variant], on_loop=variant.endswith("-loop"))
    elif variant == "grpclib":
        _install_uvloop()
        asyncio.run(_serve_grpclib(port))
    elif variant == "hypercorn":
        _install_uvloop()
        asyncio.run(_serve_hypercorn(port))
    else:
        raise SystemExit(f"unknown variant {variant!r} (pyvoy runs as its own command)")


def server_command(variant: str, port: int) -> list[str]:
    if variant == "pyvoy":
        pyvoy = str(Path(sys.executable).with_name("pyvoy"))
        return [pyvoy, "bench.grpc_servers:asgi_app", "--port", str(port), "--worker-threads", "1", "--loop", "uvloop"]
    return [sys.executable, "-m", "bench.grpc_servers", "serve", variant, str(port)]


def available(variant: str) -> str | None:
    """None, or why the variant cannot run here."""
    module = {"grpclib": "grpclib", "hypercorn": "hypercorn", "pyvoy": "pyvoy"}.get(variant)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


# --- the frame census ----------------------------------------------------------------------


def check_request_bytes() -> bytes:
    from bench import envoy, protoset

    message = protoset.check_request(envoy.HOST, envoy.PATH, "GET", "e" * 560)  # an ES256 JWT's length
    return json_format.ParseDict(message, external_auth_pb2.CheckRequest()).SerializeToString()


def frame_census(port: int, calls: int = 200) -> dict[str, float]:
    """Sequential calls on one h2 connection: per call, the frames the server sent (by type) and
    the reads it took to get them (a proxy for the server's separate writes)."""
    import h2.config
    import h2.connection
    import h2.events

    body = check_request_bytes()
    frame = b"\0" + len(body).to_bytes(4, "big") + body
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    counts: dict[str, float] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.initiate_connection()
        sock.sendall(connection.data_to_send())

        def read_until(done: Callable[[list], bool], counting: bool) -> None:
            events: list = []
            while not done(events):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed the connection")
                new = connection.receive_data(data)
                events += new
                if counting:
                    counts["reads"] = counts.get("reads", 0) + 1
                    for event in new:
                        name = type(event).__name__
                        counts[name] = counts.get(name, 0) + 1
                        if isinstance(event, h2.events.DataReceived):
                            connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                outgoing = connection.data_to_send()
                if outgoing:
                    sock.sendall(outgoing)

        def call(counting: bool) -> None:
            stream = connection.get_next_available_stream_id()
            headers = [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", METHOD),
                (":authority", f"127.0.0.1:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
            connection.send_headers(stream, headers)
            connection.send_data(stream, frame, end_stream=True)
            sock.sendall(connection.data_to_send())
            read_until(lambda events: any(isinstance(e, h2.events.StreamEnded) for e in events), counting)

        for _ in range(5):  # settings exchange and any start-up pings out of the way
            call(False)
        time.sleep(0.2)  # and let a late PING or WINDOW_UPDATE from the warm-up land before counting
        sock.settimeout(0.05)
        with contextlib.suppress(TimeoutError):
            read_until(lambda events: False, False)
        sock.settimeout(5)
        for _ in range(calls):
            call(True)
    return {name: n / calls for name, n in counts.items()}


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    port: int
    process: subprocess.Popen
    log_path: Path
    pid: int = 0  # the serving process (pyvoy: its Envoy child), set once it answers
    envoy_pid: int | None = None
    envoy_url: str = ""
    direct: list = field(default_factory=list)  # loadgen.Measured per round
    via_envoy: list = field(default_factory=list)
    syscalls: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> syscall -> per request
    frames: dict[str, float] = field(default_factory=dict)


SYSCALLS = (
    "sendto",
    "writev",
    "sendmsg",
    "write",
    "recvfrom",
    "readv",
    "recvmsg",
    "read",
    "epoll_wait",
    "epoll_pwait",
    "futex",
)


def perf_syscalls(pid: int, out: Path, seconds: float) -> subprocess.Popen:
    events = ["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{name}" for name in SYSCALLS)]
    args = ["perf", "stat", "-x", ",", "-o", str(out), "-p", str(pid)]
    for event in events:
        args += ["-e", event]
    return subprocess.Popen([*args, "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def parse_perf(path: Path) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            name = parts[2].rsplit(":", 1)[1].removeprefix("sys_enter_")
            counts["all" if name == "sys_enter" else name] = float(parts[0])
    return counts


def median(values: list[float]) -> float:
    import statistics

    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def machine_line() -> str:
    from bench.report import loadavg

    return f"load average {loadavg()}, {os.cpu_count()} CPUs"


def serving_pid(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """The process that does the serving: pyvoy's CLI starts Envoy as its child, so the
    newest descendant there; the process itself for everything else."""
    deadline = time.monotonic() + timeout
    pid = process.pid
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if not children:
            return pid
        pid = int(children[-1])
    return pid


def main(argv: list[str] | None = None) -> None:
    from tests.infra.ports import free_port

    from bench import envoy, loadgen, protoset, table
    from bench.authorino import built
    from bench.issuer import RESOURCE, SCOPE, StaticIssuer, policy_yaml
    from bench.throughput import pinning

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=32, help="ghz concurrent calls (one connection)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections to Envoy")
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--envoy", default=",".join(ENVOY_DEFAULT), help="variants also measured behind Envoy")
    parser.add_argument(
        "--authgate", action="store_true", help="authgate itself too (warning log level, one cached token), both ways"
    )
    parser.add_argument(
        "--external",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another fixed-answer server, e.g. a Go one: COMMAND with {port}; measured both ways",
    )
    parser.add_argument("--json", type=Path, help="write the medians here too")
    args = parser.parse_args(argv)

    ghz = built("ghz")
    if ghz is None:
        raise SystemExit("ghz is not built: hack/tools/build.sh ghz")
    server_prefix, load_prefix, pinning_note = pinning()
    wanted = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
    externals = dict(item.split("=", 1) for item in args.external)
    behind_envoy = [*(v for v in args.envoy.split(",") if v in wanted), *externals]
    notes = [pinning_note]
    print(f"{pinning_note}; {machine_line()}", flush=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authgate-grpc-servers-")))
        issuer = stack.enter_context(StaticIssuer())
        token = issuer.token("ES256", RESOURCE, SCOPE)
        protoset_file = protoset.write_protoset(work / "external_auth.protoset")
        check_data = protoset.write_check_request(work / "check.json", envoy.HOST, envoy.PATH, "GET", token)
        servers: dict[str, Server] = {}
        for variant in [*wanted, *externals]:
            if why := available(variant):
                notes.append(f"{variant} skipped: {why}")
                continue
            port = free_port()
            log_path = work / f"{variant}.log"
            if variant in externals:
                command = [part.replace("{port}", str(port)) for part in externals[variant].split()]
            else:
                command = server_command(variant, port)
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [*server_prefix, *command],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            stack.callback(table._stop, process)
            servers[variant] = Server(variant, port, process, log_path)
        if args.authgate:
            policy_file = work / "policy.yaml"
            policy_file.write_text(policy_yaml(issuer.issuer))
            authgate = table.start_authgate("authgate", policy_file, work, "warning", server_prefix, token)
            stack.callback(authgate.stop)
            servers["authgate"] = Server("authgate", authgate.grpc_port, authgate.process, authgate.log_path)
            behind_envoy.append("authgate")

        def direct_load(server: Server) -> loadgen.Load:
            return loadgen.Load(
                "ghz",
                {"server": server.pid},
                address=f"127.0.0.1:{server.port}",
                call=protoset.CALL,
                protoset=protoset_file,
                data_file=check_data,
            )

        for server in servers.values():
            table._wait_grpc(ghz, direct_load(server), server.process, server.log_path)
            server.pid = serving_pid(server.process)
            server.frames = frame_census(server.port)
        wrk_script = work / "envoy.lua"
        wrk_script.write_text(loadgen.wrk_script({"Host": envoy.HOST, "Authorization": f"Bearer {token}"}))
        for variant in behind_envoy:
            server = servers.get(variant)
            if server is None:
                continue
            process, url = envoy.start_envoy(
                "grpc", work, server_prefix, name=variant, grpc_port=server.port, check_port=0, jwks={}, issuer=""
            )
            stack.callback(table._stop, process)
            table.wait_http(
                url,
                process,
                work / f"envoy-{variant}.log",
                lambda r: r.status_code == 200,
                headers={"Host": envoy.HOST, "Authorization": f"Bearer {token}"},
            )
            server.envoy_pid, server.envoy_url = process.pid, url

        def envoy_load(server: Server) -> loadgen.Load:
            assert server.envoy_pid is not None
            return loadgen.Load(
                "wrk", {"envoy": server.envoy_pid, "server": server.pid}, url=server.envoy_url, script=wrk_script
            )

        def warmed(load: loadgen.Load, connections: int, tool: str | None = None) -> loadgen.Measured:
            loadgen.run(load, args.warmup, connections, load_prefix, tool)
            return loadgen.run(load, args.duration, connections, load_prefix, tool)

        def report(round_no: int, server, path: str, measured: loadgen.Measured, cpu: str) -> None:
            errors = f"  errors {measured.errors}{' ' + str(measured.statuses) if measured.errors else ''}"
            print(
                f"  round {round_no} {server.variant:18s} {path} {measured.rps:8,.0f}/s {cpu}{errors}"
                f"  others' CPU {measured.other_cpu:.2f}",
                flush=True,
            )

        started = time.monotonic()
        for round_no in range(1, args.rounds + 1):
            for server in servers.values():
                measured = warmed(direct_load(server), args.concurrency, ghz)
                server.direct.append(measured)
                report(round_no, server, "direct", measured, f"{measured.cpu_us_per_request('server'):6.0f} µs/call")
            for server in servers.values():
                if server.envoy_pid is None:
                    continue
                measured = warmed(envoy_load(server), args.connections)
                server.via_envoy.append(measured)
                cpu = (
                    f"envoy {measured.cpu_us_per_request('envoy'):5.0f}"
                    f" + server {measured.cpu_us_per_request('server'):5.0f} µs/req"
                )
                report(round_no, server, "envoy ", measured, cpu)
        # syscalls per request, one more run each with perf counting (apart: perf costs a little)
        for server in servers.values():
            if server.envoy_pid is None:
                continue
            outs = {role: work / f"perf-{server.variant}-{role}.txt" for role in ("envoy", "server")}
            perfs = [
                perf_syscalls(pid, outs[role], args.duration)
                for role, pid in (("envoy", server.envoy_pid), ("server", server.pid))
            ]
            measured = loadgen.run(envoy_load(server), args.duration, args.connections, load_prefix)
            for perf in perfs:
                perf.wait(30)
            for role, out in outs.items():
                with contextlib.suppress(OSError):
                    server.syscalls[role] = {k: v / measured.requests for k, v in parse_perf(out).items()}
        elapsed = time.monotonic() - started
        notes.append(f"measured in {elapsed:.0f} s; {machine_line()} at the end")
        print_report(servers, notes)
        if args.json:
            args.json.write_text(json.dumps(summary(servers, notes), indent=2))


def summary(servers: dict[str, Server], notes: list[str]) -> dict:
    rows = {}
    for variant, server in servers.items():
        rows[variant] = {
            "label": LABELS.get(variant, variant),
            "direct_rps": median([m.rps for m in server.direct]),
            "direct_us": median([m.cpu_us_per_request("server") for m in server.direct]),
            "direct_other_cpu": median([m.other_cpu for m in server.direct]),
            "envoy_rps": median([m.rps for m in server.via_envoy]),
            "envoy_us_envoy": median([m.cpu_us_per_request("envoy") for m in server.via_envoy]),
            "envoy_us_server": median([m.cpu_us_per_request("server") for m in server.via_envoy]),
            "envoy_other_cpu": median([m.other_cpu for m in server.via_envoy]),
            "syscalls": server.syscalls,
            "frames": server.frames,
        }
    return {"rows": rows, "notes": notes}


def print_report(servers: dict[str, Server], notes: list[str]) -> None:
    data = summary(servers, notes)["rows"]
    base = data.get("aio")
    print("\nDirect (ghz), medians:")
    print(f"  {'variant':18s} {'calls/s':>8s} {'µs/call':>8s} {'/ aio':>6s}   frames per call (server → client)")
    for variant, row in data.items():
        ratio = row["direct_rps"] / base["direct_rps"] if base else float("nan")
        frames = ", ".join(f"{re.sub('Received$', '', k)} {v:.2f}" for k, v in sorted(row["frames"].items()))
        print(f"  {variant:18s} {row['direct_rps']:8,.0f} {row['direct_us']:8.0f} {ratio:6.2f}   {frames}")
    print("\nEnvoy + ext_authz gRPC → server (wrk), medians; syscalls per request from perf stat:")
    for variant, row in data.items():
        if row["envoy_rps"] != row["envoy_rps"]:
            continue
        total = row["envoy_us_envoy"] + row["envoy_us_server"]
        calls = row["syscalls"].get("envoy", {})
        detail = ", ".join(f"{k} {v:.2f}" for k, v in calls.items() if v >= 0.01)
        print(
            f"  {variant:18s} {row['envoy_rps']:8,.0f} req/s  envoy {row['envoy_us_envoy']:4.0f} + server"
            f" {row['envoy_us_server']:4.0f} = {total:4.0f} µs/req;  envoy syscalls/req: {detail}"
        )
        server_calls = row["syscalls"].get("server", {})
        if server_calls:
            print(f"  {'':18s} server syscalls/req: " + ", ".join(f"{k} {v:.2f}" for k, v in server_calls.items()))
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
