"""The `authgate` command line: serve, demo, token, validate, explain."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from authgate.check.tokens.jwks import JwksSettings
from authgate.errors import BadRequest, PolicyError, SealingKeyError
from authgate.outbound.egress import EgressPolicy
from authgate.policy import (
    ValidationSettings,
    compile_files,
    compile_loaded,
    load_files,
)
from authgate.server import logs
from authgate.server.config import AdminAccess, Ports, ServiceConfig
from authgate.server.dialects.client_cert import from_pem
from authgate.server.dialects.headers import COMMON
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
    caches = parser.add_argument_group("caches (docs/operations.md: memory per entry)")
    caches.add_argument(
        "--token-cache-entries",
        type=_at_least(0),
        default=100_000,
        metavar="N",
        help="verified tokens kept (least recently used fall out; 0: none)",
    )
    caches.add_argument(
        "--token-cache-ttl",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="the longest a verified token or a cached decision is reused (never past the token's exp)",
    )
    caches.add_argument(
        "--decision-cache-entries",
        type=_at_least(0),
        default=10_000,
        metavar="N",
        help="rendered check answers kept, keyed by every input of the check (0: none)",
    )
    bound = parser.add_argument_group("sender-constrained tokens (DPoP, RFC 9449; certificate-bound, RFC 8705)")
    bound.add_argument(
        "--client-cert-header",
        type=_client_cert_header,
        metavar="NAME",
        help="the one header trusted to carry the client certificate the proxy verified: "
        "x-forwarded-client-cert (Envoy XFCC) or a header with a URL-escaped PEM (nginx "
        "$ssl_client_escaped_cert, Traefik passTLSClientCert). Only when the proxy overwrites "
        "it on every request (default: none; gRPC also reads Envoy's attributes.source.certificate)",
    )
    bound.add_argument(
        "--dpop-replay-entries",
        type=_at_least(1),
        default=100_000,
        metavar="N",
        help="DPoP proof ids remembered per replica; when full, new proofs are refused",
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


_HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# Headers that mean something else to authgate or to the proxies in front of it.
_RESERVED_HEADERS = frozenset(COMMON) | {
    "host",
    "x-original-url",
    "x-original-method",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-proto",
}


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `minimum`."""

    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return number

    return parse


def _client_cert_header(value: str) -> str:
    name = value.strip().lower()
    if not _HEADER_NAME.fullmatch(name) or name in _RESERVED_HEADERS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a header name authgate can trust with a certificate")
    return name


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
        token_cache_entries=args.token_cache_entries,
        token_cache_ttl=args.token_cache_ttl,
        decision_cache_entries=args.decision_cache_entries,
        client_cert_header=args.client_cert_header,
        dpop_replay_entries=args.dpop_replay_entries,
    )


def _print_issues(error: PolicyError) -> None:
    for issue in error.issues:
        print(f"error: {issue}", file=sys.stderr)


def service_config(args: argparse.Namespace) -> ServiceConfig:
    """`serve` and `demo` flags as the process's frozen configuration."""
    return ServiceConfig(
        address=args.address,
        ports=Ports(args.port, args.check_port, args.grpc_port, args.admin_port, args.metrics_port),
        settings=_settings(args),
        policy_files=tuple(args.policy or ()),
        bootstrap_snapshot=getattr(args, "bootstrap_snapshot", None),
        drain_seconds=getattr(args, "drain_seconds", 0.0),
        sealing_keys=getattr(args, "sealing_keys", None),
        admin=AdminAccess(
            token_file=getattr(args, "admin_token_file", None),
            audience=getattr(args, "admin_audience", None),
            subject=getattr(args, "admin_subject", None),
            kube_api_server=getattr(args, "kube_api_server", None),
            kube_token_file=getattr(args, "kube_token_file", None),
            kube_ca_file=getattr(args, "kube_ca_file", None),
        ),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from authgate.server.listeners import run

    if bool(args.admin_audience) != bool(args.admin_subject):
        print("error: --admin-audience and --admin-subject go together", file=sys.stderr)
        return 2
    if args.admin_subject and not re.fullmatch(r"system:serviceaccount:[a-z0-9.-]+:[a-z0-9.-]+", args.admin_subject):
        print("error: --admin-subject must be system:serviceaccount:NAMESPACE:NAME", file=sys.stderr)
        return 2

    from authgate.server.main import run_service

    try:
        run(run_service(service_config(args)))
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
    from authgate.server.main import run_service

    key, issuer = demo.load_or_create_issuer(f"http://127.0.0.1:{args.issuer_port}")
    args.policy = None
    config = demo.preset(service_config(args), issuer)
    print(demo.curl_lines(args.check_port, args.port), flush=True)
    issuer_listener = Listener("demo-issuer", demo.issuer_app(key, issuer), "127.0.0.1", args.issuer_port)
    try:
        run(run_service(config, [issuer_listener]))
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

    certificate = None
    if args.client_cert:
        try:
            certificate = from_pem(Path(args.client_cert).read_text(), args.client_cert)
        except (OSError, BadRequest) as error:
            print(f"error: --client-cert: {error}", file=sys.stderr)
            return 2

    async def run() -> tuple[list[str], bool]:
        service = AuthService(_settings(args))  # its validator, with the egress rules of these flags
        try:
            return await explain(
                snapshot,
                service.validator,
                args.url,
                args.method,
                token or None,
                args.header,
                proofs=service.proofs,
                client_cert_sha256=certificate,
            )
        finally:
            await service.stop()

    lines, allowed = asyncio.run(run())
    print("\n".join(lines))
    return 0 if allowed else 2


def cmd_operator(args: argparse.Namespace) -> int:
    from authgate_operator.main import run

    return run(args)


Commands = Callable[..., argparse.ArgumentParser]  # add_parser(name, help=...) with the common flags


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

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], **kwargs)

    for add_command in (
        _serve_parser,
        _demo_parser,
        _token_parser,
        _validate_parser,
        _explain_parser,
        _operator_parser,
    ):
        add_command(add_parser)
    return parser


