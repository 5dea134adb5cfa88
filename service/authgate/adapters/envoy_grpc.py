"""Envoy `ext_authz` over gRPC: `envoy.service.auth.v3.Authorization/Check`.

The original request is `attributes.request.http` (method, host, path with query,
scheme, headers); its headers are read by the one rule of adapters.headers, in either
form Envoy sends them (`headers`, or `header_map` with `encode_raw_headers`).
`context_extensions["policy"] = "<namespace>/<name>"` picks one of the policies that
cover the request's host (pipeline.decide). The Decision is rendered once
(adapters.render) and wrapped in OkHttpResponse or DeniedHttpResponse.

The Check method takes the message as bytes and decodes it here, so a message that
does not decode (bad UTF-8 in a string field, truncated, not protobuf) is a 400 like
any other malformed check, not an exception inside grpcio. Types come from PyPI
`xds-protos`; the server is grpc.aio on the service's event loop.
"""

from __future__ import annotations

import itertools
import logging
import re

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from authgate import metrics
from authgate.adapters.headers import COMMON, BadRequest, collect, mcp_value, method, request_id
from authgate.adapters.render import render
from authgate.decision import Decision, bad_request, internal_error
from authgate.request import CheckRequest
from authgate.runtime import AuthService
from authgate.target import TargetError, normalize_host, normalize_path

log = logging.getLogger("authgate.grpc")
SERVICE_NAME = "envoy.service.auth.v3.Authorization"
_POLICY_REF = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # fullmatch
_WANTED = frozenset(COMMON)
# The whole CheckRequest: headers are capped by adapters.headers (64 KiB); the rest is room
# for a request body (`with_request_body`, which authgate never reads) and attributes.
MAX_CHECK_MESSAGE = 1024 * 1024
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_GRPC_CODE = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED, 400: code_pb2.INVALID_ARGUMENT}


def _headers(http) -> dict[str, str]:
    """Both forms Envoy can send, read as one list: `headers` (a map; Envoy joined repeats
    with ",") and `header_map` (one entry per value; `raw_value` bytes with
    `encode_raw_headers`). A header found in both is a repeat like any other."""
    items = http.headers.items()
    raw_headers = http.header_map.headers
    if raw_headers:
        items = itertools.chain(items, ((h.key, h.raw_value or h.value) for h in raw_headers))
    return collect(items, _WANTED)


def parse(request: external_auth_pb2.CheckRequest) -> CheckRequest:
    http = request.attributes.request.http
    headers = _headers(http)
    scheme = http.scheme.lower() if http.scheme.lower() in ("http", "https") else None
    policy_ref = request.attributes.context_extensions.get("policy")
    if policy_ref is not None and not _POLICY_REF.fullmatch(policy_ref):
        raise BadRequest("context_extensions.policy must be <namespace>/<name>")
    try:
        host = normalize_host(http.host, scheme)
        path = normalize_path(http.path)
    except TargetError as error:
        raise BadRequest(str(error)) from None
    # the x-request-id Envoy logs, else its stream id, else a new one
    rid = request_id(headers.get("x-request-id") or http.id or None)
    return CheckRequest(
        host=host,
        path=path,
        method=method(http.method, "method"),
        authorization=headers.get("authorization"),
        mcp_method=mcp_value(headers.get("mcp-method"), "Mcp-Method"),
        mcp_name=mcp_value(headers.get("mcp-name"), "Mcp-Name"),
        origin=headers.get("origin"),
        access_control_request_method=headers.get("access-control-request-method"),
        request_id=rid,
        policy_ref=policy_ref,
    )


def _header_options(headers: tuple[tuple[str, str], ...]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE)
        for name, value in headers
    ]


def check_response(decision: Decision, request_id: str = "") -> external_auth_pb2.CheckResponse:
    rendered = render(decision)
    if decision.allowed:
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=_header_options(rendered.headers),
                headers_to_remove=list(rendered.remove_headers),
            ),
        )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=_GRPC_CODE.get(rendered.status, code_pb2.UNAVAILABLE),
            message=(decision.description or "") if rendered.status == 400 else "",
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=rendered.status),
            headers=_header_options(
                (*rendered.headers, ("x-request-id", request_id)) if request_id else rendered.headers
            ),
            body=rendered.body.decode(),
        ),
    )


class AuthorizationServicer:
    """`Authorization/Check`, registered with a pass-through deserializer (see `register`)."""

    def __init__(self, service: AuthService) -> None:
        self.service = service

    async def Check(self, message: bytes, context) -> external_auth_pb2.CheckResponse:
        check_request = None
        try:
            request = external_auth_pb2.CheckRequest.FromString(message)
        except Exception:  # DecodeError in practice; whatever the decoder raises, the bytes are at fault
            # A caller's bytes, not our failure: no traceback, no decoder text, one decision line.
            metrics.ERRORS.labels(where="grpc-decode").inc()
            decision = bad_request("CheckRequest does not decode (bad UTF-8 or not protobuf)")
            self.service.record(CheckRequest("", "", "", request_id="-"), decision, "envoy-grpc", 0.0)
            return check_response(decision)
        try:
            check_request = parse(request)
        except BadRequest as error:
            decision = bad_request(str(error))
            self.service.record(CheckRequest("", "", "", request_id="-"), decision, "envoy-grpc", 0.0)
        except Exception:  # never an allow, never a trace to the caller
            metrics.ERRORS.labels(where="grpc-parse").inc()
            log.exception("gRPC check request parsing failed")
            decision = internal_error()
        else:
            decision = await self.service.check(check_request, "envoy-grpc")
        return check_response(decision, check_request.request_id if check_request else "")


def register(servicer: AuthorizationServicer, server: grpc.aio.Server) -> None:
    """What xds-protos' add_AuthorizationServicer_to_server does, but the request stays bytes:
    grpcio would run the decoder before the handler, answer UNKNOWN with the decoder's text
    and log a traceback for every bad message."""
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            servicer.Check,
            request_deserializer=None,
            response_serializer=external_auth_pb2.CheckResponse.SerializeToString,
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

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace=5)
