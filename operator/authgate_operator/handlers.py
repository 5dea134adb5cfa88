"""Kopf's handlers, thin: Kopf indexes the policies and wakes the controller; the
controller (in `memo`) does the rest. Kopf runs resource handlers only once its initial
listing is indexed, so the controller's first round never sees a partial set."""

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
from authgate_operator.kube import GROUP, PLURAL, VERSION, Kube
from authgate_operator.replicas import Replicas


def _in_cluster() -> bool:
    # The same sources for Kopf and our client: KUBECONFIG first, else the pod's ServiceAccount.
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


async def _api_client() -> client.ApiClient:
    if _in_cluster():
        config.load_incluster_config()
    else:
        await config.load_kube_config()
    return client.ApiClient()


def _token_reader(path: str):
    def read() -> str:
        return Path(path).read_text().strip()  # re-read: projected tokens rotate

    return read


def _indexed(body: kopf.Body) -> dict:
    """A plain copy of what the controller reads (managedFields can be most of an object)."""
    metadata = {k: v for k, v in body.metadata.items() if k != "managedFields"}
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": metadata, **_rest(body)}


def _rest(body: kopf.Body) -> dict:
    return {key: body[key] for key in ("spec", "status") if key in body}


def build_registry(args: argparse.Namespace) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) if _in_cluster() else kopf.login_with_kubeconfig(**kwargs)

    @kopf.index(GROUP, VERSION, PLURAL, id="policies", registry=registry)
    async def policies(body: kopf.Body, namespace: str, name: str, **_) -> dict:
        return {f"{namespace}/{name}": _indexed(body)}

    # Retried after 2 s, not Kopf's default 60 s: right after `helm install` the new CRD's
    # storage answers 429 for a moment, and a minute-long wait outlasts the liveness probe.
    @kopf.on.startup(registry=registry, backoff=2)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, policies: kopf.Index, **_) -> None:
        settings.posting.level = logging.WARNING  # kopf's own k8s events: problems only
        settings.watching.server_timeout = 300
        # Resources are discovered once at startup; watching CRDs for new ones would need
        # cluster-wide list/watch on customresourcedefinitions, which the operator lacks.
        settings.scanning.disabled = True
        memo.api = await _api_client()
        memo.replicas = Replicas(_token_reader(args.admin_token_file))
        memo.controller = Controller(Kube(memo.api), memo.replicas, _config(args), policies)
        memo.task = asyncio.create_task(memo.controller.run())

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_) -> None:
        if "task" in memo:
            memo.task.cancel()
            try:
                await memo.task
            except asyncio.CancelledError:
                pass
            await memo.replicas.aclose()
            await memo.api.close()

    # async: Kopf runs sync handlers in a thread, and the controller's wake-up is an asyncio.Event.
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def policy_event(memo: kopf.Memo, **_) -> None:
        memo.controller.policies_changed()

    return registry


def _config(args: argparse.Namespace) -> ControllerConfig:
    return ControllerConfig(
        service=args.service,
        snapshot_secret=args.snapshot_secret,
        sealing_secret=args.sealing_secret,
        namespaces=tuple(args.namespace),
        resync_seconds=args.resync_seconds,
        validation=ValidationSettings(insecure_http=args.insecure_http),
    )
