"""The Kubernetes manifests in examples/kubernetes/: schema-valid, and saying what the
runnable examples say.

- Every YAML there validates with `kubeconform -strict`, offline, against strict schemas
  generated from the pinned Kubernetes, Gateway API, Envoy Gateway, Istio and Traefik
  modules (tests/infra/schemas.py, hack/schemas/); Istio's `mesh` document against the
  MeshConfig of istio.io/api.
- Broken copies (a typo'd field in a SecurityPolicy, an AuthorizationPolicy, ObjectMeta,
  MeshConfig; an unknown kind) are refused, naming the field: the schemas are loaded and
  strict, not silently skipped.
- Header lists, ext-authz paths, timeouts and fail-closed settings match the configs the
  test-suite runs for real (examples/envoy/*.yaml, examples/traefik/dynamic.yml,
  examples/nginx/nginx.conf), parsed here; public OAuth paths are routed to authgate's
  public port without a check in every integration (each one's own matching rules
  simulated), hosts are named, and check ports are never route backends.

kubeconform cannot evaluate CEL rules, annotations or references between objects; the
last group of tests covers what matters of those by reading the manifests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.infra.schemas import (
    MESH_CONFIG_API_VERSION,
    MESH_CONFIG_KIND,
    kubeconform,
    report,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "examples" / "kubernetes"
INTEGRATIONS = ("envoy-gateway", "istio", "traefik", "ingress-nginx")
HOST = "mcp.example.com"

# What authgate reads from the original request (DESIGN.md), and the identity headers it
# sets on allow (policy defaults; Authorization too with token exchange).
READ_BY_AUTHGATE = {
    "authorization",
    "mcp-method",
    "mcp-name",
    "origin",
    "access-control-request-method",
    "x-request-id",
    "dpop",  # RFC 9449 proofs
}
IDENTITY = {"x-auth-subject", "x-auth-roles", "x-auth-scopes", "x-auth-issuer", "x-auth-client-id"}
IDENTITY_AND_TOKEN = IDENTITY | {"authorization"}

# Paths authgate-public serves, paths that belong to the app, and near misses.
PUBLIC_SAMPLES = [
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/oauth-authorization-server",
    "/.well-known/oauth-authorization-server/realms/demo",
    "/.well-known/openid-configuration",
    "/.well-known/openid-configuration/realms/demo",
    "/oauth2/authorize",
    "/oauth2/token",
    "/oauth2/register",
]
APP_SAMPLES = [
    "/",
    "/mcp",
    "/mcp/",
    "/mcp/health",
    "/oauth2x",
    "/.well-known/other",
    "/mcp/oauth2/token",
    "/x/.well-known/oauth-authorization-server",
]
EDGE_SAMPLES = [
    "/oauth2",
    "/oauth2/",
    "/.well-known/oauth-",
    "/.well-known/oauth-x",
    "/.well-known/openid-configurationx",
]


# --- reading manifests and examples ----------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents(integration: str | None = None) -> list[dict[str, Any]]:
    base = MANIFESTS / integration if integration else MANIFESTS
    found = []
    for path in sorted(p for p in base.rglob("*") if p.suffix in (".yaml", ".yml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                document["__file__"] = path.relative_to(MANIFESTS).as_posix()
                found.append(document)
    return found


def one(kind: str, integration: str, name: str | None = None, file: str | None = None) -> dict[str, Any]:
    matches = [
        d
        for d in documents(integration)
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (file is None or d["__file__"].endswith(file))
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''} in {integration}/{file or ''}, found {len(matches)}"
    return matches[0]


def lower(names: list[str]) -> set[str]:
    return {n.lower() for n in names}


def envoy_ext_authz(example: str) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "examples" / "envoy" / example).read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (ext_authz,) = [f for f in manager["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
    return ext_authz["typed_config"]


def patterns(matchers: dict[str, Any]) -> set[str]:
    assert all(p.get("ignore_case") for p in matchers["patterns"])
    return {p["exact"].lower() for p in matchers["patterns"]}


def envoy_public_prefixes(example: str) -> list[str]:
    config = yaml.safe_load((ROOT / "examples" / "envoy" / example).read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (host,) = [v for v in manager["route_config"]["virtual_hosts"] if HOST in v["domains"]]
    return [r["match"]["prefix"] for r in host["routes"] if r.get("route", {}).get("cluster") == "authgate_public"]


def traefik_example() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / "traefik" / "dynamic.yml").read_text())["http"]


def traefik_prefixes(rule: str) -> list[str]:
    return re.findall(r"PathPrefix\(`([^`]*)`\)", rule)


def nginx_example() -> str:
    return (ROOT / "examples" / "nginx" / "nginx.conf").read_text()


def nginx_public_prefixes() -> list[str]:
    blocks = re.findall(r"location \^~ (\S+) \{(.*?)\}", nginx_example(), re.S)
    return [prefix for prefix, body in blocks if "proxy_pass http://authgate_public" in body]


def nginx_identity_headers() -> set[str]:
    """Headers nginx.conf copies from authgate's answer to the app (proxy_set_header of an
    auth_request_set variable; Authorization goes through a map, see below)."""
    text = nginx_example()
    captured = dict(re.findall(r"auth_request_set \$(\w+) \$upstream_http_(\w+);", text))
    sent = re.findall(r"proxy_set_header ([\w-]+) \$(\w+);", text)
    return {name.lower() for name, variable in sent if variable in captured}


# --- kubeconform ------------------------------------------------------------------------


def validate(*paths: Path) -> tuple[int, list[dict[str, Any]], dict[str, int]]:
    result = kubeconform(paths)
    parsed = report(result)
    return result.returncode, parsed["resources"], parsed["summary"]


def problems(resources: list[dict[str, Any]]) -> list[str]:
    return [f"{r['filename']}: {r['kind']} {r['name']}: {r['msg']}" for r in resources if r["status"] != "statusValid"]


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_manifests_validate_strictly(integration: str) -> None:
    files = sorted(p for p in (MANIFESTS / integration).iterdir() if p.suffix in (".yaml", ".yml"))
    assert files and (MANIFESTS / integration / "README.md").is_file()
    code, resources, summary = validate(*files)
    assert not problems(resources), "\n".join(problems(resources))
    assert code == 0 and summary["invalid"] == summary["errors"] == summary["skipped"] == 0, summary
    # kubeconform saw every document of every file (nothing ignored as empty or unknown).
    expected = sum(1 for d in documents(integration) if d["__file__"].startswith(integration + "/"))
    assert len(resources) == expected == summary["valid"]
    assert {Path(r["filename"]).resolve() for r in resources} == set(files)


def test_every_manifest_is_covered() -> None:
    """No YAML outside the integration directories escapes the per-directory runs."""
    covered = {p for i in INTEGRATIONS for p in (MANIFESTS / i).iterdir() if p.suffix in (".yaml", ".yml")}
    assert set(manifest_files()) == covered


def test_istio_mesh_config_is_a_valid_meshconfig(tmp_path: Path) -> None:
    """istiod refuses a mesh config with an unknown field; kubeconform sees only a ConfigMap
    with a string in it. Check the string against istio.io/api's MeshConfig."""
    config_map = one("ConfigMap", "istio", "istio")
    assert config_map["metadata"]["namespace"] == "istio-system"
    mesh = yaml.safe_load(config_map["data"]["mesh"])
    good, bad = tmp_path / "mesh.yaml", tmp_path / "mesh-typo.yaml"
    wrapped = {"apiVersion": MESH_CONFIG_API_VERSION, "kind": MESH_CONFIG_KIND, **mesh}
    good.write_text(yaml.safe_dump(wrapped))
    code, resources, _ = validate(good)
    assert code == 0 and resources[0]["status"] == "statusValid", resources
    broken = copy.deepcopy(wrapped)
    http = next(p["envoyExtAuthzHttp"] for p in broken["extensionProviders"] if "envoyExtAuthzHttp" in p)
    http["includeRequestHeaderInCheck"] = http.pop("includeRequestHeadersInCheck")
    http["timeout"] = "500ms"  # protobuf Duration JSON is seconds only
    bad.write_text(yaml.safe_dump(broken))
    code, resources, _ = validate(bad)
    assert code != 0 and resources[0]["status"] == "statusInvalid"
    assert "includeRequestHeaderInCheck" in resources[0]["msg"] and "timeout" in resources[0]["msg"]


