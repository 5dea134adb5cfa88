"""The gRPC port: Envoy's `envoy.service.auth.v3.Authorization/Check` and gRPC health.

The Check method takes the message as bytes and decodes it here, so a message that
does not decode (bad UTF-8 in a string field, truncated, not protobuf) is a 400 like
any other malformed check, not an exception inside grpcio; and it answers bytes, so an
answer from the decision cache (server/decision_cache.py, keyed by every field the
dialect reads) is sent without building or serializing a message.

grpcio's synchronous server, not grpc.aio: with grpc.aio every call crosses from grpc
core's poller thread to the event loop and back, some 30 system calls a call, and Envoy in
front of it paid for the wake-ups too (bench/GRPC.md: Envoy + gRPC cost 0.65 of grpc.aio's
CPU per request with the synchronous server handing every call to a loop). A worker thread
answers a decision-cache hit itself, lock-free but for the cache's and the counters' locks;
anything else is decided on the service's event loop (`run_coroutine_threadsafe`) while the
thread waits. WORKERS threads: enough that checks waiting on a slow issuer's keys do not
hold up the rest (the calls past that wait in grpcio's queue, none is refused).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authgate import metrics
from authgate.check.decision import bad_request, internal_error
from authgate.check.request import CheckRequest
from authgate.errors import BadRequest
from authgate.server.decision_cache import cacheable
from authgate.server.dialects.envoy_grpc import (
    MAX_CHECK_MESSAGE,
    SERVICE_NAME,
    cache_key,
    check_response,
    header_items,
    message_id,
    parse,
    read_headers,
    request_id_suffix,
)
from authgate.server.dialects.headers import first_request_id
from authgate.server.service import AuthService

WORKERS = 64
# How long a worker waits for a decision made on the event loop: past every outbound call's
# own limit (a decision makes at most a few, each bounded), so only a loop that is gone or
# stuck hits it; the check then fails closed and the worker is free again.
DECISION_WAIT_SECONDS = 60.0

log = logging.getLogger("authgate.grpc")


class AuthorizationServicer:
    """`Authorization/Check`, registered with a pass-through deserializer (see `register`).
    Runs in the server's worker threads; `loop` is the service's event loop."""

    def __init__(self, service: AuthService, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.loop = loop
        name = service.settings.client_cert_header
        self._cert_header = name.lower() if name else None

    def Check(self, message: bytes, context) -> bytes:
        """The serialized CheckResponse: a cached answer's bytes are sent as they are."""
        service = self.service
        try:
            request = external_auth_pb2.CheckRequest.FromString(message)
        except Exception:  # DecodeError in practice; whatever the decoder raises, the bytes are at fault
            # A caller's bytes, not our failure: no traceback, no decoder text, one decision line.
            metrics.ERRORS.labels(where="grpc-decode").inc()
            decision = bad_request("CheckRequest does not decode (bad UTF-8 or not protobuf)")
            service.record(CheckRequest("", "", "", request_id="-"), decision, "envoy-grpc", 0.0)
            return check_response(decision).SerializeToString()
        key = None
        try:
            headers = read_headers(request, self._cert_header)
            key = cache_key(request, headers, self._cert_header) if service.answers.enabled else None
            if key is not None:
                started = time.perf_counter()
                hit = service.answers.get(key, service.snapshot.generation, time.time())
                if hit is not None:
                    rid = message_id(request, headers)
                    answer = hit.body if hit.allowed else hit.body + request_id_suffix(rid)
                    service.record_cached(hit, rid, "envoy-grpc", time.perf_counter() - started)
                    return answer
            check_request = parse(request, self._cert_header, headers)
        except BadRequest as error:
            decision = bad_request(str(error))
            rid = first_request_id(header_items(request))
            service.record(CheckRequest("", "", "", request_id=rid), decision, "envoy-grpc", 0.0)
            return check_response(decision, rid).SerializeToString()
        except Exception:  # never an allow, never a trace to the caller
            metrics.ERRORS.labels(where="grpc-parse").inc()
            log.exception("gRPC check request parsing failed")
            return check_response(internal_error()).SerializeToString()
        try:
            decided = asyncio.run_coroutine_threadsafe(self._decide(check_request, key), self.loop)
            return decided.result(DECISION_WAIT_SECONDS)
        except Exception:  # the loop is gone (shutdown) or the decision failed: fail closed
            metrics.ERRORS.labels(where="grpc-decide").inc()
            log.exception("gRPC check failed")
            return check_response(internal_error()).SerializeToString()

    async def _decide(self, check_request: CheckRequest, key: tuple | None) -> bytes:
        service = self.service
        generation = service.snapshot.generation  # the one decided under, even if a push lands meanwhile
        decision, log_fields = await service.check_and_record(check_request, "envoy-grpc")
        if key is not None and cacheable(decision):
            shared = check_response(decision).SerializeToString()  # without the request id
            service.remember(key, check_request, decision, "envoy-grpc", log_fields, generation, (0, (), shared))
            return shared if decision.allowed else shared + request_id_suffix(check_request.request_id)
        return check_response(decision, check_request.request_id).SerializeToString()


def register(servicer: AuthorizationServicer, server: grpc.Server) -> None:
    """What xds-protos' add_AuthorizationServicer_to_server does, but the request stays bytes:
    grpcio would run the decoder before the handler, answer UNKNOWN with the decoder's text
    and log a traceback for every bad message."""
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            servicer.Check,
            request_deserializer=None,
            response_serializer=None,  # Check answers bytes (a cached answer is reused as is)
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class GrpcServer:
    """The gRPC port: ext_authz Check plus gRPC health (`grpc.health.v1`) for Envoy's health checks."""

    def __init__(self, service: AuthService, address: str, port: int) -> None:
        self.service = service
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="authgate-grpc"),
            options=[("grpc.max_receive_message_length", MAX_CHECK_MESSAGE)],
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        bind = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        if self.server.add_insecure_port(bind) == 0:
            raise OSError(f"cannot bind the gRPC port {bind}")

    async def start(self) -> None:
        register(AuthorizationServicer(self.service, asyncio.get_running_loop()), self.server)
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def drain(self) -> None:
        """Tell Envoy's health checks to go elsewhere; calls are still answered."""
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self) -> None:
        self.health.enter_graceful_shutdown()
        # Calls in flight finish (up to 5 s): their decisions need this loop, so wait off it.
        await asyncio.to_thread(lambda: self.server.stop(grace=5).wait())
