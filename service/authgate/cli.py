"""The `authgate` command line: serve, demo, token, validate, explain."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import logging
import os
import re
import secrets
import sys
import zlib
from pathlib import Path

from authgate import bounded_json
from authgate.check.tokens.jwks import JwksSettings
from authgate.errors import PolicyError, SealingKeyError
from authgate.outbound.egress import EgressPolicy
from authgate.policy import (
    ValidationSettings,
    compile_document,
    compile_files,
    compile_loaded,
    load_files,
)
from authgate.sealing import SealingKeyFile, SealingKeys
from authgate.server import logs
from authgate.server.service import AuthService, ServiceSettings

log = logging.getLogger("authgate")


def _add_service_flags(parser: argparse.ArgumentParser) -> None:
    egress = parser.add_argument_group("egress (every outbound call: discovery, JWKS, IdP)")
    egress.add_argument(
        "--egress-allow",
        action="append",
        default=[],
        metavar="CIDR|HOST",
        help="allow a destination that screening would refuse (e.g. an in-cluster IdP)",
    )
    egress.add_argument(
        "--egress-deny",
        action="append",
        default=[],
        metavar="CIDR|HOST",
        help="refuse a destination even though it is public",
    )
    egress.add_argument("--egress-proxy", metavar="URL", help="explicit proxy; proxy environment variables are ignored")
    egress.add_argument(
        "--insecure-http", action="store_true", help="permit http:// URLs, only to --egress-allow destinations"
    )
    egress.add_argument("--ca-bundle", metavar="PEM", help="extra trusted CA certificates")
    egress.add_argument(
        "--egress-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the longest any outbound call may take, body included",
    )
    keys = parser.add_argument_group("signing keys")
    keys.add_argument("--jwks-refresh-seconds", type=float, default=300.0)
    keys.add_argument(
        "--jwks-stale-seconds",
        type=float,
        default=3600.0,
        help="how long keys stay usable past their refresh while the IdP fails",
    )
    keys.add_argument(
        "--jwks-kid-cooldown-seconds",
        type=float,
        default=30.0,
        help="at most one refetch for unknown key ids per this interval",
    )
    facade = parser.add_argument_group("OAuth facade")
    facade.add_argument(
        "--forwarded-for-hops",
        type=int,
        default=0,
        metavar="N",
        help="proxies in front of the public port that append to X-Forwarded-For; the facade's "
        "rate limits key on the address the Nth of them saw (default 0: the peer address)",
    )


def _settings(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings(
        egress=EgressPolicy(
            allow=tuple(args.egress_allow),
            deny=tuple(args.egress_deny),
            proxy=args.egress_proxy,
            insecure_http=args.insecure_http,
            ca_bundle=args.ca_bundle,
            connect_timeout=min(3.0, args.egress_timeout),
            read_timeout=min(5.0, args.egress_timeout),
            total_timeout=args.egress_timeout,
        ),
        jwks=JwksSettings(
            refresh_interval=args.jwks_refresh_seconds,
            stale_if_error=args.jwks_stale_seconds,
            unknown_kid_cooldown=args.jwks_kid_cooldown_seconds,
            retry_interval=min(15.0, args.jwks_refresh_seconds),
            failure_cooldown=min(5.0, args.jwks_refresh_seconds),
        ),
        forwarded_for_hops=args.forwarded_for_hops,
    )


def _print_issues(error: PolicyError) -> None:
    for issue in error.issues:
        print(f"error: {issue}", file=sys.stderr)


def read_snapshot_file(path: str) -> object:
    """A snapshot document from a file (the mounted Secret: JSON, maybe gzipped), bounded like a push."""
    from authgate.server.admin_app import MAX_SNAPSHOT_BYTES

    with open(path, "rb") as file:
        raw = file.read(MAX_SNAPSHOT_BYTES + 1)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                raw = unzipped.read(MAX_SNAPSHOT_BYTES + 1)
        except (OSError, EOFError, zlib.error):
            raise ValueError(f"{path}: not valid gzip") from None
    return bounded_json.read(raw, MAX_SNAPSHOT_BYTES)


# -- serve ---------------------------------------------------------------------
async def _serve(args: argparse.Namespace, extra_listeners=()) -> None:
    from authgate.server.admin_app import create_admin_app
    from authgate.server.admin_auth import AdminAuth, BearerSecret, KubeAPI, TokenReviewer
    from authgate.server.check_app import CheckApp
    from authgate.server.grpc_app import GrpcServer
    from authgate.server.listeners import Listener, serve
    from authgate.server.metrics_app import create_metrics_app
    from authgate.server.public_app import create_public_app

    service = AuthService(_settings(args))
    if args.sealing_keys:
        # Mounted from a Secret the operator creates: a fresh install may start before it
        # exists, so the file is followed. Policies with a facade need it; nothing else does.
        if os.path.exists(args.sealing_keys):  # noqa: ASYNC240 - startup, once
            SealingKeys.load(args.sealing_keys)  # a file that exists must be usable: fail at start
        else:
            log.warning("sealing keys not found yet; facade policies wait for them", extra={"path": args.sealing_keys})
        service.sealing = SealingKeyFile(args.sealing_keys)
        service.sealing_keys  # noqa: B018 - load now, and log it
    if args.policy:
        service.load(compile_files(args.policy, service.settings.validation))
    elif args.bootstrap_snapshot and os.path.exists(args.bootstrap_snapshot):  # noqa: ASYNC240 - startup, once
        try:
            service.load(compile_document(read_snapshot_file(args.bootstrap_snapshot), service.settings.validation))
        except (PolicyError, ValueError, OSError) as error:
            log.error("bootstrap snapshot unusable; waiting for a push", extra={"error": str(error)[:500]})
    reviewer = None
    if args.admin_audience:
        api = KubeAPI.in_cluster(args.kube_api_server, args.kube_token_file, args.kube_ca_file)
        reviewer = TokenReviewer(api, args.admin_audience, args.admin_subject)
    admin_auth = AdminAuth(BearerSecret(args.admin_token_file) if args.admin_token_file else None, reviewer)
    listeners = [
        Listener("public", create_public_app(service), args.address, args.port),
        Listener("check", CheckApp(service), args.address, args.check_port),
        Listener("admin", create_admin_app(service, admin_auth), args.address, args.admin_port),
        Listener("metrics", create_metrics_app(), args.address, args.metrics_port),
        *extra_listeners,
    ]
    grpc_server = GrpcServer(service, args.address, args.grpc_port)

    async def start() -> None:
        await service.start()
        await grpc_server.start()

    async def stop() -> None:
        await grpc_server.stop()
        await service.stop()

    await serve(listeners, on_start=start, on_stop=stop)


def cmd_serve(args: argparse.Namespace) -> int:
    from authgate.server.listeners import run

    if bool(args.admin_audience) != bool(args.admin_subject):
        print("error: --admin-audience and --admin-subject go together", file=sys.stderr)
        return 2
    if args.admin_subject and not re.fullmatch(r"system:serviceaccount:[a-z0-9.-]+:[a-z0-9.-]+", args.admin_subject):
        print("error: --admin-subject must be system:serviceaccount:NAMESPACE:NAME", file=sys.stderr)
        return 2

    try:
        run(_serve(args))
    except PolicyError as error:
        _print_issues(error)
        return 1
    except (ValueError, OSError, SealingKeyError) as error:  # bad flags or files at startup: one line
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


# -- demo and token ------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from authgate.server import demo
    from authgate.server.listeners import Listener, run

    key, issuer = demo.load_or_create_issuer(f"http://127.0.0.1:{args.issuer_port}")
    policy_file = demo.state_dir() / "demo-policy.yaml"
    policy_file.write_text(demo.demo_policy(issuer))
    token_file = demo.state_dir() / "admin-token"
    if not token_file.exists():
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
    args.policy = [str(policy_file)]
    args.admin_token_file = str(token_file)
    args.insecure_http = True
    args.egress_allow = [*args.egress_allow, "127.0.0.1"]
    args.bootstrap_snapshot = None
    args.admin_audience = args.admin_subject = args.sealing_keys = None
    print(demo.curl_lines(args.check_port, args.port), flush=True)
    issuer_listener = Listener("demo-issuer", demo.issuer_app(key, issuer), "127.0.0.1", args.issuer_port)
    try:
        run(_serve(args, [issuer_listener]))
    except PolicyError as error:
        _print_issues(error)
        return 1
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from authgate.server import demo

    if not (demo.state_dir() / "demo-issuer.json").exists():
        print("error: no demo issuer yet; run `make run` (authgate demo) once first", file=sys.stderr)
        return 1
    key, issuer = demo.load_or_create_issuer()
    claims = json.loads(args.claims) if args.claims else None
    print(demo.sign_token(key, issuer, args.sub, args.scope, args.audience, args.ttl, claims))
    return 0


# -- validate and explain -------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    loaded = load_files(args.paths)
    result = compile_loaded(loaded, 1, ValidationSettings(insecure_http=args.insecure_http))
    if result.issues:
        _print_issues(PolicyError(result.issues))
        return 1
    print(f"ok: {len(result.accepted)} policies, {len(loaded.secrets.data)} secrets")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from authgate.check.explain import explain

    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    elif not sys.stdin.isatty():
        token = sys.stdin.read().strip()
    else:
        token = ""
    try:
        snapshot = compile_files(args.policy, ValidationSettings(insecure_http=args.insecure_http))
    except PolicyError as error:
        _print_issues(error)
        return 1

    async def run() -> tuple[list[str], bool]:
        service = AuthService(_settings(args))  # its validator, with the egress rules of these flags
        try:
            return await explain(snapshot, service.validator, args.url, args.method, token or None, args.header)
        finally:
            await service.stop()

    lines, allowed = asyncio.run(run())
    print("\n".join(lines))
    return 0 if allowed else 2


def cmd_operator(args: argparse.Namespace) -> int:
    from authgate_operator.main import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authgate", description="OAuth 2.1 authorization for HTTP APIs and MCP servers"
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("AUTHGATE_LOG_LEVEL", "info"),
        help="debug, info (one line per decision), warning, error",
    )
    # Also accepted after the command (`authgate serve --log-level warning`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", required=True)

    class _Commands:
        @staticmethod
        def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
            return subparsers.add_parser(name, parents=[common], **kwargs)

    commands = _Commands()

    serve = commands.add_parser("serve", help="run the auth service")
    serve.add_argument("--policy", action="append", metavar="PATH", help="policy file (file mode); repeatable")
    serve.add_argument("--address", default="0.0.0.0", help="address every port binds to")
    serve.add_argument("--port", type=int, default=8080, help="public port (discovery documents)")
    serve.add_argument("--check-port", type=int, default=8082, help="ext-authz port (gateways only)")
    serve.add_argument("--grpc-port", type=int, default=9001, help="Envoy ext_authz gRPC port (gateways only)")
    serve.add_argument("--admin-port", type=int, default=8081)
    serve.add_argument("--metrics-port", type=int, default=9090)
    serve.add_argument("--admin-token-file", metavar="F", help="bearer secret that authenticates the admin API")
    serve.add_argument(
        "--admin-audience",
        metavar="AUD",
        help="accept the operator's ServiceAccount tokens minted for this audience (TokenReview)",
    )
    serve.add_argument(
        "--admin-subject",
        metavar="system:serviceaccount:NS:NAME",
        help="the only ServiceAccount allowed to use the admin API (with --admin-audience)",
    )
    serve.add_argument("--kube-api-server", metavar="URL", help="API server for TokenReview (default: in-cluster)")
    serve.add_argument("--kube-token-file", metavar="F", help="this service's own token (default: in-cluster)")
    serve.add_argument("--kube-ca-file", metavar="PEM", help="the API server's CA (default: in-cluster)")
    serve.add_argument(
        "--sealing-keys",
        metavar="JWKS_FILE",
        help="symmetric keys (JWKS, oct) that seal the facade's state; newest last",
    )
    serve.add_argument("--bootstrap-snapshot", metavar="PATH", help="snapshot to start from (the mounted Secret)")
    _add_service_flags(serve)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="the service plus a local demo issuer, with curl lines to try")
    demo.add_argument("--address", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--check-port", type=int, default=8082)
    demo.add_argument("--grpc-port", type=int, default=9001)
    demo.add_argument("--admin-port", type=int, default=8081)
    demo.add_argument("--metrics-port", type=int, default=9090)
    demo.add_argument("--issuer-port", type=int, default=9400)
    _add_service_flags(demo)
    demo.set_defaults(func=cmd_demo)

    token = commands.add_parser("token", help="sign an access token with the demo issuer's key")
    token.add_argument("--sub", required=True)
    token.add_argument("--scope", default="")
    token.add_argument("--audience", default="https://mcp.example.com/mcp")
    token.add_argument("--ttl", type=int, default=3600)
    token.add_argument("--claims", help="extra claims as a JSON object")
    token.set_defaults(func=cmd_token)

    validate = commands.add_parser("validate", help="validate policy files offline")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--insecure-http", action="store_true")
    validate.set_defaults(func=cmd_validate)

    explain = commands.add_parser("explain", help="show why a request would be allowed or denied")
    explain.add_argument("--policy", action="append", required=True, metavar="PATH")
    explain.add_argument("--url", required=True)
    explain.add_argument("--method", default="GET")
    explain.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header (Mcp-Method, Mcp-Name, Origin...); never a token",
    )
    explain.add_argument("--token-file", metavar="F", help="read the token from F (default: standard input)")
    _add_service_flags(explain)
    explain.set_defaults(func=cmd_explain)
    try:
        from authgate_operator.main import add_arguments
    except ImportError:  # installed without the `operator` extra: say how to get it, whatever the arguments
        operator = commands.add_parser("operator", help="run the Kubernetes operator", add_help=False)
        operator.set_defaults(func=_operator_missing, takes_any_arguments=True)
    else:
        operator = commands.add_parser("operator", help="run the Kubernetes operator")
        add_arguments(operator)
        operator.set_defaults(func=cmd_operator)
    return parser


def _operator_missing(args: argparse.Namespace) -> int:
    print(
        "error: the operator is not installed: pip install 'authgate[operator]' (it needs kopf and kubernetes)",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logs.configure(args.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
