"""The whole facade flow against the real oidc-provider, and the token it yields
working at the check endpoint."""

from __future__ import annotations

from tests.support.facade import FACADE_RESOURCE, FacadeHarness


def test_a_registered_client_logs_in_and_its_token_passes_the_check(facade: FacadeHarness) -> None:
    client = facade.register()
    tokens = facade.login(client)
    assert tokens["token_type"] == "Bearer"
    assert "id_token" not in tokens
    assert tokens["scope"] == "mcp:read"
    check = facade.authgate.nginx_check(FACADE_RESOURCE, "POST", token=tokens["access_token"])
    assert check.status_code == 200, check.text
    assert check.headers["x-auth-subject"] == "alice"
