"""Envoy `ext_authz` over gRPC: `envoy.service.auth.v3.Authorization/Check`.

The original request is `attributes.request.http` (method, host, path with query,
scheme, headers); its headers are read by the one rule of dialects.headers, in either
form Envoy sends them (`headers`, or `header_map` with `encode_raw_headers`).
The client certificate (RFC 8705) is Envoy's own `attributes.source.certificate` (the
TLS peer it verified, with `include_peer_certificate: true`: a field no client can
write), else the configured header's when the service trusts one.
`context_extensions["policy"] = "<namespace>/<name>"` picks one of the policies that
cover the request's host (pipeline.decide). The Decision is rendered once
(dialects.render) and wrapped in OkHttpResponse or DeniedHttpResponse.

Types come from PyPI `xds-protos`; the port itself (grpcio's server) is server/grpc_app.py.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from authgate.check.decision import Decision
from authgate.check.request import CheckRequest
from authgate.errors import BadRequest, TargetError
from authgate.server.dialects.client_cert import certificate_digest, from_pem
from authgate.server.dialects.headers import COMMON, collect, mcp_value, method, request_id
from authgate.server.dialects.render import render
from authgate.urls import normalize_host, normalize_path

SERVICE_NAME = "envoy.service.auth.v3.Authorization"
_POLICY_REF = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # fullmatch
_WANTED = frozenset(COMMON)
# The whole CheckRequest: headers are capped by dialects.headers (64 KiB); the rest is room
# for a request body (`with_request_body`, which authgate never reads) and attributes.
MAX_CHECK_MESSAGE = 1024 * 1024
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_GRPC_CODE = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED, 400: code_pb2.INVALID_ARGUMENT}


def header_items(request: external_auth_pb2.CheckRequest) -> Iterable[tuple[str, bytes | str]]:
    """Both forms Envoy can send, read as one list: `headers` (a map; Envoy joined repeats
    with ",") and `header_map` (one entry per value; `raw_value` bytes with
    `encode_raw_headers`). A header found in both is a repeat like any other."""
    http = request.attributes.request.http
    items = http.headers.items()
    raw_headers = http.header_map.headers
    if raw_headers:
        return itertools.chain(items, ((h.key, h.raw_value or h.value) for h in raw_headers))
    return items


@functools.lru_cache(maxsize=4)
def _wanted(cert_header: str | None) -> frozenset[str]:
    return _WANTED | {cert_header} if cert_header else _WANTED


def _certificate(request: external_auth_pb2.CheckRequest, headers: dict[str, str], cert_header: str | None):
    """Envoy's own TLS peer first (no client can write it); the trusted header only when
    Envoy sent no peer certificate (e.g. TLS terminated by a proxy in front of it)."""
    peer = request.attributes.source.certificate
    if peer:
        return from_pem(peer, "attributes.source.certificate")
    value = headers.get(cert_header) if cert_header else None
    if value is not None and value.strip():
        return certificate_digest(cert_header, value)
    return None


def read_headers(request: external_auth_pb2.CheckRequest, cert_header: str | None = None) -> dict[str, str]:
    """The headers authgate reads (`cert_header`: the lowercase name of the header trusted
    with the client certificate, if any)."""
    return collect(header_items(request), _wanted(cert_header))


def message_id(request: external_auth_pb2.CheckRequest, headers: dict[str, str]) -> str:
    """The x-request-id Envoy logs, else its stream id, else a new one."""
    return request_id(headers.get("x-request-id") or request.attributes.request.http.id or None)


def cache_key(
    request: external_auth_pb2.CheckRequest, headers: dict[str, str], cert_header: str | None
) -> tuple | None:
    """Every input `parse` reads but the request id (server/decision_cache.py), or None for a
    request that must be decided afresh: a DPoP proof, or a client certificate."""
    if "dpop" in headers or request.attributes.source.certificate or (cert_header and cert_header in headers):
        return None
    http = request.attributes.request.http
    policy_ref = request.attributes.context_extensions.get("policy")
    read = tuple(item for item in headers.items() if item[0] != "x-request-id")
    return ("envoy-grpc", http.scheme, http.host, http.path, http.method, policy_ref, read)


def parse(
    request: external_auth_pb2.CheckRequest, cert_header: str | None = None, headers: dict[str, str] | None = None
) -> CheckRequest:
    """The CheckRequest; `headers`: what `read_headers` already read of it."""
    http = request.attributes.request.http
    if headers is None:
        headers = read_headers(request, cert_header)
    scheme = http.scheme.lower() if http.scheme.lower() in ("http", "https") else None
    policy_ref = request.attributes.context_extensions.get("policy")
    if policy_ref is not None and not _POLICY_REF.fullmatch(policy_ref):
        raise BadRequest("context_extensions.policy must be <namespace>/<name>")
    try:
        host = normalize_host(http.host, scheme)
        path = normalize_path(http.path)
    except TargetError as error:
        raise BadRequest(str(error)) from None
    return CheckRequest(
        host=host,
        path=path,
        method=method(http.method, "method"),
        authorization=headers.get("authorization"),
        dpop=headers.get("dpop"),
        mcp_method=mcp_value(headers.get("mcp-method"), "Mcp-Method"),
        mcp_name=mcp_value(headers.get("mcp-name"), "Mcp-Name"),
        origin=headers.get("origin"),
        access_control_request_method=headers.get("access-control-request-method"),
        request_id=message_id(request, headers),
        policy_ref=policy_ref,
        scheme=scheme,
        client_cert_sha256=_certificate(request, headers, cert_header),
    )


def _header_options(headers: tuple[tuple[str, str], ...]) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE)
        for name, value in headers
    ]


def request_id_suffix(request_id: str) -> bytes:
    """A denied answer's x-request-id as serialized CheckResponse bytes to append to a
    cached denial's: protobuf parses concatenated messages as one merged message
    (repeated fields append), so the cached bytes are reused as they are."""
    return external_auth_pb2.CheckResponse(
        denied_response=external_auth_pb2.DeniedHttpResponse(headers=_header_options((("x-request-id", request_id),)))
    ).SerializeToString()


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
