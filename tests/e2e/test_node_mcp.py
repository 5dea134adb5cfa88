"""The MCP login of tests/e2e/test_mcp_facade.py with every server part a pod on the real node
(hack/cluster/node.py): authgate from `helm install` of charts/authgate (the image built from
the Dockerfile), the test IdP (hack/idp/server.mjs in the test-idp image), the example MCP
server (examples/mcp-server/ in the mcp-server image), and Traefik as the in-cluster ingress
with examples/kubernetes/traefik/. Only the user is on the host: the MCP SDK's OAuth client
and Chromium (tests/infra/mcp.py, tests/infra/browser.py), through Traefik's NodePort.

    SDK ─► Traefik https://mcp.example.com:30443 (NodePort on 10.244.0.1)
             ├── /.well-known/oauth-*, /oauth2/ ─► authgate-public (2 replicas, the facade)
             └── /mcp ─ ForwardAuth ─► authgate-check, once allowed ─► mcp-server pod
    Chromium ─► consent (facade) ─► IdP pod https://idp.idp.svc.cluster.local:8443 ─► callback
    authgate pods ─► IdP Service (CoreDNS name, ClusterIP; egress.allow names exactly that
                     address /32, caBundle the test CA): discovery, JWKS, code and token

The host has no cluster DNS: its clients map the IdP's name to the IdP pod's address and
mcp.example.com to the node's (10.244.0.1), the node's own pod network. The bridge CNI does
not enforce NetworkPolicy: the chart's NetworkPolicies are installed but checked statically
only (tests/integration/test_chart.py).

Then the bootstrap Secret: with the operator scaled to 0, a replacement service pod becomes
Ready and enforces the current policy from the snapshot Secret the chart mounts, with no
push (docs/operations.md, "Bootstrap").
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from tests.infra.availability import require_tool
from tests.infra.browser import async_chromium_page, browser_problem
from tests.infra.idp import RESOURCE_SCOPES, SERVICE_CLIENT, default_clients, install_problem
from tests.infra.mcp import LoopbackCallback, SeenRequest, oauth_login
from tests.infra.tls import TestCA
from tests.infra.tools import require_built
from tests.integration.test_chart import Chart
from tests.support.facade import UPSTREAM_CLIENT, facade_policy_at, upstream_client_metadata_at
from tests.support.leaks import assert_clean_log, remember_secret
from tests.support.local_node import (
    APPS,
    AUTHGATE_NAMESPACE,
    HOST,
    NODE_IP,
    TRAEFIK_NODE_PORT,
    NodeCluster,
    PodIdp,
    apply_policy,
    eventually,
    install_authgate,
    route_through_traefik,
    running_node,
    service_pods,
)
from tests.support.mcp_flow import (
    CLIENT_NAME,
    RULES,
    User,
    assert_discovered_in_order,
    forged,
    json_part,
    mcp_session,
    raw_tool_call,
    remember,
)

from authgate.policy.model import ASYMMETRIC_ALGORITHMS

pytestmark = pytest.mark.integration

ORIGIN = f"https://{HOST}:{TRAEFIK_NODE_PORT}"  # Traefik's NodePort: the facade issuer keeps the port
RESOURCE = f"{ORIGIN}/mcp"
RESOLVE = {HOST: NODE_IP}
REPLICAS = 2
POLICY = "mcp"

figures: dict[str, object] = {}  # printed at the end of the module


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    require_tool(install_problem())  # hack/idp/node_modules, copied into the test-idp image
    images = ("authgate", "traefik", "test-idp", "mcp-server")  # not the bare base: no pod runs it here
    with running_node(tmp_path_factory.mktemp("node-mcp"), figures, images) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("node-mcp-pki"))


@pytest.fixture(scope="module")
def idp(node: NodeCluster, ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodIdp]:
    resources = {RESOURCE: {"scope": RESOURCE_SCOPES, "alg": "RS256", "accessTokenTTL": 600}}
    clients = [*default_clients(), upstream_client_metadata_at(ORIGIN)]
    began = time.monotonic()
    with PodIdp(node, tmp_path_factory.mktemp("node-mcp-idp"), ca, clients=clients, resources=resources) as pod:
        figures["IdP pod Ready, discovery answered"] = f"{time.monotonic() - began:.1f}s"
        yield pod


@pytest.fixture(scope="module")
def system(node: NodeCluster, idp: PodIdp, ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> NodeCluster:
    """authgate installed by Helm, the facade policy Synced, the MCP server pod behind Traefik."""
    values = tmp_path_factory.mktemp("node-mcp-values") / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": "authgate", "tag": "dev", "pullPolicy": "Never"},
                "authService": {"replicaCount": REPLICAS},
                # Exactly the IdP Service's address, and its CA: no wide CIDR, no insecureHttp.
                "egress": {"allow": [f"{idp.cluster_ip}/32"]},
                "caBundle": {"configMap": {"name": "idp-ca", "key": "ca.crt"}},
            }
        )
    )
    figures["helm install -> both Deployments Available"] = (
        f"{install_authgate(node, Chart(require_built('helm')), values, ca):.1f}s"
    )
    node.namespace(APPS)
    node.deploy_mcp_server(APPS, "mcp-server", allowed_hosts=(HOST,))
    route_through_traefik(node, ca)
    began = time.monotonic()
    documents = [
        d
        for d in yaml.safe_load_all(
            facade_policy_at(idp.issuer, issuer=ORIGIN, resource=RESOURCE, extra_spec=RULES, name=POLICY)
        )
        if d
    ]
    for document in documents:
        document["metadata"]["namespace"] = APPS
        document["metadata"].pop("uid", None)  # the apiserver's
    remember_secret(UPSTREAM_CLIENT.client_secret)
    apply_policy(node, documents, REPLICAS)
    figures["kubectl apply facade policy -> Ready, Synced 2/2"] = f"{time.monotonic() - began:.1f}s"
    node.wait_available(APPS, "mcp-server")
    eventually(lambda: challenge_status(ca) == 401, timeout=60, what="Traefik routes /mcp through authgate")
    # The operator creates the sealing-key Secret after the install; kubelet puts it in the
    # running pods' volume at its next sync of them (up to about a minute later). Until
    # then a replica's facade answers registrations 503: wait for every replica.
    began = time.monotonic()
    eventually(
        lambda: all(registration_status(ca) == 201 for _ in range(3 * REPLICAS)),
        timeout=180,
        what="every service pod has the operator's sealing keys (the facade registers clients)",
    )
    figures["sealing keys in every service pod"] = f"{time.monotonic() - began:.1f}s"
    return node


def registration_status(ca: TestCA) -> int:
    """A dynamic client registration (RFC 7591) at the facade, through Traefik."""
    metadata = {
        "client_name": "readiness probe",
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    with httpx.Client(verify=ca.ssl_context(), timeout=10, trust_env=False) as client:
        response = client.post(
            f"https://{NODE_IP}:{TRAEFIK_NODE_PORT}/oauth2/register",
            json=metadata,
            headers={"Host": f"{HOST}:{TRAEFIK_NODE_PORT}"},
            extensions={"sni_hostname": HOST},
        )
    return response.status_code


def challenge_status(ca: TestCA) -> int:
    with httpx.Client(verify=ca.ssl_context(), timeout=10, trust_env=False) as client:
        response = client.post(
            f"https://{NODE_IP}:{TRAEFIK_NODE_PORT}/mcp",
            json={},
            headers={"Host": f"{HOST}:{TRAEFIK_NODE_PORT}"},
            extensions={"sni_hostname": HOST},
        )
    return response.status_code


@pytest.fixture
async def browser(system: NodeCluster, idp: PodIdp, ca: TestCA, tmp_path: Path) -> AsyncIterator[Any]:
    require_tool(browser_problem())
    resolve = {**RESOLVE, **idp.resolve}  # --host-resolver-rules: both names, no cluster DNS on the host
    async with async_chromium_page(trust_ca=ca.ca_path, resolve=resolve, artifacts_dir=tmp_path) as page:
        yield page


def mcp_server_requests(node: NodeCluster) -> int:
    """The MCP requests the MCP server pod has answered (uvicorn's access log lines)."""
    logs = node.kubectl("logs", "-n", APPS, "deploy/mcp-server", check=False).stdout
    return sum(1 for line in logs.splitlines() if '"POST /mcp HTTP/1.1"' in line)


def pods_logs(node: NodeCluster) -> dict[str, str]:
    pods = node.get_json("pods", "-n", AUTHGATE_NAMESPACE)["items"]
    names = [p["metadata"]["name"] for p in pods]
    return {name: node.kubectl("logs", "-n", AUTHGATE_NAMESPACE, name, check=False).stdout for name in names}


# -- tests ------------------------------------------------------------------------------


async def test_mcp_sdk_logs_in_through_the_facade_with_every_server_part_a_pod(
    system: NodeCluster, idp: PodIdp, ca: TestCA, browser: Any, tmp_path: Path
) -> None:
    context = ca.ssl_context()
    user = User(browser, tmp_path / "consent.png")
    began = time.monotonic()
    with LoopbackCallback() as callback:
        login = await oauth_login(
            RESOURCE,
            verify=context,
            resolve=RESOLVE,
            redirect_handler=functools.partial(user.allow, redirect_uri=callback.redirect_uri),
            callback=callback,
            client_name=CLIENT_NAME,
            time_limit=90,
        )
    figures["MCP login through the facade (SDK + Chromium)"] = f"{time.monotonic() - began:.1f}s"
    assert login.tokens is not None and login.client_info is not None and login.callback is not None
    access_token = login.tokens.access_token
    remember(access_token, login.tokens.refresh_token, login.callback.code)

    # The MCP server pod answered through Traefik once the SDK held the facade's token.
    assert {"echo", "whoami"} <= set(login.tool_names)
    assert login.echo_text == "hello through authgate"

    # Everything discovered from the 401, in order, all through Traefik.
    assert_discovered_in_order(login.requests, f"{HOST}:{TRAEFIK_NODE_PORT}")
    assert login.callback.iss == ORIGIN  # RFC 9207: the facade is the issuer

    # The user's side: consent named the client and the resource; Allow led through the IdP
    # pod's login to the facade's callback and on to the client's loopback listener.
    assert CLIENT_NAME in user.consent_text and RESOURCE in user.consent_text
    steps = user.navigations
    assert steps[:2] == [("GET", f"{ORIGIN}/oauth2/authorize", 200), ("POST", f"{ORIGIN}/oauth2/authorize", 303)]
    assert steps[-2:] == [("GET", f"{ORIGIN}/oauth2/callback", 302), ("GET", callback.redirect_uri, 200)], steps
    upstream = steps[2:-2]
    assert upstream and all(url.startswith(f"{idp.issuer}/") for _, url, _ in upstream), steps

    # The access token is the IdP pod's JWT for the MCP resource, for alice.
    claims = json_part(access_token, 1)
    assert (claims["aud"], claims["iss"], claims["sub"]) == (RESOURCE, idp.issuer, "alice")

    # Another session with that token: Traefik put authgate's identity on the request.
    whoami, echoed = await mcp_session(RESOURCE, access_token, context, RESOLVE)
    assert whoami["subject"] == "alice"
    assert "mcp:read" in (whoami["scopes"] or "").split()
    assert echoed == {"result": "again"}


async def test_a_tool_call_without_a_token_or_with_a_forged_one_never_reaches_the_server(
    system: NodeCluster, idp: PodIdp, ca: TestCA
) -> None:
    context = ca.ssl_context()
    valid = idp.client_credentials_token(
        SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, resource=RESOURCE, scope="mcp:read"
    )
    attacker = forged(valid, sub="mallory", scope="mcp:read mcp:write")  # the IdP's signature kept
    remember(valid, attacker)
    served = mcp_server_requests(system)

    anonymous = await raw_tool_call(RESOURCE, context, RESOLVE, bearer=None)
    assert anonymous.status_code == 401
    metadata = f'resource_metadata="{ORIGIN}/.well-known/oauth-protected-resource/mcp"'
    assert anonymous.headers["www-authenticate"] == (
        f'Bearer scope="mcp:read", {metadata}, '
        f'DPoP algs="{" ".join(sorted(ASYMMETRIC_ALGORITHMS))}", scope="mcp:read", {metadata}'
    )
    refused = await raw_tool_call(RESOURCE, context, RESOLVE, bearer=attacker)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    # The SDK's own session with the forged token: its first request is refused, no tool runs.
    seen: list[SeenRequest] = []
    with pytest.raises(Exception):  # the SDK's MCPError in anyio task groups: the status is below
        await mcp_session(RESOURCE, attacker, context, RESOLVE, seen=seen)
    # It tries server/discover, then initialize: both refused at Traefik.
    assert seen and {(r.method, urlsplit(r.url).path, r.status) for r in seen} == {("POST", "/mcp", 401)}, seen
    assert mcp_server_requests(system) == served, "a refused call reached the MCP server"

    # The genuine token, in the SDK's own session, passes: the refusals were about the token.
    whoami, _ = await mcp_session(RESOURCE, valid, context, RESOLVE)
    assert whoami["subject"] == SERVICE_CLIENT.client_id
    assert mcp_server_requests(system) > served


def test_a_replacement_service_pod_loads_the_bootstrap_secret_without_the_operator(
    system: NodeCluster, idp: PodIdp
) -> None:
    """The operator scaled to 0, a service pod deleted: its replacement turns Ready on the
    snapshot Secret the chart mounts (no push reached it: its push counter is empty), at the
    Secret's generation, and enforces the policy, fetching the IdP's keys itself."""
    node = system
    secret = node.get_json("secret", "authgate-snapshot", "-n", AUTHGATE_NAMESPACE)
    document = json.loads(gzip.decompress(base64.b64decode(secret["data"]["snapshot.json.gz"])))
    assert [p["metadata"]["name"] for p in document["policies"]] == [POLICY]
    node.kubectl("scale", "deployment/authgate-operator", "-n", AUTHGATE_NAMESPACE, "--replicas=0")
    try:
        eventually(
            lambda: (
                not node.get_json("pods", "-n", AUTHGATE_NAMESPACE, "-l", "app.kubernetes.io/component=operator")[
                    "items"
                ]
            ),
            timeout=90,
            what="the operator pod gone",
        )
        before = {p["metadata"]["name"] for p in service_pods(node)}
        victim = sorted(before)[0]
        began = time.monotonic()
        node.kubectl("delete", "pod", victim, "-n", AUTHGATE_NAMESPACE, "--wait=false")
        eventually(
            lambda: (
                victim not in {p["metadata"]["name"] for p in service_pods(node)}
                and node.deployment_available(AUTHGATE_NAMESPACE, "authgate")
            ),
            timeout=180,
            what="a replacement service pod Ready with the operator down",
        )
        figures["replacement pod Ready from the bootstrap Secret (operator at 0)"] = f"{time.monotonic() - began:.1f}s"
        fresh = next(p for p in service_pods(node) if p["metadata"]["name"] not in before)
        address = fresh["status"]["podIP"]
        ready = httpx.get(f"http://{address}:8081/readyz", timeout=5, trust_env=False).json()
        assert ready == {"status": "ready", "generation": document["generation"]}
        pushes = httpx.get(f"http://{address}:9090/metrics", timeout=5, trust_env=False).text
        assert not [line for line in pushes.splitlines() if line.startswith("authgate_snapshot_pushes_total{")], pushes
        log = node.kubectl("logs", "-n", AUTHGATE_NAMESPACE, fresh["metadata"]["name"]).stdout
        assert '"snapshot loaded"' in log

        # It enforces the policy: the Traefik check of a tools/call, straight at its check port.
        token = idp.client_credentials_token(
            SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, resource=RESOURCE, scope="mcp:read"
        )
        remember(token)
        check = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": f"{HOST}:{TRAEFIK_NODE_PORT}",
            "X-Forwarded-Uri": "/mcp",
            "X-Forwarded-Method": "POST",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "whoami",
        }
        url = f"http://{address}:8082/ext-authz/traefik"
        with httpx.Client(timeout=10, trust_env=False) as client:
            allowed = client.get(url, headers={**check, "Authorization": f"Bearer {token}"})
            denied = client.get(url, headers=check)
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["x-auth-subject"] == SERVICE_CLIENT.client_id
        assert denied.status_code == 401
    finally:
        node.kubectl("scale", "deployment/authgate-operator", "-n", AUTHGATE_NAMESPACE, "--replicas=1")
    node.wait_available(AUTHGATE_NAMESPACE, "authgate-operator")


def test_no_token_or_secret_in_the_authgate_pods_logs(system: NodeCluster) -> None:
    logs = pods_logs(system)
    assert logs
    for name, text in logs.items():
        assert_clean_log(text, f"pod {name}")