def rename_key(document: dict[str, Any], path: list[Any], old: str, new: str) -> None:
    node: Any = document
    for step in path:
        node = node[step]
    node[new] = node.pop(old)


BROKEN = [
    # (integration, kind, file, where, key, typo)
    (
        "envoy-gateway",
        "SecurityPolicy",
        "security-policy-grpc.yaml",
        ["spec", "extAuth"],
        "headersToExtAuth",
        "headerToExtAuth",
    ),
    ("envoy-gateway", "SecurityPolicy", "security-policy-http.yaml", ["spec", "extAuth"], "failOpen", "failopen"),
    (
        "istio",
        "AuthorizationPolicy",
        "authorization-policy.yaml",
        ["spec", "rules", 0, "to", 0, "operation"],
        "notPaths",
        "notPath",
    ),
    ("traefik", "Middleware", "middleware.yaml", ["spec", "forwardAuth"], "trustForwardHeader", "trustForwardHeaders"),
    ("traefik", "IngressRoute", "ingressroute.yaml", ["metadata"], "namespace", "namespce"),
    ("ingress-nginx", "Ingress", "ingress.yaml", ["spec", "rules", 0, "http", "paths", 0], "pathType", "pathtype"),
]


@pytest.mark.parametrize(
    ("integration", "kind", "file", "where", "old", "typo"), BROKEN, ids=[f"{b[1]}.{b[5]}" for b in BROKEN]
)
def test_a_typo_is_refused(
    tmp_path: Path, integration: str, kind: str, file: str, where: list[Any], old: str, typo: str
) -> None:
    original = one(kind, integration, file=file)
    original.pop("__file__")
    broken = copy.deepcopy(original)
    rename_key(broken, where, old, typo)
    (tmp_path / "original.yaml").write_text(yaml.safe_dump(original, sort_keys=False))
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))
    code, resources, summary = validate(tmp_path / "original.yaml", tmp_path / "broken.yaml")
    status = {Path(r["filename"]).name: r for r in resources}
    assert status["original.yaml"]["status"] == "statusValid", status["original.yaml"]["msg"]
    assert status["broken.yaml"]["status"] == "statusInvalid", status["broken.yaml"]
    assert f"'{typo}' not allowed" in status["broken.yaml"]["msg"], status["broken.yaml"]["msg"]
    assert code != 0 and summary["invalid"] == 1


