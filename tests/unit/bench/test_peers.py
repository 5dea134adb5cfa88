"""What the bench hands to its peers: Authorino's AuthConfig and ghz's protoset and request."""

from __future__ import annotations

import json

from bench import authorino, protoset
from bench.issuer import RESOURCE
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import descriptor_pool, json_format


def test_authorino_checks_issuer_audience_and_scope_and_sends_authgates_headers() -> None:
    config = authorino.auth_config("bench.example.com", "http://127.0.0.1:1234")
    spec = config["spec"]
    assert spec["hosts"] == ["bench.example.com"]
    assert spec["authentication"]["bench-issuer"]["jwt"]["issuerUrl"] == "http://127.0.0.1:1234"
    patterns = spec["authorization"]["issuer-audience-scope"]["patternMatching"]["patterns"]
    by_selector = {p["selector"]: (p["operator"], p["value"]) for p in patterns}
    assert by_selector["auth.identity.iss"] == ("eq", "http://127.0.0.1:1234")
    assert by_selector["auth.identity.aud"] == ("eq", RESOURCE)
    assert by_selector["auth.identity.scope"][0] == "matches"
    headers = spec["response"]["success"]["headers"]
    assert set(headers) == {"x-auth-subject", "x-auth-roles", "x-auth-scopes", "x-auth-issuer", "x-auth-client-id"}


def test_protoset_holds_the_check_service_and_everything_it_imports() -> None:
    files = protoset.file_descriptor_set().file
    names = [f.name for f in files]
    assert names[-1] == "envoy/service/auth/v3/external_auth.proto"
    pool = descriptor_pool.DescriptorPool()
    for file in files:  # dependencies first, or Add() fails
        pool.Add(file)
    assert pool.FindServiceByName("envoy.service.auth.v3.Authorization").methods_by_name["Check"]


def test_check_request_json_is_a_valid_check_request() -> None:
    data = protoset.check_request("bench.example.com", "/mcp/tools", "GET", "tok")
    message = json_format.Parse(json.dumps(data), external_auth_pb2.CheckRequest())
    http = message.attributes.request.http
    assert (http.host, http.path, http.method) == ("bench.example.com", "/mcp/tools", "GET")
    assert http.headers["authorization"] == "Bearer tok"
    assert (
        "authorization" not in protoset.check_request("h", "/", "GET", None)["attributes"]["request"]["http"]["headers"]
    )
