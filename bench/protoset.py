"""What ghz needs to call `envoy.service.auth.v3.Authorization/Check`: a protoset (a
serialized FileDescriptorSet of external_auth.proto and every file it imports, taken from
the xds-protos descriptors authgate itself uses, so no .proto file or reflection is needed)
and a CheckRequest as JSON, the shape Envoy sends for the bench request."""

from __future__ import annotations

import json
from pathlib import Path

from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import descriptor_pb2

CALL = "envoy.service.auth.v3.Authorization.Check"


def file_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """external_auth.proto and its imports, dependencies first (the order protoc writes)."""
    ordered: list = []
    seen: set[str] = set()

    def visit(file) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            visit(dependency)
        ordered.append(file)

    visit(external_auth_pb2.DESCRIPTOR)
    result = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        file.CopyToProto(result.file.add())
    return result


def write_protoset(path: Path) -> Path:
    path.write_bytes(file_descriptor_set().SerializeToString())
    return path


def check_request(host: str, path: str, method: str, token: str | None) -> dict:
    """A CheckRequest (proto3 JSON) for one HTTP request, as Envoy's ext_authz sends it."""
    headers = {":authority": host, ":path": path, ":method": method}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return {
        "attributes": {
            "request": {
                "http": {
                    "id": "1",
                    "method": method,
                    "host": host,
                    "path": path,
                    "scheme": "https",
                    "protocol": "HTTP/1.1",
                    "headers": headers,
                }
            }
        }
    }


def write_check_request(path: Path, host: str, url_path: str, method: str, token: str | None) -> Path:
    path.write_text(json.dumps(check_request(host, url_path, method, token)))
    return path