def test_an_unknown_kind_is_an_error_not_a_skip(tmp_path: Path) -> None:
    policy = one("SecurityPolicy", "envoy-gateway", file="security-policy-grpc.yaml")
    policy.pop("__file__")
    policy["kind"] = "SecurityPolicies"
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(policy))
    code, resources, summary = validate(tmp_path / "unknown.yaml")
    assert code != 0 and summary["errors"] == 1 and summary["skipped"] == 0
    assert "could not find schema" in resources[0]["msg"]


def test_policy_examples_validate_against_our_crd() -> None:
    """examples/policies against crds/ (converted per run), once the CRD exists."""
    if not any((ROOT / "crds").glob("*.y*ml")):
        pytest.skip("crds/ has no CustomResourceDefinition yet")
    files = sorted((ROOT / "examples" / "policies").glob("*.y*ml"))
    code, resources, _ = validate(*files)
    assert code == 0 and not problems(resources), "\n".join(problems(resources))


# --- the runnable examples agree with DESIGN.md (so comparing against them means something)


def test_runnable_examples_send_and_copy_what_authgate_uses() -> None:
    grpc, http = envoy_ext_authz("envoy-grpc.yaml"), envoy_ext_authz("envoy-http.yaml")
    assert patterns(grpc["allowed_headers"]) == READ_BY_AUTHGATE
    # plus what each dialect carries the client certificate in (RFC 8705)
    assert patterns(http["allowed_headers"]) == READ_BY_AUTHGATE | {"x-forwarded-proto", "x-forwarded-client-cert"}
    assert patterns(http["http_service"]["authorization_response"]["allowed_upstream_headers"]) == IDENTITY_AND_TOKEN
    forward = traefik_example()["middlewares"]["authgate"]["forwardAuth"]
    assert lower(forward["authRequestHeaders"]) == READ_BY_AUTHGATE | {"x-forwarded-tls-client-cert"}
    assert lower(forward["authResponseHeaders"]) == IDENTITY
    assert nginx_identity_headers() == IDENTITY
    # Authorization: authgate's (exchanged) token when it sends one, else the caller's.
    assert "proxy_set_header Authorization $authgate_upstream_authorization;" in nginx_example()
    assert "auth_request_set $authgate_authorization $upstream_http_authorization;" in nginx_example()


