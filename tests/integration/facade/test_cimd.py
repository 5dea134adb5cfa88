"""Client ID Metadata Documents at the facade: the MCP authorization spec (2025-11-25 "Client
ID Metadata Documents", 2026-07-28 client-registration) and
draft-ietf-oauth-client-id-metadata-document-00 (CIMD), which MCP makes normative for servers
that support it.

The documents are served by a real https server on 127.0.0.1 (a certificate from the test CA,
which authgate trusts through --ca-bundle; --egress-allow 127.0.0.1 lets it connect). Every
test uses document URLs of its own: the facade caches what it fetched, per URL.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.infra.idp import OidcProvider
from tests.infra.threaded_server import ThreadedServer
from tests.infra.tls import IssuedCert, TestCA
from tests.support.authgate import Authgate
from tests.support.facade import (
    FACADE_RESOURCE,
    LOOPBACK_REDIRECT,
    FacadeHarness,
    Registered,
    authorization_code,
    client_post,
    code_grant,
    facade_from,
    facade_policy,
    is_consent_page,
    jwt_claims,
    loopback_address,
    oauth_error,
    shown_error,
)

EGRESS_TIMEOUT = 2.0  # seconds, --egress-timeout of this module's authgate


@dataclass
class Answer:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class DocumentServer:
    """An https server for client metadata documents: `serve(url, document)` sets what a path
    answers; `hits[path]` counts the requests a path received."""

    def __init__(self, cert: IssuedCert) -> None:
        # authgate keeps its connections to us alive: give open requests 1 s at stop
        self._http = ThreadedServer(
            self._app, name="client metadata document server", tls=(cert.cert, cert.key), graceful_shutdown=1
        )
        self.port: int = self._http.port
        self.answers: dict[str, Answer] = {}
        self.hits: Counter[str] = Counter()

    def url(self, name: str = "client.json", host: str = "127.0.0.1") -> str:
        """A document URL no other test uses."""
        return f"https://{host}:{self.port}/{uuid.uuid4().hex}/{name}"

    def serve(self, url: str, document: Any, status: int = 200, **kwargs: Any) -> None:
        """What the path of `url` (as an http client sends it: dot segments resolved) answers."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.answers[self.path(url)] = Answer(body, status, **kwargs)

    @staticmethod
    def path(url: str) -> str:
        return httpx.URL(url).raw_path.decode("ascii").split("?", 1)[0]

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["raw_path"].decode("ascii")
        self.hits[path] += 1
        answer = self.answers.get(path, Answer(b'{"error": "not found"}', 404))
        if answer.delay:
            await asyncio.sleep(answer.delay)
        headers = {"content-type": "application/json", **answer.headers, "content-length": str(len(answer.body))}
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    def start(self) -> DocumentServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()


