"""`authgate operator`: its flags, the start-up checks, and Kopf's run (`handlers.py`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kopf

from authgate_operator.admin_token import AdminTokenError, check_admin_token
from authgate_operator.handlers import build_registry
from authgate_operator.kube import split_ref

log = logging.getLogger("authgate.operator")


def _check_admin_token(args: argparse.Namespace) -> str | None:
    """Why the operator cannot start with its admin token, or None."""
    path = Path(args.admin_token_file)
    if not path.exists():
        log.warning("admin token file missing; pushes fail until it appears", extra={"path": args.admin_token_file})
        return None
    if args.admin_audience is None:
        return None
    try:
        check_admin_token(path.read_text(), args.admin_audience)
    except (AdminTokenError, OSError) as error:
        return f"{args.admin_token_file}: {error}"
    return None


def run(args: argparse.Namespace) -> int:
    for ref in (args.service, args.snapshot_secret, *([args.sealing_secret] if args.sealing_secret else [])):
        split_ref(ref)
    if problem := _check_admin_token(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    kopf.run(
        registry=build_registry(args),
        standalone=args.standalone,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch OAuthPolicies in this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--service",
        required=True,
        metavar="NS/NAME",
        help="the auth Service whose endpoints receive the snapshot (admin port)",
    )
    parser.add_argument(
        "--snapshot-secret",
        required=True,
        metavar="NS/NAME",
        help="where the last good snapshot is stored for replicas that start while we are down",
    )
    parser.add_argument("--sealing-secret", metavar="NS/NAME", help="create the facade's sealing keys here if missing")
    parser.add_argument(
        "--admin-audience",
        default=None,
        metavar="AUD",
        help="the audience the replicas verify (their --admin-audience): refuse to start when the "
        "JWT in --admin-token-file is not for it",
    )
    parser.add_argument(
        "--admin-token-file",
        required=True,
        metavar="F",
        help="bearer token for the replicas' admin API (a projected ServiceAccount token)",
    )
    parser.add_argument(
        "--resync-seconds", type=float, default=10.0, help="re-read Secrets and endpoints at least this often"
    )
    parser.add_argument("--insecure-http", action="store_true", help="accept http:// URLs in policies")
    parser.add_argument("--standalone", action="store_true", help="no Kopf peering (one operator replica)")
    parser.add_argument(
        "--liveness", default=None, metavar="URL", help="Kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
