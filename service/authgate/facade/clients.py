"""Who the facade's clients are, and how they prove it at the token endpoint.

A client_id is either one the facade issued at registration (its metadata sealed inside
it, `registration.py`) or, with `clientMetadataDocuments`, an https URL naming an MCP
Client ID Metadata Document, fetched through the egress client (SSRF screening, size
cap, timeout) and cached. A metadata document must name itself and describes a public
client: it can hold no secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

from authgate.caches import BoundedCache, SingleFlight
from authgate.errors import ClientError, EgressError, RegistrationError, SealError, TargetError, UnknownClient
from authgate.facade.registration import registered_client, secret_matches, validate_metadata
from authgate.outbound.egress import EgressClient
from authgate.policy.snapshot import CompiledFacade, CompiledPolicy
from authgate.sealing import SealingKeys
from authgate.urls import parse_url

log = logging.getLogger("authgate.facade")

MAX_DOCUMENT_BYTES = 5 * 1024  # MCP: a client metadata document is small
DOCUMENT_TTL = (60.0, 300.0, 3600.0)  # min, default, max seconds a fetched document is reused
MAX_DOCUMENTS = 1000


@dataclass(frozen=True)
class Client:
    client_id: str
    metadata: dict
    from_document: bool = False

    @property
    def auth_method(self) -> str:
        return self.metadata.get("token_endpoint_auth_method", "none")

    @property
    def display_name(self) -> str:
        name = self.metadata.get("client_name")
        if name:
            return name
        if self.from_document:
            return parse_url(self.client_id).hostname
        return "an unnamed application"

    @property
    def log_id(self) -> str:
        """What logs show: a document's URL, or the head of a (long, sealed) issued client_id."""
        return self.client_id if self.from_document else self.client_id[-16:]


def is_document_url(client_id: str) -> bool:
    """MCP: an https URL with a path names a Client ID Metadata Document."""
    try:
        parts = parse_url(client_id)
    except TargetError:
        return False
    return parts.scheme == "https" and parts.path not in ("", "/")


def document_url_problem(client_id: str) -> str | None:
    """Why a client_id URL cannot name a metadata document (draft-ietf-oauth-client-id-metadata-document §3):
    a path without `.` or `..` segments, no fragment, no user information."""
    parts = parse_url(client_id)  # is_document_url accepted it
    if parts.fragment is not None:
        return "a client_id URL has no fragment"
    if parts.userinfo:
        return "a client_id URL has no user information"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return "a client_id URL has no . or .. path segments"
    return None


@dataclass(frozen=True)
class _Fetched:
    metadata: dict | None  # None: unusable, and `problem` says why
    problem: str | None = None


class ClientDocuments:
    """Fetched client metadata documents: bounded (LRU), each kept for its max-age, one fetch
    per URL at a time. Failures are never cached: the next request fetches again."""

    def __init__(self, egress: EgressClient, max_entries: int = MAX_DOCUMENTS) -> None:
        self._egress = egress
        self._cache: BoundedCache[str, dict] = BoundedCache(max_entries)
        self._flights: SingleFlight[str, _Fetched] = SingleFlight()

    async def get(self, url: str, allowed_scopes: frozenset[str]) -> dict:
        cached = self._cache.get(url, time.monotonic())
        if cached is not None:
            return cached
        fetched = await self._flights.run(url, lambda: self._fetch(url, allowed_scopes))
        if fetched.metadata is None:
            raise ClientError(fetched.problem or "client metadata document unusable")
        return fetched.metadata

    async def _fetch(self, url: str, allowed_scopes: frozenset[str]) -> _Fetched:
        try:
            document, response = await self._egress.get_json(url, max_bytes=MAX_DOCUMENT_BYTES)
        except EgressError as error:
            log.warning("client metadata document unavailable", extra={"client_id": url, "reason": error.reason})
            return _Fetched(None, "the client metadata document cannot be fetched")
        try:
            metadata = document_metadata(url, document, allowed_scopes)
        except ClientError as error:
            return _Fetched(None, str(error))
        low, default, high = DOCUMENT_TTL
        max_age = response.max_age()
        ttl = default if max_age is None else min(max(max_age, low), high)
        self._cache.put(url, metadata, time.monotonic() + ttl)
        return _Fetched(metadata)


def document_metadata(url: str, document: dict, allowed_scopes: frozenset[str]) -> dict:
    """The registered metadata a Client ID Metadata Document stands for (ClientError if none)."""
    if document.get("client_id") != url:
        raise ClientError("the client metadata document does not name itself as client_id")
    name = document.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise ClientError("the client metadata document has no client_name")
    if any(name in document for name in ("client_secret", "client_secret_expires_at")):
        raise ClientError("a client metadata document cannot carry a secret")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise ClientError("a client metadata document describes a public client (token_endpoint_auth_method none)")
    try:
        return validate_metadata({**document, "token_endpoint_auth_method": "none"}, allowed_scopes)
    except RegistrationError as error:
        raise ClientError(f"client metadata document: {error.description}") from None


@dataclass(frozen=True)
class ClientDirectory:
    """Finds a policy's facade clients."""

    keys: SealingKeys
    documents: ClientDocuments

    async def find(self, policy: CompiledPolicy, facade: CompiledFacade, client_id: str) -> Client:
        if not client_id or len(client_id) > 8192:
            raise UnknownClient
        scopes = allowed_scopes(policy)
        if is_document_url(client_id):
            if not facade.client_metadata_documents:
                raise ClientError("client metadata documents are not accepted here")
            if (problem := document_url_problem(client_id)) is not None:
                raise ClientError(problem)
            return Client(client_id, await self.documents.get(client_id, scopes), from_document=True)
        try:
            return Client(client_id, registered_client(self.keys, facade.issuer, policy.uid, client_id))
        except SealError:
            raise UnknownClient from None

    async def authenticate(
        self,
        policy: CompiledPolicy,
        facade: CompiledFacade,
        authorization: str | None,
        form: dict[str, str],
    ) -> Client:
        """RFC 6749 §2.3: the client as its credentials prove it (client_secret_basic or
        _post, exactly the registered method), or a public client named by client_id."""
        basic = _basic_credentials(authorization) if authorization else None
        if authorization and basic is None:
            raise ClientError("malformed client credentials")
        if basic is not None and ("client_secret" in form):
            raise ClientError("use one client authentication method")
        if basic is not None:
            client_id, secret, method = basic[0], basic[1], "client_secret_basic"
            if form.get("client_id", client_id) != client_id:
                raise ClientError("client_id does not match the credentials")
        elif "client_secret" in form:
            client_id, secret, method = form.get("client_id", ""), form["client_secret"], "client_secret_post"
        else:
            client_id, secret, method = form.get("client_id", ""), None, "none"
        client = await self.find(policy, facade, client_id)
        if client.auth_method != method:
            raise ClientError(f"this client authenticates with {client.auth_method}")
        if secret is not None and not secret_matches(self.keys, facade.issuer, policy.uid, client_id, secret):
            raise ClientError("client authentication failed")
        return client


def allowed_scopes(policy: CompiledPolicy) -> frozenset[str]:
    """What a facade client may ask for: the resource's scopes, and offline_access."""
    return frozenset(policy.scopes_supported) | {"offline_access"}


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)