# --- the manifests say what the runnable examples say ---------------------------------


def test_envoy_gateway_grpc_matches_envoy_grpc_example() -> None:
    example = envoy_ext_authz("envoy-grpc.yaml")
    ext_auth = one("SecurityPolicy", "envoy-gateway", file="security-policy-grpc.yaml")["spec"]["extAuth"]
    assert lower(ext_auth["headersToExtAuth"]) == patterns(example["allowed_headers"])
    assert lower(ext_auth["headersToExtAuth"]) >= READ_BY_AUTHGATE
    assert ext_auth["timeout"] == example["grpc_service"]["timeout"]
    assert ext_auth["failOpen"] is example["failure_mode_allow"] is False
    assert ext_auth["statusOnError"] == 503 and example["status_on_error"]["code"] == "ServiceUnavailable"
    (backend,) = ext_auth["grpc"]["backendRefs"]
    assert (backend["name"], backend["namespace"], backend["port"]) == ("authgate-grpc", "authgate", 9001)


def test_envoy_gateway_http_matches_envoy_http_example() -> None:
    example = envoy_ext_authz("envoy-http.yaml")
    ext_auth = one("SecurityPolicy", "envoy-gateway", file="security-policy-http.yaml")["spec"]["extAuth"]
    assert lower(ext_auth["headersToExtAuth"]) == patterns(example["allowed_headers"])
    assert lower(ext_auth["headersToExtAuth"]) >= READ_BY_AUTHGATE
    response = example["http_service"]["authorization_response"]
    assert lower(ext_auth["http"]["headersToBackend"]) == patterns(response["allowed_upstream_headers"])
    assert ext_auth["http"]["path"] == example["http_service"]["path_prefix"] == "/ext-authz/envoy"
    assert ext_auth["timeout"] == example["http_service"]["server_uri"]["timeout"]
    assert ext_auth["failOpen"] is example["failure_mode_allow"] is False
    assert ext_auth["statusOnError"] == 503
    (backend,) = ext_auth["http"]["backendRefs"]
    assert (backend["name"], backend["namespace"], backend["port"]) == ("authgate-check", "authgate", 8082)


def test_envoy_gateway_edge_drops_identity_headers_early() -> None:
    spec = one("ClientTrafficPolicy", "envoy-gateway")["spec"]
    assert lower(spec["headers"]["earlyRequestHeaders"]["remove"]) == IDENTITY  # never Authorization
    assert spec["headers"]["withUnderscoresAction"] == "DropHeader"
    assert spec["path"]["escapedSlashesAction"] == "RejectRequest"
    assert spec["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp"}]


