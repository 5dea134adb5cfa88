"""`authgate operator`: Kopf watches OAuthPolicies; the Controller does the rest.

Handlers stay thin: they hand each event to the controller. The controller's first round
waits for a full list of the policies, so a restarted operator never pushes a partial set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import kopf
from kubernetes_asyncio import client, config

from authgate.policy import ValidationSettings
from authgate_operator.controller import Controller, ControllerConfig
from authgate_operator.kube import GROUP, PLURAL, VERSION, Kube, split_ref
from authgate_operator.replicas import Replicas

log = logging.getLogger("authgate.operator")


async def _api_client() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
    else:
        await config.load_kube_config()
    return client.ApiClient()


def _token_reader(path: str):
    def read() -> str:
        return Path(path).read_text().strip()  # re-read: projected tokens rotate

    return read


async def _list_policies(kube: Kube, namespaces: list[str]) -> list[dict]:
    if not namespaces:
        listing = await kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return listing["items"]
    items: list[dict] = []
    for namespace in namespaces:
        listing = await kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items.extend(listing["items"])
    return items


def build_registry(args: argparse.Namespace) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    state: dict = {}

    @kopf.on.login(registry=registry)
    def login(**kwargs) -> kopf.ConnectionInfo | None:
        # The same sources as our own client: KUBECONFIG first, else the pod's ServiceAccount.
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            return kopf.login_with_service_account(**kwargs)
        return kopf.login_with_kubeconfig(**kwargs)

    # Retried after 2 s, not Kopf's default 60 s: right after `helm install` the new CRD's
    # storage answers 429 for a moment, and a minute-long wait outlasts the liveness probe.
    @kopf.on.startup(registry=registry, backoff=2)
    async def startup(settings: kopf.OperatorSettings, **_) -> None:
        settings.posting.level = logging.WARNING  # kopf's own k8s events: problems only
        settings.watching.server_timeout = 300
        # Resources are discovered once at startup; watching CRDs for new ones would need
        # cluster-wide list/watch on customresourcedefinitions, which the operator lacks.
        settings.scanning.disabled = True
        api = await _api_client()
        kube = Kube(api)
        replicas = Replicas(_token_reader(args.admin_token_file))
        controller = Controller(
            kube,
            replicas,
            ControllerConfig(
                service=args.service,
                snapshot_secret=args.snapshot_secret,
                sealing_secret=args.sealing_secret,
                resync_seconds=args.resync_seconds,
                validation=ValidationSettings(insecure_http=args.insecure_http),
            ),
        )
        state.update(api=api, replicas=replicas, controller=controller)
        controller.seed(await _list_policies(kube, args.namespace))
        state["task"] = asyncio.create_task(controller.run())

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_) -> None:
        task = state.get("task")
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if "replicas" in state:
            await state["replicas"].aclose()
            await state["api"].close()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def policy_event(event: kopf.RawEvent, **_) -> None:
        controller = state.get("controller")
        if controller is not None:
            controller.observe(event.get("type"), event["object"])

    return registry


def run(args: argparse.Namespace) -> int:
    for ref in (args.service, args.snapshot_secret, *([args.sealing_secret] if args.sealing_secret else [])):
        split_ref(ref)
    if not Path(args.admin_token_file).exists():
        log.warning("admin token file missing; pushes fail until it appears", extra={"path": args.admin_token_file})
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
        default="authgate-admin",
        metavar="AUD",
        help="audience of the projected token in --admin-token-file (documentation; kubelet mints it)",
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