def document(url: str, **fields: Any) -> dict[str, Any]:
    """The MCP spec's example document for `url` (fields set to None are left out)."""
    body = {
        "client_id": url,
        "client_name": "Example MCP Client",
        "client_uri": "https://app.example.com",
        "redirect_uris": [LOOPBACK_REDIRECT, "http://localhost:3000/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def as_client(url: str, body: dict[str, Any]) -> Registered:
    return Registered(url, None, body)


@pytest.fixture(scope="module")
def documents(pki: TestCA) -> Iterator[DocumentServer]:
    server = DocumentServer(pki.issue_server_cert("cimd", dns_names=["localhost"], ip_addresses=["127.0.0.1"]))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gate(start_shared_facade: Callable[..., FacadeHarness], idp: OidcProvider) -> FacadeHarness:
    return start_shared_facade(facade_policy(idp.issuer), "--egress-timeout", str(EGRESS_TIMEOUT))


@pytest.fixture
def facade(gate: FacadeHarness) -> Iterator[FacadeHarness]:
    harness = facade_from(gate, loopback_address())
    yield harness
    harness.close()


def authorize(facade: FacadeHarness, client_id: str, body: dict[str, Any], **overrides: str | None) -> httpx.Response:
    """GET /oauth2/authorize for `client_id` (redirect_uri: the document's first one)."""
    response = facade.start(Registered(client_id, None, body), **overrides).consent_page
    assert response is not None
    return response


def refused(response: httpx.Response) -> str:
    """The authorization request is refused on an error page (no consent, no redirect)."""
    assert not is_consent_page(response), "the facade accepted the client and showed its consent page"
    return shown_error(response)


def test_cimd_document_client_signs_in_as_a_public_client_with_its_url_as_client_id(
    facade: FacadeHarness, documents: DocumentServer
) -> None:
    """CIMD-00 §4.1: no shared secret can exist for a document client (the symmetric methods
    and client_secret MUST NOT be used), so the URL signs in as a public client: PKCE and its
    client_id, and a client_secret sent with it is refused. MCP: the document's client_name is
    what the consent page shows."""
    url = documents.url()
    body = document(url, client_name="Docs Client 7f3a")
    documents.serve(url, body)
    client = as_client(url, body)
    flow, code = authorization_code(facade, client)
    assert flow.consent_page is not None and "Docs Client 7f3a" in flow.consent_page.text
    with_secret = client_post(facade, "token", code_grant(flow, code), Registered(url, "guessed-secret", body))
    assert oauth_error(with_secret, 401) == "invalid_client"
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text[:300]
    assert FACADE_RESOURCE in jwt_claims(response.json()["access_token"])["aud"]


@pytest.mark.parametrize(
    "claimed",
    ["exact", "trailing-slash", "other-document", "query-added", "absent", "scheme-case", "path-case"],
)
def test_cimd_document_client_id_must_equal_the_document_url_exactly(
    facade: FacadeHarness, documents: DocumentServer, claimed: str
) -> None:
    """MCP 2025-11-25 / 2026-07-28: the authorization server MUST validate that the fetched
    document's client_id matches the URL exactly (CIMD-00 §4.1: simple string comparison,
    RFC 3986 §6.2.1)."""
    url = documents.url()  # where the document is served
    presented = url  # the client_id of the authorization request (fetched as is)
    if claimed == "scheme-case":
        presented = "HTTPS" + url[len("https") :]  # the same document, reached by another string
    if claimed == "path-case":
        url = presented = url.replace("client.json", "Client.json")
    names_itself = {
        "exact": url,
        "trailing-slash": url + "/",
        "other-document": documents.url(),
        "query-added": url + "?v=2",
        "absent": None,
        "scheme-case": url,
        "path-case": url.replace("Client.json", "client.json"),
    }[claimed]
    body = document(presented, client_id=names_itself)
    documents.serve(url, body)
    response = authorize(facade, presented, body)
    assert documents.hits[documents.path(url)] >= 1, "the document was never fetched"
    if claimed == "exact":
        assert is_consent_page(response), response.text[:300]
    else:
        refused(response)


WEB_REDIRECT = "https://app.example.net/oauth/cb"


@pytest.mark.parametrize(
    ("listed", "redirect_uri", "allowed"),
    [
        (WEB_REDIRECT, WEB_REDIRECT, True),
        (LOOPBACK_REDIRECT, "http://127.0.0.1:49152/callback", True),  # another port (RFC 8252 §7.3)
        (WEB_REDIRECT, "https://attacker.example/cb", False),
        (WEB_REDIRECT, WEB_REDIRECT + "/", False),
        (WEB_REDIRECT, "https://app.example.net/oauth/other", False),
        (WEB_REDIRECT, "https://app.example.net/oauth/cb?x=1", False),
        (LOOPBACK_REDIRECT, "https://attacker.example/cb", False),
        (LOOPBACK_REDIRECT, "http://127.0.0.1:33418/other", False),
        (LOOPBACK_REDIRECT, "http://localhost:33418/callback", False),
    ],
    ids=[
        "listed",
        "listed-other-port",
        "attacker",
        "slash",
        "path",
        "query",
        "loopback-attacker",
        "loopback-path",
        "loopback-host",
    ],
)
def test_cimd_redirect_uri_must_be_one_the_document_lists(
    facade: FacadeHarness, documents: DocumentServer, listed: str, redirect_uri: str, allowed: bool
) -> None:
    """MCP 2025-11-25 / 2026-07-28: the authorization server MUST validate redirect URIs
    presented in an authorization request against those in the metadata document (CIMD-00
    §4.5: exact match, RFC 9700); a mismatch is shown, never redirected to."""
    url = documents.url()
    body = document(url, redirect_uris=[listed])
    documents.serve(url, body)
    response = authorize(facade, url, body, redirect_uri=redirect_uri)
    if allowed:
        assert is_consent_page(response), response.text[:300]
    else:
        assert "attacker.example" not in refused(response)


@pytest.mark.parametrize(
    "broken",
    [
        "not-json",
        "json-array",
        "no-redirect-uris",
        "redirect-uris-a-string",
        "empty-redirect-uris",
        "no-client-name",
        "remote-http-redirect-uri",
    ],
)
def test_cimd_document_must_be_a_json_object_with_the_required_fields(
    facade: FacadeHarness, documents: DocumentServer, broken: str
) -> None:
    """MCP 2025-11-25 / 2026-07-28: the authorization server MUST validate that the document is
    valid JSON and contains the required fields; the MCP spec requires at least client_id,
    client_name and redirect_uris (and redirect URIs MUST be localhost or https)."""
    url = documents.url()
    body = document(url)
    served: Any = {
        "not-json": b"client_id: not json",
        "json-array": [body],
        "no-redirect-uris": document(url, redirect_uris=None),
        "redirect-uris-a-string": document(url, redirect_uris=LOOPBACK_REDIRECT),
        "empty-redirect-uris": document(url, redirect_uris=[]),
        "no-client-name": document(url, client_name=None),
        "remote-http-redirect-uri": document(url, redirect_uris=["http://app.example.com/cb"]),
    }[broken]
    documents.serve(url, served)
    redirect = "http://app.example.com/cb" if broken == "remote-http-redirect-uri" else LOOPBACK_REDIRECT
    refused(authorize(facade, url, {"redirect_uris": [redirect]}))


@pytest.mark.parametrize(
    "secret",
    [
        {"token_endpoint_auth_method": "client_secret_basic"},
        {"token_endpoint_auth_method": "client_secret_post"},
        {"token_endpoint_auth_method": "client_secret_jwt"},
        {"client_secret": "s3cr3t-in-a-public-document"},
        {"client_secret_expires_at": 0},
    ],
    ids=["client_secret_basic", "client_secret_post", "client_secret_jwt", "client_secret", "client_secret_expires_at"],
)
def test_cimd_document_must_not_use_a_shared_secret(
    facade: FacadeHarness, documents: DocumentServer, secret: dict[str, Any]
) -> None:
    """CIMD-00 §4.1: token_endpoint_auth_method MUST NOT be client_secret_post,
    client_secret_basic, client_secret_jwt or any other shared-secret method, and client_secret
    and client_secret_expires_at MUST NOT be used: such a document is refused."""
    url = documents.url()
    body = document(url, **secret)
    documents.serve(url, body)
    refused(authorize(facade, url, body))


@pytest.mark.parametrize("shape", ["http-scheme", "no-path", "dot-dot-segment", "dot-segment", "fragment", "userinfo"])
def test_cimd_client_id_url_shape_is_enforced(facade: FacadeHarness, documents: DocumentServer, shape: str) -> None:
    """CIMD-00 §3 (MCP: the client_id URL MUST use https and contain a path): client identifier
    URLs MUST have an https scheme, MUST contain a path component, MUST NOT contain single-dot
    or double-dot path segments, a fragment, or a username or password. The document served
    (where a fetch would land) claims exactly the client_id presented, so only the URL rules
    can refuse it."""
    base = f"https://127.0.0.1:{documents.port}/{uuid.uuid4().hex}"
    client_id = {
        "http-scheme": f"http://127.0.0.1:{documents.port}/{uuid.uuid4().hex}/client.json",
        "no-path": f"https://127.0.0.1:{documents.port}/",
        "dot-dot-segment": f"{base}/sub/../client.json",
        "dot-segment": f"{base}/./client.json",
        "fragment": f"{base}/client.json#app",
        "userinfo": f"https://app:pw@127.0.0.1:{documents.port}/{uuid.uuid4().hex}/client.json",
    }[shape]
    body = document(client_id)
    documents.serve(client_id.replace("app:pw@", "").replace("http://", "https://"), body)
    refused(authorize(facade, client_id, body))


@pytest.mark.parametrize("first", ["server-error", "invalid-document"])
def test_cimd_error_responses_and_invalid_documents_are_not_cached(
    facade: FacadeHarness, documents: DocumentServer, first: str
) -> None:
    """CIMD-00 §4.4: the authorization server MUST NOT cache error responses, and MUST NOT cache
    documents which are invalid or malformed: once the client fixes its document, the next
    authorization request uses it."""
    url = documents.url()
    body = document(url)
    if first == "server-error":
        documents.serve(url, b'{"error": "deploying"}', status=503)
    else:
        documents.serve(url, document(url, client_id=url + "/"))
    refused(authorize(facade, url, body))
    documents.serve(url, body)
    again = authorize(facade, url, body)
    assert is_consent_page(again), f"the fixed document was not fetched again: {again.text[:300]}"


def test_cimd_document_larger_than_5_kib_is_refused(facade: FacadeHarness, documents: DocumentServer) -> None:
    """CIMD-00 §6.6 (SHOULD, recommended 5 kilobytes; docs/facade.md: a 5 KiB cap): a larger
    document is not read, a smaller one of the same kind is used."""
    small, large = documents.url(), documents.url()
    small_body = document(small, x_padding="x" * 4000)
    large_body = document(large, x_padding="x" * 6000)
    assert len(json.dumps(small_body)) < 5 * 1024 < len(json.dumps(large_body))
    documents.serve(small, small_body)
    documents.serve(large, large_body)
    assert is_consent_page(authorize(facade, small, small_body))
    refused(authorize(facade, large, large_body))


def test_cimd_document_fetch_has_a_timeout(facade: FacadeHarness, documents: DocumentServer) -> None:
    """DESIGN (egress: every outbound call has a timeout) and CIMD-00 §6.5 (abuse of the
    server's fetches): a document server that does not answer costs the authorization request
    at most the egress timeout, then the request is refused."""
    url = documents.url()
    body = document(url)
    answer_after = EGRESS_TIMEOUT + 10
    documents.serve(url, body, delay=answer_after)
    started = time.monotonic()
    refused(authorize(facade, url, body))
    # refused without waiting for the (late) answer: the margin is wide so a loaded machine
    # cannot turn this into a speed test
    assert time.monotonic() - started < answer_after - 3


def test_cimd_document_redirect_is_not_followed(facade: FacadeHarness, documents: DocumentServer) -> None:
    """CIMD-00 §6.5 (SSRF) and DESIGN (egress: no redirects followed): a document URL that
    redirects elsewhere is refused, and the redirect target is never fetched."""
    url, target = documents.url(), documents.url()
    body = document(url)
    documents.serve(url, b"", status=302, headers={"location": target})
    documents.serve(target, body)
    refused(authorize(facade, url, body))
    assert documents.hits[documents.path(target)] == 0


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://callback.example.net/oauth/cb", "http://localhost:41234/callback"],
    ids=["https", "loopback"],
)
def test_mcp_consent_page_displays_the_redirect_uri_hostname(
    facade: FacadeHarness, documents: DocumentServer, redirect_uri: str
) -> None:
    """MCP 2025-11-25 "Localhost Redirect URI Risks" / 2026-07-28 security considerations:
    authorization servers MUST clearly display the redirect URI hostname during authorization
    (for document clients, and for registered ones alike)."""
    hostname = urlsplit(redirect_uri).hostname
    assert hostname is not None
    url = documents.url()
    body = document(url, redirect_uris=[redirect_uri])
    documents.serve(url, body)
    assert hostname in authorize(facade, url, body).text
    registered = facade.register(redirect_uris=[redirect_uri])
    page = facade.start(registered).consent_page
    assert page is not None and is_consent_page(page) and hostname in page.text


def _log_reasons(authgate: Authgate, url: str) -> list[str]:
    reasons = []
    for line in authgate.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "client metadata document unavailable" and entry.get("client_id") == url:
                reasons.append(str(entry.get("reason", "")))
    return reasons


def test_cimd_fetch_is_screened_against_loopback_private_and_metadata_addresses(
    start_authgate: Callable[..., Authgate],
    idp: OidcProvider,
    pki: TestCA,
    sealing_keys,
    documents: DocumentServer,
) -> None:
    """CIMD-00 §6.5 (SSRF: SHOULD avoid fetching URLs on private or loopback addresses), MCP
    "Authorization Server Abuse Protection", DESIGN (egress screening after DNS, including
    IPv4-mapped forms). An authgate without --egress-allow: a valid document served on
    127.0.0.1 (by name and by address) is never fetched, and neither is any internal address."""
    authgate = start_authgate(
        facade_policy(idp.issuer), "--ca-bundle", str(pki.ca_path), "--sealing-keys", str(sealing_keys)
    )
    screened = FacadeHarness(authgate.port, idp)
    port = documents.port
    cases = [
        documents.url(host="localhost"),  # a name: screened after DNS, at connect time
        documents.url(host="127.0.0.1"),
        f"https://[::ffff:127.0.0.1]:{port}/{uuid.uuid4().hex}/client.json",  # IPv4-mapped
        f"https://[::1]:{port}/{uuid.uuid4().hex}/client.json",
        f"https://10.1.2.3/{uuid.uuid4().hex}/client.json",
        f"https://192.168.1.1/{uuid.uuid4().hex}/client.json",
        f"https://169.254.169.254/{uuid.uuid4().hex}/client.json",  # cloud metadata
        f"https://[fd00::1]/{uuid.uuid4().hex}/client.json",  # unique local
    ]
    problems = []
    try:
        for url in cases:
            body = document(url)
            documents.serve(url, body)
            response = authorize(screened, url, body)
            if is_consent_page(response):
                problems.append(f"{url}: fetched and accepted")
                continue
            refused(response)
            if documents.hits[documents.path(url)]:
                problems.append(f"{url}: the document server was reached")
            # Blocked, not a connection that failed or timed out (what an unscreened fetch gets).
            reasons = _log_reasons(authgate, url)
            if reasons != ["egress_blocked"]:
                problems.append(f"{url}: logged {reasons}, expected egress_blocked")
    finally:
        screened.close()
    assert problems == []