def test_istio_providers_match_envoy_examples() -> None:
    http_example, grpc_example = envoy_ext_authz("envoy-http.yaml"), envoy_ext_authz("envoy-grpc.yaml")
    mesh = yaml.safe_load(one("ConfigMap", "istio", "istio")["data"]["mesh"])
    providers = {p["name"]: p for p in mesh["extensionProviders"]}
    http = providers["authgate-http"]["envoyExtAuthzHttp"]
    response = http_example["http_service"]["authorization_response"]
    assert lower(http["includeRequestHeadersInCheck"]) == patterns(http_example["allowed_headers"])
    assert lower(http["headersToUpstreamOnAllow"]) == patterns(response["allowed_upstream_headers"])
    assert lower(http["headersToDownstreamOnDeny"]) == patterns(response["allowed_client_headers"])
    assert http["pathPrefix"] == http_example["http_service"]["path_prefix"]
    assert http["timeout"] == http_example["http_service"]["server_uri"]["timeout"]
    assert (http["service"], http["port"]) == ("authgate-check.authgate.svc.cluster.local", 8082)
    grpc = providers["authgate-grpc"]["envoyExtAuthzGrpc"]
    assert grpc["timeout"] == grpc_example["grpc_service"]["timeout"]
    assert (grpc["service"], grpc["port"]) == ("authgate-grpc.authgate.svc.cluster.local", 9001)
    for provider in (http, grpc):
        assert provider["failOpen"] is False and provider["statusOnError"] == "503"
    policy = one("AuthorizationPolicy", "istio")["spec"]
    assert policy["action"] == "CUSTOM" and policy["provider"]["name"] in providers


def test_traefik_matches_traefik_example() -> None:
    example = traefik_example()["middlewares"]["authgate"]["forwardAuth"]
    forward = one("Middleware", "traefik", "authgate")["spec"]["forwardAuth"]
    assert forward["authRequestHeaders"] == example["authRequestHeaders"]
    assert forward["authResponseHeaders"] == example["authResponseHeaders"]
    assert forward["trustForwardHeader"] is example["trustForwardHeader"] is False
    assert forward["address"] == "http://authgate-check.authgate.svc.cluster.local:8082/ext-authz/traefik"
    assert example["address"].endswith(":8082/ext-authz/traefik")
    # The regex (Go RE2; Python agrees on this one) also strips claim headers and
    # underscore spellings, and never the caller's Authorization.
    regex = re.compile(forward["authResponseHeadersRegex"])
    canonical = ["X-Auth-Subject", "X-Auth-Email", "X_auth_subject", "X-AUTH-ROLES"]
    assert all(regex.search(h) for h in canonical + [h.title() for h in IDENTITY])
    assert not any(regex.search(h) for h in ("Authorization", "X-Authgate", "X-Request-Id", "Mcp-Method"))


INGRESS_NGINX_ANNOTATIONS = {
    "auth-url",
    "auth-method",
    "auth-response-headers",
    "enable-global-auth",
    "proxy-buffering",
    "proxy-read-timeout",
    "proxy-send-timeout",
}


def test_ingress_nginx_matches_nginx_example() -> None:
    annotations = one("Ingress", "ingress-nginx", "mcp")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "auth-url"] == "http://authgate-check.authgate.svc.cluster.local:8082/ext-authz/nginx"
    assert annotations[prefix + "auth-method"] == "GET"
    response_headers = annotations[prefix + "auth-response-headers"].split(",")
    # nginx.conf also copies Authorization, through a map that keeps the caller's token when
    # authgate sends none; the annotation cannot, so it is documented as tokenExchange-only.
    assert lower(response_headers) == nginx_identity_headers() == IDENTITY
    for document in documents("ingress-nginx"):
        for key in document["metadata"].get("annotations", {}):
            # kubeconform does not look at annotations: catch typos here.
            assert key.startswith(prefix) and key.removeprefix(prefix) in INGRESS_NGINX_ANNOTATIONS, key
            assert "snippet" not in key


# --- routing: public paths unchecked to authgate-public, everything else checked --------


def element_prefix(prefix: str) -> Callable[[str], bool]:
    """Gateway API PathPrefix / Ingress pathType Prefix: whole path segments."""
    stem = prefix.rstrip("/")
    return lambda path: prefix == "/" or path == stem or path.startswith(stem + "/")


def string_prefix(prefix: str) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefix)


def istio_path(pattern: str) -> Callable[[str], bool]:
    """AuthorizationPolicy path matching: exact, `prefix*`, `*suffix`."""
    if pattern.endswith("*"):
        return string_prefix(pattern[:-1])
    if pattern.startswith("*"):
        return lambda path: path.endswith(pattern[1:])
    return lambda path: path == pattern


def any_of(matchers: list[Callable[[str], bool]]) -> Callable[[str], bool]:
    return lambda path: any(m(path) for m in matchers)


