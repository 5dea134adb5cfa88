"""SSRF corpus: every outbound URL a policy names, pointed at loopback in every disguise,
against the real server with no egress allowance. A listener on those addresses records
every connection: none may be made, and the check answers 503 (the keys cannot be had),
never 401 (which would restart a client's login) and never 200. Forms the strict URL
parser refuses never load as a policy at all. Other reserved ranges are proven through the
screening function in-process (tests/unit/test_egress.py): no packet is ever sent to them.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest
import yaml
from tests.infra.keys import SigningKey, claims
from tests.support.authgate import AUTHGATE, Authgate
from tests.support.leaks import assert_clean_log, remember_secret

INTROSPECTION_SECRET = "ssrf-introspection-secret-value"


class RecordingListener:
    """Accepts on 127.0.0.1 and [::1] at one port; counts connections, answers nothing."""

    def __init__(self) -> None:
        self.v4 = socket.create_server(("127.0.0.1", 0))
        self.port = self.v4.getsockname()[1]
        self.v6 = socket.create_server(("::1", self.port), family=socket.AF_INET6)
        self.connections = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True) for s in (self.v4, self.v6)]
        for thread in self._threads:
            thread.start()

    def _accept(self, server: socket.socket) -> None:
        server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        for server in (self.v4, self.v6):
            server.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[RecordingListener]:
    recording = RecordingListener()
    yield recording
    recording.close()


def loopback_disguises(port: int) -> dict[str, str]:
    """Origins that parse as URLs and all reach the listener if nothing screens them."""
    return {
        "ipv4": f"https://127.0.0.1:{port}",
        "name": f"https://localhost:{port}",
        "name_trailing_dot": f"https://localhost.:{port}",
        "ipv6": f"https://[::1]:{port}",
        "ipv6_long": f"https://[0:0:0:0:0:0:0:1]:{port}",
        "ipv4_mapped": f"https://[::ffff:127.0.0.1]:{port}",
        "ipv4_mapped_hex": f"https://[::ffff:7f00:1]:{port}",
        "ipv4_translated": f"https://[::ffff:0:7f00:1]:{port}",
        "nat64": f"https://[64:ff9b::7f00:1]:{port}",
        "6to4": f"https://[2002:7f00:1::]:{port}",
        "ipv4_compatible": f"https://[::127.0.0.1]:{port}",
    }


def _policy(name: str, host: str, issuer: dict) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"resource": f"https://{host}/mcp", "issuers": [issuer]},
    }


def _secret() -> dict:
    metadata = {"name": "introspect", "namespace": "default"}
    remember_secret(INTROSPECTION_SECRET)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": {"secret": INTROSPECTION_SECRET}}


CASES = ["issuer", "jwks_uri", "introspection"]  # which outbound URL is the disguise


def _documents(port: int) -> list[dict]:
    documents: list[dict] = [_secret()]
    for kind in CASES:
        for disguise, origin in loopback_disguises(port).items():
            name = f"{kind.replace('_', '-')}-{disguise.replace('_', '-')}"
            if kind == "issuer":
                issuer = {"issuer": f"{origin}/realm"}
            elif kind == "jwks_uri":
                issuer = {"issuer": "https://idp.example.com", "jwksUri": f"{origin}/jwks"}
            else:
                issuer = {
                    "issuer": "https://idp.example.com",
                    "introspection": {
                        "endpoint": f"{origin}/introspect",
                        "clientId": "authgate",
                        "clientSecretRef": {"name": "introspect", "key": "secret"},
                    },
                }
            documents.append(_policy(name, f"{name}.example.com", issuer))
    return documents


@pytest.fixture(scope="module")
def service(tmp_path_factory, listener) -> Iterator[Authgate]:
    text = yaml.safe_dump_all(_documents(listener.port))
    instance = Authgate(tmp_path_factory.mktemp("ssrf"), text, []).start()  # no --egress-allow, https only
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the SSRF service log")


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("disguise", sorted(loopback_disguises(1)))
def test_loopback_in_disguise_is_never_reached(service, listener, kind, disguise):
    name = f"{kind.replace('_', '-')}-{disguise.replace('_', '-')}"
    origin = loopback_disguises(listener.port)[disguise]
    key = SigningKey.generate("ES256")
    issuer = f"{origin}/realm" if kind == "issuer" else "https://idp.example.com"
    token = (
        "opaque-token-value" if kind == "introspection" else key.sign(claims(issuer, f"https://{name}.example.com/mcp"))
    )
    before = listener.connections
    response = httpx.get(
        service.check_url("nginx"),
        headers={
            "X-Original-URL": f"https://{name}.example.com/mcp",
            "X-Original-Method": "GET",
            "Authorization": f"Bearer {token}",
        },
        timeout=30,
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert listener.connections == before, "authgate connected to a loopback address"


@pytest.mark.parametrize(
    "origin", ["https://127.1", "https://2130706433", "https://0x7f.0.0.1", "https://0177.0.0.1", "https://127.000.0.1"]
)
def test_numeric_loopback_forms_never_load_as_a_policy(tmp_path, origin):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(_policy("p", "p.example.com", {"issuer": f"{origin}/realm"})))
    result = subprocess.run([AUTHGATE, "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "spec.issuers[0].issuer" in result.stderr and "dotted-quad" in result.stderr


def test_the_listener_does_record_a_connection_that_egress_allows(tmp_path, listener):
    """The control: with 127.0.0.1 allowed, the same request reaches the listener (so the
    zero counts above mean screening, not a listener that records nothing)."""
    document = _policy("allowed", "allowed.example.com", {"issuer": f"https://127.0.0.1:{listener.port}/realm"})
    before = listener.connections  # (the key prefetch at start, or the check's own fetch, connects)
    instance = Authgate(tmp_path, yaml.safe_dump(document), ["--egress-allow", "127.0.0.1"]).start()
    try:
        token = SigningKey.generate("ES256").sign(
            claims(f"https://127.0.0.1:{listener.port}/realm", "https://allowed.example.com/mcp")
        )
        response = httpx.get(
            instance.check_url("nginx"),
            headers={
                "X-Original-URL": "https://allowed.example.com/mcp",
                "Authorization": f"Bearer {token}",
                "X-Original-Method": "GET",
            },
            timeout=30,
        )
        assert response.status_code == 503
        assert listener.connections > before
    finally:
        instance.stop()


# -- the facade's upstream and client metadata documents, and token exchange ------------------
# These need a working issuer (the tests' own, on 127.0.0.1, allowed exactly), so their
# disguises are the IPv6 forms of loopback that the allowance does not cover.
IPV6_LOOPBACK = {"ipv6": "https://[::1]:{port}", "ipv6_long": "https://[0:0:0:0:0:0:0:1]:{port}"}


@pytest.mark.parametrize("disguise", sorted(IPV6_LOOPBACK))
def test_facade_upstream_and_client_documents_at_loopback_are_never_reached(tmp_path, listener, issuer, disguise):
    from tests.support.facade import FACADE_ISSUER, FacadeHarness, facade_policy_at, sealing_keys_file

    origin = IPV6_LOOPBACK[disguise].format(port=listener.port)
    upstream = f"{origin}/realm"
    policy = facade_policy_at(upstream, issuer=FACADE_ISSUER, resource=f"{FACADE_ISSUER}/mcp")
    policy = policy.replace(
        f"    - issuer: {upstream}\n", f"    - issuer: {upstream}\n    - issuer: {issuer.issuer}\n", 1
    )
    keys = sealing_keys_file(tmp_path / "keys.json")
    args = ["--insecure-http", "--egress-allow", "127.0.0.1/32", "--sealing-keys", str(keys)]
    instance = Authgate(tmp_path, policy, args).start()
    harness = FacadeHarness(instance.port, None)  # no upstream is ever reached here
    try:
        before = listener.connections
        client = harness.register()
        params, _, _ = harness.authorize_params(client)
        authorize = harness.request("GET", f"{FACADE_ISSUER}/oauth2/authorize", params=params)
        assert authorize.status_code in (302, 303, 503), authorize.text[:300]
        if authorize.status_code != 503:
            assert "error=temporarily_unavailable" in authorize.headers["location"]
        document = {**params, "client_id": f"{origin}/client.json"}
        shown = harness.request("GET", f"{FACADE_ISSUER}/oauth2/authorize", params=document)
        assert shown.status_code == 400 and "cannot sign in" in shown.text
        assert listener.connections == before, "authgate connected to a loopback address"
    finally:
        harness.close()
        instance.stop()


@pytest.mark.parametrize("disguise", sorted(IPV6_LOOPBACK))
def test_token_exchange_at_loopback_is_never_reached(tmp_path, listener, issuer, mint, disguise):
    origin = IPV6_LOOPBACK[disguise].format(port=listener.port)
    document = _policy("exchange", "exchange.example.com", {"issuer": issuer.issuer})
    document["spec"]["tokenExchange"] = {
        "tokenEndpoint": f"{origin}/token",
        "clientId": "gateway",
        "clientSecretRef": {"name": "introspect", "key": "secret"},
        "audience": "https://api.internal.example.com",
    }
    text = yaml.safe_dump_all([_secret(), document])
    instance = Authgate(tmp_path, text, ["--insecure-http", "--egress-allow", "127.0.0.1/32"]).start()
    try:
        before = listener.connections
        token = mint(audience="https://exchange.example.com/mcp")
        response = httpx.get(
            instance.check_url("nginx"),
            headers={
                "X-Original-URL": "https://exchange.example.com/mcp",
                "X-Original-Method": "GET",
                "Authorization": f"Bearer {token}",
            },
            timeout=30,
        )
        assert response.status_code == 503 and response.json()["error"] == "temporarily_unavailable"
        assert listener.connections == before, "authgate connected to a loopback address"
    finally:
        instance.stop()
