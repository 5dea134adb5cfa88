"""The facade's upstream endpoints: configured, or from the shared discovery."""

import asyncio

import pytest

from authgate.errors import DiscoveryFailed, UpstreamUnavailable
from authgate.facade.upstream import Upstream
from authgate.policy.snapshot import CompiledUpstream

ISSUER = "https://idp.example.com"


class FakeDiscovery:
    def __init__(self, document: dict | None) -> None:
        self.document, self.asked = document, 0

    async def metadata(self, issuer: str) -> dict:
        self.asked += 1
        if self.document is None:
            raise DiscoveryFailed(issuer, "https://idp.example.com/.well-known/openid-configuration: egress_timeout")
        return self.document


def upstream(authorization: str | None = None, token: str | None = None) -> CompiledUpstream:
    return CompiledUpstream(ISSUER, authorization, token, None, None, "authgate", None, ("openid",))


def endpoints(discovery: FakeDiscovery, configured: CompiledUpstream):
    return asyncio.run(Upstream(egress=None, discovery=discovery).endpoints(configured))  # type: ignore[arg-type]


def test_endpoints_come_from_the_issuers_metadata():
    document = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": ISSUER + "/token",
        "revocation_endpoint": ISSUER + "/revoke",
        "authorization_response_iss_parameter_supported": True,
    }
    found = endpoints(FakeDiscovery(document), upstream())
    assert (found.authorization, found.token, found.introspection, found.revocation) == (
        ISSUER + "/auth",
        ISSUER + "/token",
        None,
        ISSUER + "/revoke",
    )
    assert found.iss_parameter is True


def test_configured_endpoints_need_no_discovery():
    discovery = FakeDiscovery(None)
    found = endpoints(discovery, upstream(ISSUER + "/a", ISSUER + "/t"))
    assert (found.authorization, found.token, found.iss_parameter) == (ISSUER + "/a", ISSUER + "/t", False)
    assert discovery.asked == 0


def test_failed_discovery_is_an_unavailable_upstream_that_names_no_url():
    with pytest.raises(UpstreamUnavailable) as raised:
        endpoints(FakeDiscovery(None), upstream())
    assert raised.value.reason == "the identity provider's metadata is unavailable"


def test_metadata_without_an_authorization_or_token_endpoint_is_an_unavailable_upstream():
    with pytest.raises(UpstreamUnavailable):
        endpoints(FakeDiscovery({"issuer": ISSUER, "token_endpoint": ISSUER + "/token"}), upstream())
