"""The test control plane and the network-namespace test hosts work, for real.

- kube-apiserver (Go-built at the pinned version, on etcd) is ready and says its version.
- Service-account tokens: a TokenRequest token with a custom audience passes TokenReview
  for that audience and fails for another, and verifies offline with the cluster's
  service-account key (what the auth service may do to check the operator's token).
- EndpointSlices: a netns host's address is accepted, 127.0.0.1 is refused (why the
  test hosts exist at all).
- Network namespaces: a server in one is reachable from the host, and a process in one
  reaches the apiserver at 10.200.0.1 over TLS (with the cluster CA), raw and with kubectl.
- The python client (kubernetes_asyncio, what the operator uses) works with the kubeconfig.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from jwcrypto import jwk, jwt
from tests.infra.cluster import (
    API_ADDRESS,
    SERVICE_ACCOUNT_ISSUER,
    Cluster,
    KubectlError,
    decode_jwt_claims,
)
from tests.infra.netns import NetnsHost
from tests.infra.ports import free_port
from tests.infra.processes import TcpPort
from tests.infra.tools import tool_version

pytestmark = pytest.mark.integration


def endpoint_slice(name: str, address: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "authgate"}},
            "addressType": "IPv4",
            "ports": [{"name": "admin", "protocol": "TCP", "port": 8081}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        }
    )


def test_apiserver_is_ready(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_kubectl_and_apiserver_are_the_pinned_version(cluster: Cluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == tool_version("kubectl")
    assert versions["serverVersion"]["gitVersion"] == tool_version("kube-apiserver")


def test_token_request_passes_token_review_only_for_its_audience(cluster: Cluster, namespace: str) -> None:
    audience = "https://authgate-admin.test"
    cluster.create_service_account(namespace, "operator")
    token = cluster.create_token(namespace, "operator", audiences=[audience])

    claims = decode_jwt_claims(token)
    assert claims["iss"] == SERVICE_ACCOUNT_ISSUER
    assert claims["aud"] == [audience]
    assert claims["sub"] == f"system:serviceaccount:{namespace}:operator"

    accepted = cluster.token_review(token, audiences=[audience])
    assert accepted["authenticated"] is True, accepted
    assert accepted["user"]["username"] == f"system:serviceaccount:{namespace}:operator"
    assert accepted["audiences"] == [audience]

    refused = cluster.token_review(token, audiences=["https://someone-else.test"])
    assert not refused.get("authenticated"), refused
    assert refused.get("error"), refused

    # No audience named: the API's own audiences (the issuer), which this token lacks.
    assert not cluster.token_review(token).get("authenticated")


def test_service_account_token_verifies_offline_with_the_cluster_key(cluster: Cluster, namespace: str) -> None:
    cluster.create_service_account(namespace, "operator")
    token = cluster.create_token(namespace, "operator", audiences=["authgate"])
    key = jwk.JWK.from_pem(cluster.sa_public_key.read_bytes())
    verified = jwt.JWT(jwt=token, key=key, algs=["RS256"], expected_type="JWS")
    assert json.loads(verified.claims)["aud"] == ["authgate"]


def test_endpoint_slice_takes_a_netns_address_but_not_loopback(
    cluster: Cluster, namespace: str, netns_host: Callable[..., NetnsHost]
) -> None:
    host = netns_host("smoke-eps")
    assert host.address.startswith("10.200.") and host.address.endswith(".2")
    cluster.apply(endpoint_slice("authgate-netns", host.address), namespace=namespace)
    stored = cluster.get_json("endpointslice", "authgate-netns", "-n", namespace)
    assert stored["endpoints"][0]["addresses"] == [host.address]

    with pytest.raises(KubectlError) as refused:
        cluster.apply(endpoint_slice("authgate-loopback", "127.0.0.1"), namespace=namespace)
    assert "loopback" in refused.value.result.stderr, refused.value.result.stderr


def test_server_in_a_netns_host_is_reachable_from_the_host(
    netns_host: Callable[..., NetnsHost], tmp_path: Path
) -> None:
    host = netns_host("smoke-web")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello from the namespace\n")
    port = free_port()
    host.run(
        [sys.executable, "-m", "http.server", "--bind", host.address, "--directory", tmp_path / "www", str(port)],
        tmp_path,
        name="http-server",
        ready=TcpPort(port, host.address),
        timeout=15,
    )
    response = httpx.get(f"http://{host.address}:{port}/hello.txt", trust_env=False, timeout=5)
    assert response.status_code == 200
    assert response.text == "hello from the namespace\n"
    # Bound to the namespace's address only: the host's loopback has nothing there.
    assert not host.can_connect("127.0.0.1", port, timeout=1)


def test_netns_host_reaches_the_apiserver(cluster: Cluster, netns_host: Callable[..., NetnsHost]) -> None:
    host = netns_host("smoke-api")
    assert host.can_connect(API_ADDRESS, cluster.port)
    fetch = (
        "import ssl, sys, urllib.request\n"
        "context = ssl.create_default_context(cafile=sys.argv[2])\n"
        "print(urllib.request.urlopen(sys.argv[1], context=context, timeout=5).read().decode())\n"
    )
    for server in (cluster.netns_server, f"https://kubernetes.default.svc:{cluster.port}"):
        result = host.exec([sys.executable, "-c", fetch, f"{server}/readyz", str(cluster.ca_path)])
        assert result.stdout.strip() == "ok", (server, result.stderr)
    # kubectl from inside, as an in-namespace operator would use it
    kubectl = cluster.control_plane.binary("kubectl")
    inside = host.exec([kubectl, f"--kubeconfig={cluster.netns_kubeconfig}", "get", "--raw", "/readyz"])
    assert inside.stdout.strip() == "ok"


async def test_python_client_reads_the_cluster(cluster: Cluster, namespace: str) -> None:
    from kubernetes_asyncio.client import CoreV1Api, DiscoveryV1Api, VersionApi

    cluster.apply(endpoint_slice("authgate-python", "10.200.254.2"), namespace=namespace)
    async with cluster.api_client() as api:
        assert (await VersionApi(api).get_code()).git_version == tool_version("kube-apiserver")
        assert (await CoreV1Api(api).read_namespace(namespace)).metadata.labels["authgate.dev/test"] == "true"
        slices = await DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=authgate"
        )
        assert [item.endpoints[0].addresses for item in slices.items] == [["10.200.254.2"]]
