"""The gRPC port: Envoy's `envoy.service.auth.v3.Authorization/Check` and gRPC health.

The Check method takes the message as bytes and decodes it here, so a message that
does not decode (bad UTF-8 in a string field, truncated, not protobuf) is a 400 like
any other malformed check, not an exception inside grpcio; and it answers bytes, so an
answer from the decision cache (server/decision_cache.py, keyed by every field the
dialect reads) is sent without building or serializing a message. grpc.aio runs on the
service's event loop.
"""

from __future__ import annotations

import logging
import time

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

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

log = logging.getLogger("authgate.grpc")


class AuthorizationServicer:
    """`Authorization/Check`, registered with a pass-through deserializer (see `register`)."""

    def __init__(self, service: AuthService) -> None:
        self.service = service
        name = service.settings.client_cert_header
        self._cert_header = name.lower() if name else None

    async def Check(self, message: bytes, context) -> bytes:
        """The serialized CheckResponse: a cached answer's bytes are sent as they are."""
        service = self.service
        check_request = None
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
        generation = service.snapshot.generation  # the one decided under, even if a push lands meanwhile
        decision, log_fields = await service.check_and_record(check_request, "envoy-grpc")
        if key is not None and cacheable(decision):
            shared = check_response(decision).SerializeToString()  # without the request id
            service.remember(key, check_request, decision, "envoy-grpc", log_fields, generation, (0, (), shared))
            return shared if decision.allowed else shared + request_id_suffix(check_request.request_id)
        return check_response(decision, check_request.request_id).SerializeToString()


def register(servicer: AuthorizationServicer, server: grpc.aio.Server) -> None:
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
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_CHECK_MESSAGE)])
        register(AuthorizationServicer(service), self.server)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        bind = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        if self.server.add_insecure_port(bind) == 0:
            raise OSError(f"cannot bind the gRPC port {bind}")

    async def start(self) -> None:
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def drain(self) -> None:
        """Tell Envoy's health checks to go elsewhere; calls are still answered."""
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace=5)
