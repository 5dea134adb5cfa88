"""RFC 8414 authorization server metadata: the same document at every location MCP clients try."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from authgate.facade.clients import allowed_scopes
from authgate.facade.context import Call


async def handle(call: Call) -> Response:
    facade, policy = call.facade, call.policy
    document: dict = {
        "issuer": facade.issuer,
        "authorization_endpoint": facade.endpoint("authorize"),
        "token_endpoint": facade.endpoint("token"),
    }
    if facade.dynamic_registration:
        document["registration_endpoint"] = facade.endpoint("register")
    document |= {
        "introspection_endpoint": facade.endpoint("introspect"),
        "revocation_endpoint": facade.endpoint("revoke"),
        "scopes_supported": sorted(allowed_scopes(policy)),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": facade.client_metadata_documents,
    }
    return JSONResponse(document, headers=call.cors | {"Cache-Control": "public, max-age=300"})
