"""RFC 7591 dynamic client registration, stateless.

The registered metadata is sealed into the `client_id` itself (purpose "client"), so any
replica can read it back; a confidential client's secret is an HMAC of its client_id under
a key derived for that purpose, so it can be checked without storing it. The upstream
client (the facade's own credentials at the real IdP) is never revealed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from authgate.errors import RedirectError, RegistrationError
from authgate.facade.redirects import check_redirect_uri, is_loopback
from authgate.sealing import SealingKeys

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token")
REGISTRATION_TTL = 90 * 24 * 3600  # a registration stays usable this long (re-register after)
_TEXT_FIELDS = ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id", "software_version")


@dataclass(frozen=True)
class Registered:
    client_id: str
    client_secret: str | None
    metadata: dict  # everything registered, as returned to the client (RFC 7591 §3.2.1)


def _strings(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RegistrationError("invalid_client_metadata", f"{field} must be an array of strings")
    return value


def validate_metadata(request: object, allowed_scopes: frozenset[str]) -> dict:
    """The client metadata to register, normalized; RegistrationError when it cannot be."""
    if not isinstance(request, dict):
        raise RegistrationError("invalid_client_metadata", "the body must be a JSON object")
    redirect_uris = _strings(request.get("redirect_uris"), "redirect_uris")
    if not redirect_uris or len(redirect_uris) > 10:
        raise RegistrationError("invalid_redirect_uri", "register between 1 and 10 redirect_uris")
    for uri in redirect_uris:
        try:
            check_redirect_uri(uri)
        except RedirectError as error:
            raise RegistrationError("invalid_redirect_uri", str(error)) from None
    method = request.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise RegistrationError("invalid_client_metadata", f"token_endpoint_auth_method must be one of {AUTH_METHODS}")
    grant_types = _strings(request.get("grant_types", ["authorization_code"]), "grant_types")
    if not grant_types or not set(grant_types) <= set(GRANT_TYPES) or "authorization_code" not in grant_types:
        raise RegistrationError("invalid_client_metadata", "grant_types: authorization_code, optionally refresh_token")
    response_types = _strings(request.get("response_types", ["code"]), "response_types")
    if response_types != ["code"]:
        raise RegistrationError("invalid_client_metadata", 'response_types must be ["code"]')
    # OIDC Registration defaults to web, but MCP clients register loopback redirects without
    # saying native (RFC 8252): infer native when every redirect URI is loopback http.
    inferred = "native" if all(is_loopback(uri) for uri in redirect_uris) else "web"
    application_type = request.get("application_type", inferred)
    if application_type not in ("web", "native"):
        raise RegistrationError("invalid_client_metadata", "application_type must be web or native")
    if application_type == "web" and any(not uri.lower().startswith("https:") for uri in redirect_uris):
        raise RegistrationError("invalid_redirect_uri", "a web client's redirect_uris must use https")
    metadata = {
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "response_types": ["code"],
        "application_type": application_type,
    }
    scope = request.get("scope")
    if scope is not None:
        if not isinstance(scope, str) or not set(scope.split()) <= allowed_scopes:
            raise RegistrationError("invalid_client_metadata", "scope asks for scopes this resource does not offer")
        metadata["scope"] = scope
    for field in _TEXT_FIELDS:
        value = request.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 500 or not value.isprintable():
            raise RegistrationError("invalid_client_metadata", f"{field} must be a short printable string")
        if field.endswith("_uri") and not value.startswith("https://"):
            raise RegistrationError("invalid_client_metadata", f"{field} must be an https URL")
        metadata[field] = value
    return metadata


def _secret_for(keys: SealingKeys, issuer: str, policy_uid: str, client_id: str) -> str:
    # The secret is derived, never stored: HMAC of the client_id under a per-purpose key.
    mac_key = keys.mac_key("client-secret", issuer, policy_uid, client_id)
    return hmac.new(mac_key, client_id.encode(), hashlib.sha256).hexdigest()


def register(
    keys: SealingKeys,
    issuer: str,
    policy_uid: str,
    request: object,
    allowed_scopes: frozenset[str],
    now: float | None = None,
) -> Registered:
    metadata = validate_metadata(request, allowed_scopes)
    issued_at = int(now or time.time())
    # A random nonce makes two identical registrations two different clients.
    record = {**metadata, "iat": issued_at, "nonce": secrets.token_hex(8)}
    client_id = keys.seal("client", issuer, policy_uid, record, REGISTRATION_TTL, now=issued_at)
    secret = None
    response = {"client_id": client_id, "client_id_issued_at": issued_at, **metadata}
    if metadata["token_endpoint_auth_method"] != "none":  # noqa: S105 - a method name
        secret = _secret_for(keys, issuer, policy_uid, client_id)
        response["client_secret"] = secret
        response["client_secret_expires_at"] = issued_at + REGISTRATION_TTL
    return Registered(client_id, secret, response)


def registered_client(keys: SealingKeys, issuer: str, policy_uid: str, client_id: str) -> dict:
    """The metadata sealed in a client_id (SealError when it is not one of ours, or expired)."""
    return keys.open("client", issuer, policy_uid, client_id)


def secret_matches(keys: SealingKeys, issuer: str, policy_uid: str, client_id: str, presented: str) -> bool:
    expected = _secret_for(keys, issuer, policy_uid, client_id)
    return hmac.compare_digest(expected.encode(), presented.encode())
