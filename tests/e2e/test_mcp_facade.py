"""An MCP client logs in through authgate's OAuth facade, every part real: the MCP SDK's own
OAuth client (discovery, dynamic registration, PKCE), headless Chromium for the user,
Debian nginx with TLS running examples/nginx/nginx.conf in front of the example MCP server,
two `authgate serve` replicas behind it and npm oidc-provider as the upstream IdP.

    SDK ──► nginx https://mcp.localhost:<port> ── auth_request ──► authgate A | B  (check port)
              ├── /.well-known/oauth-*, openid-configuration, /oauth2/ ──► A | B  (public port)
              └── /mcp, once allowed ──► examples/mcp-server (X-Auth-Subject from the decision)
    Chromium ──► consent page (facade) ──► oidc-provider https://localhost:<port> (automated login)
             ──► facade callback ──► the SDK's loopback redirect listener

nginx alternates between the replicas (round robin, one worker), so each step of the flow
lands on the other replica than the step before: what the facade seals on one (consent,
transaction, code, wrapped refresh token) must open on the other. Both share the sealing
keys and the policy, as the replicas of one Deployment do.

The example nginx config is adapted here, not copied: TLS on its listeners, both replicas in
its upstreams, `mcp.localhost` as its server name, and the port kept in Host and
X-Original-URL (the example drops it: right behind 443, not on a test port). Each swap fails
loudly when the example changes, so the example and this test cannot drift apart.
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from tests.infra import mcp as mcp_support
from tests.infra.availability import require_tool
from tests.infra.browser import async_chromium_page, browser_problem
from tests.infra.idp import RESOURCE_SCOPES, OidcProvider, default_clients, install_problem
from tests.infra.mcp import LoopbackCallback, LoopbackTransport, McpServer, oauth_login
from tests.infra.nginx import EXAMPLE_CONFIG, Nginx
from tests.infra.ports import free_port
from tests.infra.tls import IssuedCert, TestCA
from tests.support.authgate import Authgate
from tests.support.facade import facade_policy_at, sealing_keys_file, upstream_client_metadata_at
from tests.support.leaks import assert_clean_log
from tests.support.mcp_flow import (
    CLIENT_NAME,
    RULES,
    User,
    assert_discovered_in_order,
    json_part,
    mcp_session,
    remember,
)

from authgate.sealing import SealingKeys

pytestmark = pytest.mark.integration

HOST = "mcp.localhost"  # Chromium maps *.localhost to loopback by itself; Python gets RESOLVE
RESOLVE = {HOST: "127.0.0.1"}
POLICY_UID = "0b5e7c1e-0000-4000-8000-000000000002"  # facade_policy_at(): binds what the facade seals
FACADE_EVENTS = ("facade client registered", "facade authorization started", "facade token issued")


def nginx_problem() -> str | None:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    return None if found else "nginx not installed: run make tools"


def edge_config(example: str, *, second: Authgate, cert: IssuedCert, access_log: Path) -> str:
    """examples/nginx/nginx.conf for this test, before tests/infra/nginx.py moves its ports
    (the first replica takes the example's authgate addresses, the second is added)."""
    http_block = (
        "http {\n"
        f"    ssl_certificate {cert.cert};\n"
        f"    ssl_certificate_key {cert.key};\n"
        # Which replica answered each request; $uri, not $request_uri: queries carry codes.
        "    log_format replicas '$request_method $uri $status $upstream_addr';\n"
        f"    access_log {access_log} replicas;\n"
    )
    swaps = [
        # One worker, one round-robin state: consecutive requests alternate between replicas.
        ("worker_processes auto;", "worker_processes 1;"),
        ("\nhttp {\n", f"\n{http_block}"),
        ("listen 8000", "listen 8000 ssl"),
        # The example's TLS server certificate is for mcp.example.com: this origin's instead.
        ("ssl_certificate /etc/nginx/tls/mcp.example.com.pem;", f"ssl_certificate {cert.cert};"),
        ("ssl_certificate_key /etc/nginx/tls/mcp.example.com-key.pem;", f"ssl_certificate_key {cert.key};"),
        ("server_name mcp.example.com;", f"server_name {HOST};"),
        ("server 127.0.0.1:8082;", f"server 127.0.0.1:8082;\n        server 127.0.0.1:{second.check_port};"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:8080;\n        server 127.0.0.1:{second.port};"),
        # The origin's port is part of the facade issuer and of the resource: keep it.
        ("proxy_set_header Host $host;", "proxy_set_header Host $host:$server_port;"),
        ("$scheme://$host$request_uri", "$scheme://$host:$server_port$request_uri"),
    ]
    for old, new in swaps:
        assert old in example, f"examples/nginx/nginx.conf no longer has {old!r}: update this test"
        example = example.replace(old, new)
    return example


@dataclass(frozen=True)
class Stack:
    origin: str  # https://mcp.localhost:<port>: nginx, and the facade issuer
    resource: str  # <origin>/mcp
    ca: TestCA
    idp: OidcProvider
    replicas: tuple[Authgate, Authgate]
    access_log: Path  # nginx: method, path, status, replica of every request
    sealing_keys: Path

    def public_requests(self) -> list[tuple[str, str, str]]:
        """(method, path, replica name) of every request nginx sent to a public port, in order."""
        names = {f"127.0.0.1:{replica.port}": replica.process.name for replica in self.replicas}
        requests = []
        for line in self.access_log.read_text().splitlines():
            method, path, _status, upstream = line.split(" ", 3)
            if path.startswith(("/.well-known/", "/oauth2/")):
                requests.append((method, path, names.get(upstream, upstream)))
        return requests


@pytest.fixture
def stack(tmp_path: Path, start_authgate: Callable[..., Authgate]) -> Iterator[Stack]:
    require_tool(nginx_problem())
    require_tool(install_problem())
    port = free_port()
    origin = f"https://{HOST}:{port}"
    resource = f"{origin}/mcp"
    ca = TestCA(tmp_path / "pki")
    resources = {resource: {"scope": RESOURCE_SCOPES, "alg": "RS256", "accessTokenTTL": 600}}
    clients = [*default_clients(), upstream_client_metadata_at(origin)]
    with (
        OidcProvider(tmp_path / "idp", ca=ca, clients=clients, resources=resources) as idp,
        McpServer(tmp_path / "mcp-server", allowed_hosts=[HOST]) as mcp_server,
    ):
        keys = sealing_keys_file(tmp_path / "sealing-keys.json")
        policy = facade_policy_at(idp.issuer, issuer=origin, resource=resource, extra_spec=RULES)
        args = ("--ca-bundle", str(ca.ca_path), "--egress-allow", "127.0.0.1", "--sealing-keys", str(keys))
        args += ("--forwarded-for-hops", "1")  # nginx appends to X-Forwarded-For
        first = start_authgate(policy, *args, name="authgate-a")
        second = start_authgate(policy, *args, name="authgate-b")
        cert = ca.issue_server_cert("edge", dns_names=[HOST], ip_addresses=[])
        access_log = tmp_path / "nginx-replicas.log"
        config = tmp_path / "nginx.conf"
        config.write_text(edge_config(EXAMPLE_CONFIG.read_text(), second=second, cert=cert, access_log=access_log))
        assert mcp_server.port is not None
        proxy = Nginx(
            tmp_path / "nginx",
            check_port=first.check_port,
            public_port=first.port,
            app_port=mcp_server.port,
            listen_port=port,
            config_path=config,
        )
        proxy.validate()
        with proxy:
            yield Stack(origin, resource, ca, idp, (first, second), access_log, keys)


@pytest.fixture
async def browser(stack: Stack, tmp_path: Path) -> AsyncIterator[Any]:
    require_tool(browser_problem())
    async with async_chromium_page(trust_ca=stack.ca.ca_path, artifacts_dir=tmp_path) as page:
        await page.set_viewport_size({"width": 900, "height": 700})
        yield page


@dataclass(frozen=True)
class TokenExchange:
    form: dict[str, str]
    answer: dict


class TokenExchanges(LoopbackTransport):
    """The SDK's transport, also keeping each token request's form and the answer's JSON: the
    SDK parses the answer into `OAuthToken`, which silently drops other fields (an id_token)."""

    def __init__(self, seen: list[TokenExchange], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_exchanges = seen

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        if request.url.path.endswith("/oauth2/token"):
            form = {name: values[0] for name, values in parse_qs((await request.aread()).decode()).items()}
            self.token_exchanges.append(TokenExchange(form, json.loads(await response.aread())))
        return response


def facade_events(replica: Authgate) -> list[str]:
    return [json.loads(line)["msg"] for line in replica.log().splitlines() if '"logger":"authgate.facade"' in line]


async def test_mcp_sdk_logs_in_through_the_facade_behind_nginx(
    stack: Stack, browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = stack.ca.ssl_context()
    user = User(browser, tmp_path / "consent.png", publish=True)
    token_exchanges: list[TokenExchange] = []
    # oauth_login builds its transport from this module attribute: record its token requests.
    monkeypatch.setattr(mcp_support, "LoopbackTransport", functools.partial(TokenExchanges, token_exchanges))
    with LoopbackCallback() as callback:
        login = await oauth_login(
            stack.resource,
            verify=context,
            resolve=RESOLVE,
            redirect_handler=functools.partial(user.allow, redirect_uri=callback.redirect_uri),
            callback=callback,
            client_name=CLIENT_NAME,
            time_limit=60,
        )
    monkeypatch.undo()
    assert login.tokens is not None and login.client_info is not None and login.callback is not None
    access_token, wrapped_refresh = login.tokens.access_token, login.tokens.refresh_token
    remember(access_token, wrapped_refresh, login.callback.code)

    # The MCP server answered through nginx once the SDK held the facade's token.
    assert {"echo", "whoami"} <= set(login.tool_names)
    assert login.echo_text == "hello through authgate"

    # Discovery in the order tests/infra/mcp.py documents, all on the resource's origin.
    assert_discovered_in_order(login.requests, urlsplit(stack.resource).netloc)

    # What the SDK registered and asked for: the challenge's scope plus offline_access (the
    # facade offers it), the MCP URL as RFC 8707 resource, PKCE S256, its loopback listener.
    client_id = login.client_info.client_id
    assert [str(uri) for uri in login.client_info.redirect_uris or []] == [callback.redirect_uri]
    assert login.client_info.token_endpoint_auth_method == "none"
    assert login.client_info.grant_types == ["authorization_code", "refresh_token"]
    assert (login.client_info.scope or "").split() == ["mcp:read", "offline_access"]
    authorize = {name: values[0] for name, values in parse_qs(urlsplit(login.authorization_url or "").query).items()}
    assert authorize["client_id"] == client_id
    assert authorize["redirect_uri"] == callback.redirect_uri
    assert authorize["resource"] == stack.resource
    assert authorize["scope"].split() == ["mcp:read", "offline_access"]
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["prompt"] == "consent"
    assert login.callback.iss == stack.origin  # RFC 9207

    # The user's side: the consent page named the client and the resource; Allow led through
    # the upstream IdP's login to the facade's callback and on to the client's listener.
    assert CLIENT_NAME in user.consent_text and stack.resource in user.consent_text
    steps = user.navigations
    assert steps[:2] == [
        ("GET", f"{stack.origin}/oauth2/authorize", 200),
        ("POST", f"{stack.origin}/oauth2/authorize", 303),
    ], steps
    assert steps[-2:] == [("GET", f"{stack.origin}/oauth2/callback", 302), ("GET", callback.redirect_uri, 200)], steps
    upstream = steps[2:-2]
    assert upstream and all(url.startswith(f"{stack.idp.issuer}/") for _, url, _ in upstream), steps
    assert "Authorization complete" in await browser.inner_text("#result")
    assert user.screenshot.stat().st_size > 10_000

    # The access token is the upstream's JWT for the MCP resource, for alice. No id_token
    # reached the client, and the refresh token it holds is the facade's wrapped one.
    claims = json_part(access_token, 1)
    assert (claims["aud"], claims["iss"], claims["sub"]) == (stack.resource, stack.idp.issuer, "alice")
    assert len(token_exchanges) == 1, token_exchanges
    form, answer = token_exchanges[0].form, token_exchanges[0].answer
    assert form["grant_type"] == "authorization_code"
    assert (form["client_id"], form["redirect_uri"], form["resource"]) == (
        client_id,
        callback.redirect_uri,
        stack.resource,
    )
    assert "id_token" not in answer, sorted(answer)
    assert (answer["access_token"], answer.get("refresh_token")) == (access_token, wrapped_refresh)
    assert wrapped_refresh is not None and len(wrapped_refresh.split(".")) == 5  # a JWE
    assert "enc" in json_part(wrapped_refresh, 0)
    sealing = SealingKeys.load(stack.sealing_keys)
    unwrapped = sealing.open("refresh", stack.origin, POLICY_UID, wrapped_refresh)
    assert unwrapped["cid"] == client_id  # bound to this client
    remember(unwrapped["rt"])  # the upstream's own refresh token: never given out, never logged
    assert unwrapped["rt"] not in json.dumps(answer)

    transport = LoopbackTransport(RESOLVE, verify=context, trust_env=False)
    async with httpx2.AsyncClient(transport=transport, trust_env=False, timeout=30.0) as http:
        # The client comes back later: the SDK's refresh request (grant, wrapped token, client_id,
        # resource) on whichever replica nginx picks; the new token reaches the server as alice.
        refreshed = await http.post(
            f"{stack.origin}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": wrapped_refresh,
                "client_id": client_id,
                "resource": stack.resource,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        renewed = refreshed.json()
        remember(renewed["access_token"], renewed.get("refresh_token"))
        assert "id_token" not in renewed
        assert json_part(renewed["access_token"], 1)["aud"] == stack.resource
        assert sealing.open("refresh", stack.origin, POLICY_UID, renewed["refresh_token"])["cid"] == client_id

        # The facade's metadata is also where OpenID Connect Discovery looks (the route
        # examples/nginx/nginx.conf has for it), and the 401 names the resource's metadata.
        oauth_metadata = await http.get(f"{stack.origin}/.well-known/oauth-authorization-server")
        openid_metadata = await http.get(f"{stack.origin}/.well-known/openid-configuration")
        assert openid_metadata.status_code == 200, openid_metadata.text
        assert openid_metadata.json() == oauth_metadata.json()
        assert openid_metadata.json()["issuer"] == stack.origin
        challenge = await http.post(stack.resource, json={}, headers={"Mcp-Method": "tools/list"})
        assert challenge.status_code == 401
        metadata = f'resource_metadata="{stack.origin}/.well-known/oauth-protected-resource/mcp"'
        assert challenge.headers["www-authenticate"] == (  # Bearer, then DPoP (accepted by default)
            f'Bearer scope="mcp:read", {metadata}, '
            f'DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512", scope="mcp:read", {metadata}'
        )

    whoami, echoed = await mcp_session(stack.resource, renewed["access_token"], context, RESOLVE)
    assert whoami["subject"] == "alice"  # X-Auth-Subject: nginx set it from authgate's decision
    assert "mcp:read" in (whoami["scopes"] or "").split()
    assert echoed == {"result": "again"}

    # Both replicas served the flow: nginx alternated on every public request (consent page
    # and approval, callback and token each on different replicas), each replica logged
    # facade work and allowed MCP requests for alice at its check port.
    public = stack.public_requests()
    served_by = [replica for _, _, replica in public]
    assert set(served_by) == {replica.process.name for replica in stack.replicas}, public
    assert all(one != other for one, other in itertools.pairwise(served_by)), public
    events = {replica.process.name: facade_events(replica) for replica in stack.replicas}
    assert all(set(logged) & set(FACADE_EVENTS) for logged in events.values()), events
    everything = [event for logged in events.values() for event in logged]
    assert [everything.count(event) for event in FACADE_EVENTS] == [1, 1, 2], events  # code, then refresh
    for replica in stack.replicas:
        allowed = [d for d in replica.decisions() if d["decision"] == "allow" and d["subject"] == "alice"]
        assert allowed, f"{replica.process.name} allowed no MCP request"
        # No token of this flow in its log (checked again when the replicas stop).
        assert_clean_log(replica.log(), str(replica.process.log_path))