def _add_ports(parser: argparse.ArgumentParser, address: str) -> None:
    parser.add_argument("--address", default=address, help="address every port binds to")
    parser.add_argument("--port", type=int, default=8080, help="public port (discovery documents)")
    parser.add_argument("--check-port", type=int, default=8082, help="ext-authz port (gateways only)")
    parser.add_argument("--grpc-port", type=int, default=9001, help="Envoy ext_authz gRPC port (gateways only)")
    parser.add_argument("--admin-port", type=int, default=8081)
    parser.add_argument("--metrics-port", type=int, default=9090)


def _serve_parser(add_parser: Commands) -> None:
    serve = add_parser("serve", help="run the auth service")
    serve.add_argument("--policy", action="append", metavar="PATH", help="policy file (file mode); repeatable")
    _add_ports(serve, "0.0.0.0")
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
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="on SIGTERM, keep answering this long with /readyz false before stopping (a second signal stops)",
    )
    _add_service_flags(serve)
    serve.set_defaults(func=cmd_serve)


def _demo_parser(add_parser: Commands) -> None:
    demo = add_parser("demo", help="the service plus a local demo issuer, with curl lines to try")
    _add_ports(demo, "127.0.0.1")
    demo.add_argument("--issuer-port", type=int, default=9400)
    _add_service_flags(demo)
    demo.set_defaults(func=cmd_demo)


def _token_parser(add_parser: Commands) -> None:
    token = add_parser("token", help="sign an access token with the demo issuer's key")
    token.add_argument("--sub", required=True)
    token.add_argument("--scope", default="")
    token.add_argument("--audience", default="https://mcp.example.com/mcp")
    token.add_argument("--ttl", type=int, default=3600)
    token.add_argument("--claims", help="extra claims as a JSON object")
    token.set_defaults(func=cmd_token)


def _validate_parser(add_parser: Commands) -> None:
    validate = add_parser("validate", help="validate policy files offline")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--insecure-http", action="store_true")
    validate.set_defaults(func=cmd_validate)


def _explain_parser(add_parser: Commands) -> None:
    explain = add_parser("explain", help="show why a request would be allowed or denied")
    explain.add_argument("--policy", action="append", required=True, metavar="PATH")
    explain.add_argument("--url", required=True)
    explain.add_argument("--method", default="GET")
    explain.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header (Mcp-Method, Mcp-Name, Origin, DPoP...); never a token",
    )
    explain.add_argument(
        "--client-cert", metavar="PEM", help="the client certificate the proxy verified (certificate-bound tokens)"
    )
    explain.add_argument("--token-file", metavar="F", help="read the token from F (default: standard input)")
    _add_service_flags(explain)
    explain.set_defaults(func=cmd_explain)


def _operator_parser(add_parser: Commands) -> None:
    try:
        from authgate_operator.main import add_arguments
    except ImportError:  # installed without the `operator` extra: say how to get it, whatever the arguments
        operator = add_parser("operator", help="run the Kubernetes operator", add_help=False)
        operator.set_defaults(func=_operator_missing, takes_any_arguments=True)
    else:
        operator = add_parser("operator", help="run the Kubernetes operator")
        add_arguments(operator)
        operator.set_defaults(func=cmd_operator)


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