def public_by_examples() -> Iterator[tuple[str, Callable[[str], bool]]]:
    yield "nginx.conf", any_of([string_prefix(p) for p in nginx_public_prefixes()])
    for example in ("envoy-http.yaml", "envoy-grpc.yaml"):
        yield example, any_of([string_prefix(p) for p in envoy_public_prefixes(example)])
    routers = traefik_example()["routers"]
    (rule,) = {r["rule"] for r in routers.values() if r["service"] == "authgate-public"}  # plain and TLS
    yield "dynamic.yml", any_of([string_prefix(p) for p in traefik_prefixes(rule)])


def public_by_manifests() -> dict[str, Callable[[str], bool]]:
    """Per integration: is this path routed to authgate-public (without a check)?"""
    route = one("HTTPRoute", "envoy-gateway", "mcp-oauth-public")
    gateway_api = [element_prefix(m["path"]["value"]) for rule in route["spec"]["rules"] for m in rule["matches"]]
    service = one("VirtualService", "istio")["spec"]["http"]
    (public_http,) = [h for h in service if h["route"][0]["destination"]["host"].startswith("authgate-public.")]
    ingress_route = one("IngressRoute", "traefik", "mcp-oauth-public")["spec"]["routes"][0]
    ingress = one("Ingress", "ingress-nginx", "mcp-oauth-public")["spec"]["rules"][0]["http"]["paths"]
    assert all(p["pathType"] == "Prefix" for p in ingress)
    return {
        "envoy-gateway": any_of(gateway_api),
        "istio": any_of([string_prefix(m["uri"]["prefix"]) for m in public_http["match"]]),
        "traefik": any_of([string_prefix(p) for p in traefik_prefixes(ingress_route["match"])]),
        "ingress-nginx": any_of([element_prefix(p["path"]) for p in ingress]),
    }


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_public_paths_are_routed_like_the_examples(integration: str) -> None:
    public = public_by_manifests()[integration]
    assert [p for p in PUBLIC_SAMPLES if not public(p)] == []
    assert [p for p in APP_SAMPLES if public(p)] == []
    # Whatever a runnable example serves publicly, so does the manifest (the manifests
    # add /.well-known/openid-configuration, which authgate-public also serves). Near
    # misses (EDGE_SAMPLES) may differ: Gateway API and Ingress prefixes are whole segments.
    for example, example_public in public_by_examples():
        missing = [p for p in PUBLIC_SAMPLES + APP_SAMPLES if example_public(p) and not public(p)]
        assert missing == [], f"{integration}: public in {example} only: {missing}"


def test_istio_checks_exactly_what_it_routes_to_the_app() -> None:
    """Routing (VirtualService) and checking (AuthorizationPolicy) are separate objects in
    Istio: a path public in one and not the other is either broken discovery or, worse, an
    unchecked path to the app."""
    routed_public = public_by_manifests()["istio"]
    operation = one("AuthorizationPolicy", "istio")["spec"]["rules"][0]["to"][0]["operation"]
    unchecked = any_of([istio_path(p) for p in operation["notPaths"]])
    assert "paths" not in operation  # every other path is checked
    for path in PUBLIC_SAMPLES + APP_SAMPLES + EDGE_SAMPLES:
        assert routed_public(path) == unchecked(path), path
    assert set(operation["hosts"]) == {HOST, HOST + ":*"}


def test_envoy_gateway_checks_the_app_route_only() -> None:
    for file in ("security-policy-grpc.yaml", "security-policy-http.yaml"):
        targets = one("SecurityPolicy", "envoy-gateway", file=file)["spec"]["targetRefs"]
        assert targets == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "mcp"}]
    app = one("HTTPRoute", "envoy-gateway", "mcp")["spec"]
    assert [m["path"] for r in app["rules"] for m in r["matches"]] == [{"type": "PathPrefix", "value": "/"}]


