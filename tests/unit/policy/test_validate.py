"""Semantic validation of one policy: precise messages, section by section."""

import pytest
from tests.unit.policy.documents import BASE, STRICT, issues_of, write

from authgate.policy import ValidationSettings, compile_files


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (BASE.replace("https://idp.example.com", "http://idp.example.com"), "spec.issuers[0].issuer", "https"),
        (BASE + "      jwksUri: http://idp.example.com/keys\n", "spec.issuers[0].jwksUri", "https"),
        (BASE.replace("https://mcp.example.com/mcp", "https://mcp.example.com/mcp#x"), "spec.resource", "fragment"),
        (BASE + "      algorithms: [HS256]\n", "spec.issuers[0].algorithms[0]", "Input should be"),
        (BASE + "      algorithms: [none]\n", "spec.issuers[0].algorithms[0]", "Input should be"),
        (BASE + "  hosts: ['*.example.com']\n", "spec.hosts[0]", "invalid host"),
        (BASE + "  rules: [{pathPrefix: /other}]\n", "spec.rules[0].pathPrefix", "can never match"),
        (BASE + "  rules: [{pathPrefix: /mcp/../x}]\n", "spec.rules[0].pathPrefix", "normalized form"),
        (
            BASE + "  rules: [{pathPrefix: /mcp, anonymous: true, requireScopes: [a]}]\n",
            "spec.rules[0].anonymous",
            "cannot require",
        ),
        (BASE + "  identityHeaders: {subject: Authorization}\n", "spec.identityHeaders.subject", "cannot be used"),
        (BASE + "  identityHeaders: {subject: X-A, roles: x-a}\n", "spec.identityHeaders.roles", "used twice"),
        (BASE + "  scopeRoles: [{scope: a, role: r}, {scope: a, role: s}]\n", "spec.scopeRoles[1].scope", "twice"),
        (
            BASE + "  facade: {upstream: {issuer: https://other.example.com, clientId: c}}\n",
            "spec.facade.upstream.issuer",
            "must be one of spec.issuers",
        ),
        (
            BASE + "  tokenExchange: {tokenEndpoint: https://idp.example.com/token, clientId: c,"
            " clientSecretRef: {name: missing, key: secret}}\n",
            "spec.tokenExchange.clientSecretRef",
            "not found",
        ),
        (
            BASE + "  tokenExchange: {tokenEndpoint: https://idp.example.com/token, clientId: c}\n",
            "spec.tokenExchange",
            "exactly one of clientSecretRef",
        ),
    ],
)
def test_semantic_errors_are_precise(tmp_path, text, field, message):
    problems = issues_of(tmp_path, text)
    assert any(f": {field}: " in p and message in p for p in problems), problems


def test_http_urls_need_insecure_http(tmp_path):
    text = BASE.replace("https://idp.example.com", "http://idp.example.com")
    assert compile_files([write(tmp_path, text)], ValidationSettings(insecure_http=True)).policies


@pytest.mark.parametrize(
    "rules",
    [
        "[{pathPrefix: /mcp}, {pathPrefix: /mcp/tools, requireRoles: [admin]}]",
        "[{pathPrefix: /mcp, methods: [GET, POST]}, {pathPrefix: /mcp, methods: [post]}]",
        "[{pathPrefix: /mcp, mcpMethods: [tools/call]},"
        " {pathPrefix: /mcp/x, mcpMethods: [tools/call], methods: [POST]}]",
        "[{pathPrefix: /mcp, mcpNames: ['admin_*']}, {pathPrefix: /mcp, mcpNames: [admin_reset]}]",
    ],
)
def test_shadowed_rules_are_errors(tmp_path, rules):
    problems = issues_of(tmp_path, BASE + f"  rules: {rules}\n")
    assert any("spec.rules[1]: shadowed by spec.rules[0]" in p for p in problems), problems


@pytest.mark.parametrize(
    "rules",
    [
        "[{pathPrefix: /mcp/tools, requireRoles: [admin]}, {pathPrefix: /mcp}]",
        "[{pathPrefix: /mcp, methods: [GET]}, {pathPrefix: /mcp, methods: [POST]}]",
        "[{pathPrefix: /mcp, mcpMethods: [tools/call]}, {pathPrefix: /mcp}]",
        "[{pathPrefix: /mcp, mcpNames: [admin_reset]}, {pathPrefix: /mcp, mcpNames: ['admin_*']}]",
    ],
)
def test_reachable_rules_are_fine(tmp_path, rules):
    assert compile_files([write(tmp_path, BASE + f"  rules: {rules}\n")], STRICT).policies


def test_secrets_resolve_in_the_policy_namespace_only(tmp_path):
    exchange = (
        "  tokenExchange: {tokenEndpoint: https://idp.example.com/token, clientId: c,"
        " clientSecretRef: {name: exchange, key: secret}}\n"
    )
    secret = (
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: exchange, namespace: NS}\nstringData: {secret: s3cr3t}\n"
    )
    assert compile_files([write(tmp_path, BASE + exchange + secret.replace("NS", "apps"))], STRICT).policies
    problems = issues_of(tmp_path, BASE + exchange + secret.replace("NS", "other"))
    assert any("Secret apps/exchange not found" in p for p in problems)
