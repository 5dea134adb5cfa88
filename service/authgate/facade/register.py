"""POST /oauth2/register: RFC 7591 dynamic client registration (the rules: `registration.py`)."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse, Response

from authgate import bounded_json
from authgate.errors import OAuthError
from authgate.facade.answers import NO_STORE
from authgate.facade.clients import allowed_scopes
from authgate.facade.context import Call
from authgate.facade.params import MAX_JSON_BYTES, media_type, read_body
from authgate.facade.registration import register

log = logging.getLogger("authgate.facade")


async def handle(call: Call) -> Response:
    """201 with every registered field; RegistrationError (400) when the metadata is refused."""
    if not call.facade.dynamic_registration:
        raise OAuthError(403, "access_denied", "dynamic client registration is disabled here")
    if media_type(call.request) != "application/json":
        raise OAuthError(400, "invalid_client_metadata", "send the client metadata as application/json")
    body = await read_body(call.request, MAX_JSON_BYTES)
    try:
        document = bounded_json.read(body, MAX_JSON_BYTES)
    except bounded_json.JSONInputError as error:
        raise OAuthError(400, "invalid_client_metadata", f"the body is {error}") from None
    registered = register(call.keys, call.facade.issuer, call.policy.uid, document, allowed_scopes(call.policy))
    log.info(
        "facade client registered",
        extra={
            "policy": call.policy.ref,
            "client": registered.client_id[-16:],
            "auth_method": registered.metadata["token_endpoint_auth_method"],
        },
    )
    return JSONResponse(registered.metadata, status_code=201, headers=call.cors | NO_STORE)