def test_traefik_and_ingress_nginx_public_routes_have_no_auth() -> None:
    public_route = one("IngressRoute", "traefik", "mcp-oauth-public")["spec"]["routes"]
    assert all("middlewares" not in r for r in public_route)
    app_route = one("IngressRoute", "traefik", "mcp")["spec"]["routes"]
    # the client-certificate pair before authgate (RFC 8705: strip, then pass the verified one)
    chain = [{"name": "authgate-strip-client-cert"}, {"name": "authgate-client-cert"}, {"name": "authgate"}]
    assert all(r["middlewares"] == chain for r in app_route)
    assert all(r["priority"] < public_route[0]["priority"] for r in app_route)
    annotations = one("Ingress", "ingress-nginx", "mcp-oauth-public")["metadata"]["annotations"]
    assert annotations == {"nginx.ingress.kubernetes.io/enable-global-auth": "false"}


def route_backends() -> Iterator[tuple[str, str, str, int]]:
    """(file, namespace, service, port) of every route backend in every manifest."""
    for d in documents():
        namespace, spec, file = d["metadata"].get("namespace"), d.get("spec", {}), d["__file__"]
        if d["kind"] == "HTTPRoute":
            for rule in spec["rules"]:
                for ref in rule.get("backendRefs", []):
                    yield file, ref.get("namespace", namespace), ref["name"], ref["port"]
        elif d["kind"] == "VirtualService":
            for http in spec["http"]:
                for target in http["route"]:
                    service, ns = target["destination"]["host"].split(".")[:2]
                    yield file, ns, service, target["destination"]["port"]["number"]
        elif d["kind"] == "IngressRoute":
            for route in spec["routes"]:
                for service in route["services"]:
                    yield file, service.get("namespace", namespace), service["name"], service["port"]
        elif d["kind"] == "Ingress":
            for rule in spec["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    yield file, namespace, backend["name"], backend["port"]["number"]


def test_check_ports_are_never_route_backends() -> None:
    backends = {(ns, service, port) for _, ns, service, port in route_backends()}
    assert backends == {("apps", "mcp-server", 8000), ("authgate", "authgate-public", 8080)}


def test_reference_grants_allow_exactly_the_cross_namespace_references() -> None:
    grants = [d for d in documents("envoy-gateway") if d["kind"] == "ReferenceGrant"]
    allowed = {
        (f["group"], f["kind"], f["namespace"], g["metadata"]["namespace"], t["name"])
        for g in grants
        for f in g["spec"]["from"]
        for t in g["spec"]["to"]
        if t["group"] == "" and t["kind"] == "Service"
    }
    needed = set()
    for d in documents("envoy-gateway"):
        namespace = d["metadata"].get("namespace")
        if d["kind"] == "HTTPRoute":
            group = "gateway.networking.k8s.io"
            refs = [r for rule in d["spec"]["rules"] for r in rule.get("backendRefs", [])]
        elif d["kind"] == "SecurityPolicy":
            group = "gateway.envoyproxy.io"
            ext_auth = d["spec"]["extAuth"]
            refs = (ext_auth.get("grpc") or ext_auth.get("http"))["backendRefs"]
        else:
            continue
        for ref in refs:
            if ref.get("namespace", namespace) != namespace:
                needed.add((group, d["kind"], namespace, ref["namespace"], ref["name"]))
    assert allowed == needed


def test_hosts_are_named_everywhere() -> None:
    seen = []
    for d in documents():
        kind, spec = d["kind"], d.get("spec", {})
        if kind == "Gateway" and d["apiVersion"].startswith("gateway.networking.k8s.io"):
            seen += [listener.get("hostname") for listener in spec["listeners"]]
        elif kind == "HTTPRoute":
            seen += spec.get("hostnames") or [None]
        elif kind == "Gateway":  # Istio
            seen += [h.split("/")[-1] for server in spec["servers"] for h in server["hosts"]]
        elif kind == "VirtualService":
            seen += spec["hosts"]
        elif kind == "IngressRoute":
            seen += [(re.findall(r"Host\(`([^`]*)`\)", r["match"]) or [None])[0] for r in spec["routes"]]
        elif kind == "Ingress":
            seen += [rule.get("host") for rule in spec["rules"]]
            assert "defaultBackend" not in spec
    assert seen and set(seen) == {HOST}, seen
