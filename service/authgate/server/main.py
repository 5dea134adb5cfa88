"""The composition root: one ServiceConfig in, the running process out.

Builds the AuthService, loads what the config names (policy files, or the bootstrap
snapshot), and runs the five ports in one event loop: public, check and admin
(Starlette / raw ASGI on Uvicorn), metrics, and gRPC.
"""

from __future__ import annotations

import gc
import gzip
import io
import logging
import os
import zlib
from collections.abc import Sequence

from authgate import bounded_json, metrics
from authgate.collector import collector_paused
from authgate.errors import PolicyError
from authgate.policy import compile_document, compile_files
from authgate.sealing import SealingKeyFile, SealingKeys
from authgate.server.admin_app import MAX_SNAPSHOT_BYTES, create_admin_app
from authgate.server.admin_auth import AdminAuth, BearerSecret, KubeAPI, TokenReviewer
from authgate.server.check_app import CheckApp
from authgate.server.config import AdminAccess, ServiceConfig
from authgate.server.grpc_app import GrpcServer
from authgate.server.listeners import Listener, serve
from authgate.server.metrics_app import create_metrics_app
from authgate.server.one_write import OneWriteProtocol
from authgate.server.public_app import create_public_app
from authgate.server.service import AuthService

log = logging.getLogger("authgate")


def read_snapshot_file(path: str) -> object:
    """A snapshot document from a file (the mounted Secret: JSON, maybe gzipped), bounded like a push."""
    with open(path, "rb") as file:
        raw = file.read(MAX_SNAPSHOT_BYTES + 1)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                raw = unzipped.read(MAX_SNAPSHOT_BYTES + 1)
        except (OSError, EOFError, zlib.error):
            raise ValueError(f"{path}: not valid gzip") from None
    return bounded_json.read(raw, MAX_SNAPSHOT_BYTES)


def build_service(config: ServiceConfig) -> AuthService:
    """The service with its sealing keys and first snapshot (PolicyError for bad policy files)."""
    service = AuthService(config.settings)
    if config.sealing_keys:
        # Mounted from a Secret the operator creates: a fresh install may start before it
        # exists, so the file is followed. Policies with a facade need it; nothing else does.
        if os.path.exists(config.sealing_keys):
            SealingKeys.load(config.sealing_keys)  # a file that exists must be usable: fail at start
        else:
            log.warning(
                "sealing keys not found yet; facade policies wait for them", extra={"path": config.sealing_keys}
            )
        service.sealing = SealingKeyFile(config.sealing_keys)
        service.sealing_keys  # noqa: B018 - load now, and log it
    if config.policy_files:
        service.load(compile_files(list(config.policy_files), service.settings.validation))
    elif config.bootstrap_snapshot and os.path.exists(config.bootstrap_snapshot):
        try:
            with collector_paused():
                document = read_snapshot_file(config.bootstrap_snapshot)
                service.load(compile_document(document, service.settings.validation))
        except (PolicyError, ValueError, OSError) as error:
            log.error("bootstrap snapshot unusable; waiting for a push", extra={"error": str(error)[:500]})
    return service


def admin_auth(access: AdminAccess) -> AdminAuth:
    reviewer = None
    if access.audience:
        api = KubeAPI.in_cluster(access.kube_api_server, access.kube_token_file, access.kube_ca_file)
        reviewer = TokenReviewer(api, access.audience, access.subject)
    return AdminAuth(BearerSecret(access.token_file) if access.token_file else None, reviewer)


async def run_service(config: ServiceConfig, extra_listeners: Sequence[Listener] = ()) -> None:
    service = build_service(config)
    address, ports = config.address, config.ports
    listeners = [
        Listener("public", create_public_app(service), address, ports.public),
        Listener("check", CheckApp(service), address, ports.check, http=OneWriteProtocol),
        Listener("admin", create_admin_app(service, admin_auth(config.admin)), address, ports.admin),
        Listener("metrics", create_metrics_app(), address, ports.metrics),
        *extra_listeners,
    ]
    grpc_server = GrpcServer(service, address, ports.grpc)

    async def start() -> None:
        await service.start()
        await grpc_server.start()
        # What start-up built (modules, the snapshot, the apps) lives as long as the process:
        # out of the collector's generations, a full collection walks only what checks make.
        gc.collect()
        gc.freeze()
        metrics.GC_PAUSES.install()

    async def stop() -> None:
        await grpc_server.stop()
        await service.stop()

    async def drain() -> None:
        service.draining = True
        await grpc_server.drain()

    await serve(listeners, on_start=start, on_stop=stop, on_drain=drain, drain_seconds=config.drain_seconds)
