"""The facade's HTTP endpoints on the public port, for the policy whose facade issuer the
request's host and path name.

    /.well-known/oauth-authorization-server<issuer path>   RFC 8414 metadata
    /.well-known/openid-configuration<issuer path>         the same, where MCP clients look
    <issuer path>/.well-known/openid-configuration         (OpenID Connect Discovery form)
    <issuer path>/oauth2/register                          RFC 7591
    <issuer path>/oauth2/authorize                         GET: checks, then consent; POST: the decision
    <issuer path>/oauth2/callback                          the upstream's redirect back
    <issuer path>/oauth2/token                             authorization_code, refresh_token
    <issuer path>/oauth2/introspect, /oauth2/revoke        proxied upstream (RFC 7662, RFC 7009)

The flow, with nothing stored server-side (every value below is sealed, `sealing.py`):
authorize → consent page (the checked request sealed into the form; the browser's
`__Host-authgate-browser` cookie, hashed into it, is the CSRF token) → approval → the
upstream's authorization endpoint with the facade's own client, PKCE pair and a sealed
transaction as `state` (bound to the same browser cookie) → callback → a facade code
(60 s) sealing the upstream code, the facade's verifier and the client's challenge →
token: the client's verifier checked, the upstream code redeemed, the access token
checked against the policy (its audience must be the resource) and returned; an upstream
refresh token only ever leaves wrapped (sealed, bound to the client).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from authgate import bounded_json
from authgate.errors import (
    ClientError,
    KeysUnavailable,
    OAuthError,
    RedirectableError,
    RegistrationError,
    SealError,
    ShowError,
    TargetError,
    TokenError,
    UnknownClient,
    UpstreamRefused,
    UpstreamUnavailable,
)
from authgate.facade.authorize import AuthorizationRequest, check_authorization_request, pkce_matches, s256, with_params
from authgate.facade.clients import Client, ClientDirectory, ClientDocuments, allowed_scopes
from authgate.facade.consent import consent_page, error_page
from authgate.facade.guards import RATE_LIMITS, RateLimiter, UsedOnce
from authgate.facade.registration import register
from authgate.facade.upstream import Upstream
from authgate.policy.snapshot import CompiledFacade, CompiledPolicy
from authgate.sealing import SealingKeys
from authgate.urls import normalize_host, parse_url

if TYPE_CHECKING:
    from authgate.server.service import AuthService

log = logging.getLogger("authgate.facade")

TRANSACTION_TTL = 600  # consent page and upstream round trip (≤ 10 min)
CODE_TTL = 60  # the facade's authorization codes
REFRESH_TTL = 30 * 24 * 3600  # a wrapped refresh token; the upstream's own expiry still applies
REMEMBER_TTL = 30 * 24 * 3600
BROWSER_COOKIE = "__Host-authgate-browser"
REMEMBER_COOKIE = "__Host-authgate-consent"
REMEMBERED_CLIENTS = 10
MAX_FORM_BYTES = 16 * 1024
MAX_JSON_BYTES = 16 * 1024

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 6749 §4.1.2.1 codes an upstream error may be relayed as; anything else is server_error.
_AUTHORIZE_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "invalid_target",
        "login_required",
        "consent_required",
        "interaction_required",
    }
)
_INTROSPECTION_FIELDS = ("active", "scope", "exp", "iat", "nbf", "sub", "aud", "iss", "token_type", "username")


@dataclass(frozen=True)
class Route:
    policy: CompiledPolicy
    facade: CompiledFacade
    endpoint: str  # "metadata" or an /oauth2/ endpoint name


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _route(policy: CompiledPolicy, facade: CompiledFacade, path: str) -> str | None:
    base = facade.path
    if path in (
        "/.well-known/oauth-authorization-server" + base,
        "/.well-known/openid-configuration" + base,
        base + "/.well-known/openid-configuration",
    ):
        return "metadata"
    prefix = base + "/oauth2/"
    if path.startswith(prefix) and path[len(prefix) :] in _ENDPOINTS:
        return path[len(prefix) :]
    return None


_ENDPOINTS = ("register", "authorize", "callback", "token", "introspect", "revoke")
_METHODS = {"metadata": ("GET",), "callback": ("GET",), "authorize": ("GET", "POST")}  # the others: POST


class Facade:
    """Every policy's facade endpoints (one per process); stateless apart from guards."""

    def __init__(self, service: AuthService) -> None:
        self.service = service
        self.upstream = Upstream(service.egress)
        self.documents = ClientDocuments(service.egress)
        self.limiter = RateLimiter()
        self.used = UsedOnce()
        self._unrotated: set[str] = set()  # policies whose upstream was seen not rotating refresh tokens

    # -- routing -----------------------------------------------------------------------

    def route(self, host_header: str, path: str) -> Route | None:
        try:
            host = normalize_host(host_header, None)
        except TargetError:
            return None
        for policy in self.service.snapshot.facades.get(host, ()):
            assert policy.facade is not None
            endpoint = _route(policy, policy.facade, path)
            if endpoint is not None:
                return Route(policy, policy.facade, endpoint)
        return None

    async def handle(self, request: Request, route: Route) -> Response:
        cors = _cors_headers(request, route.policy)
        if request.method == "OPTIONS":
            if route.endpoint not in ("metadata", "register", "token", "revoke", "introspect"):
                return Response(status_code=405)
            return Response(
                status_code=204,
                headers=cors
                | {
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, MCP-Protocol-Version",
                    "Access-Control-Max-Age": "600",
                },
            )
        keys = self.service.sealing_keys
        if keys is None and route.endpoint != "metadata":
            return _json_error(OAuthError(503, "temporarily_unavailable", "the facade has no sealing keys"), cors)
        handler = getattr(self, "_" + route.endpoint)
        allowed = _METHODS.get(route.endpoint, ("POST",))
        if request.method not in allowed and not (request.method == "HEAD" and "GET" in allowed):
            return _json_error(OAuthError(405, "invalid_request", "method not allowed"), cors)
        group = route.endpoint if route.endpoint in RATE_LIMITS else None
        address = _client_address(request, self.service.settings.forwarded_for_hops)
        if group is not None and not self.limiter.allow(group, address):
            return _json_error(OAuthError(429, "slow_down", "too many requests; retry later"), cors)
        try:
            return await handler(request, route, keys, cors)
        except OAuthError as error:
            return _json_error(error, cors)

    # -- discovery ---------------------------------------------------------------------

    async def _metadata(self, request: Request, route: Route, keys: SealingKeys | None, cors: dict) -> Response:
        facade, policy = route.facade, route.policy
        document: dict = {
            "issuer": facade.issuer,
            "authorization_endpoint": facade.endpoint("authorize"),
            "token_endpoint": facade.endpoint("token"),
        }
        if facade.dynamic_registration:
            document["registration_endpoint"] = facade.endpoint("register")
        document |= {
            "introspection_endpoint": facade.endpoint("introspect"),
            "revocation_endpoint": facade.endpoint("revoke"),
            "scopes_supported": sorted(allowed_scopes(policy)),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": facade.client_metadata_documents,
        }
        return JSONResponse(document, headers=cors | {"Cache-Control": "public, max-age=300"})

    # -- registration (RFC 7591) ----------------------------------------------------------

    async def _register(self, request: Request, route: Route, keys: SealingKeys, cors: dict) -> Response:
        if not route.facade.dynamic_registration:
            raise OAuthError(403, "access_denied", "dynamic client registration is disabled here")
        if _media_type(request) != "application/json":
            raise OAuthError(400, "invalid_client_metadata", "send the client metadata as application/json")
        body = await _read_body(request, MAX_JSON_BYTES)
        try:
            document = bounded_json.read(body, MAX_JSON_BYTES)
        except bounded_json.JSONInputError as error:
            raise OAuthError(400, "invalid_client_metadata", f"the body is {error}") from None
        try:
            registered = register(keys, route.facade.issuer, route.policy.uid, document, allowed_scopes(route.policy))
        except RegistrationError as error:
            raise OAuthError(400, error.error, error.description) from None
        log.info(
            "facade client registered",
            extra={
                "policy": route.policy.ref,
                "client": registered.client_id[-16:],
                "auth_method": registered.metadata["token_endpoint_auth_method"],
            },
        )
        return JSONResponse(registered.metadata, status_code=201, headers=cors | NO_STORE)

    # -- authorization -------------------------------------------------------------------

    def _clients(self, keys: SealingKeys) -> ClientDirectory:
        return ClientDirectory(keys, self.documents)

    async def _authorize(self, request: Request, route: Route, keys: SealingKeys, cors: dict) -> Response:
        if request.method == "POST":
            return await self._decision(request, route, keys)
        params, duplicated = _parse_pairs(request.scope.get("query_string", b"").decode("latin-1"))
        if duplicated & {"client_id", "redirect_uri"}:
            return error_page("client_id and redirect_uri may each be sent only once")
        facade, policy = route.facade, route.policy
        client_id = params.get("client_id", "")
        client: Client | None = None
        try:
            client = await self._clients(keys).find(policy, facade, client_id)
        except UnknownClient:
            pass  # check_authorization_request says so
        except ClientError as error:
            return error_page(f"This application cannot sign in here: {error}.")
        try:
            authorization = check_authorization_request(
                params,
                None if client is None else client.metadata,
                policy.resource,
                allowed_scopes(policy),
                facade.redirect_uris,
            )
            if duplicated:
                raise RedirectableError(
                    authorization.redirect_uri, "invalid_request", "a parameter was sent twice", authorization.state
                )
        except ShowError as error:
            return error_page(f"{error}.")
        except RedirectableError as error:
            return self._redirect_error(facade, error.redirect_uri, error.error, error.description, error.state)
        assert client is not None

        browser, new_browser = _browser_id(request)
        cookies = [_browser_cookie(browser)] if new_browser else []
        if facade.consent == "remember" and _remembered(keys, route, request, browser, authorization):
            return await self._to_upstream(route, keys, authorization, browser, cookies)
        try:
            endpoints = await self.upstream.endpoints(facade.upstream)
        except UpstreamUnavailable:
            return self._unavailable(facade, authorization)
        sealed = keys.seal(
            "consent",
            facade.issuer,
            policy.uid,
            {"req": _request_record(authorization), "b": _hash(browser)},
            TRANSACTION_TTL,
        )
        response = consent_page(
            action=facade.endpoint("authorize"),
            client_name=client.display_name,
            client_id_shown=client.client_id if client.from_document else client.log_id,
            redirect_uri=authorization.redirect_uri,
            resource=policy.resource,
            scopes=authorization.scope,
            sealed_request=sealed,
            remember=facade.consent == "remember",
            set_cookie=_browser_cookie(browser),
            form_targets=(_origin(endpoints.authorization), _origin(authorization.redirect_uri)),
            provenance="metadata published by that site" if client.from_document else "name not verified",
        )
        return response

    async def _decision(self, request: Request, route: Route, keys: SealingKeys) -> Response:
        facade, policy = route.facade, route.policy
        origin = request.headers.get("origin")
        if origin is not None and origin != _origin(facade.issuer):
            return error_page("The approval did not come from this page.", 403)
        if _media_type(request) != "application/x-www-form-urlencoded":
            return error_page("Unexpected form submission.")
        try:
            form, duplicated = _parse_pairs((await _read_body(request, MAX_FORM_BYTES)).decode("latin-1"))
        except OAuthError:
            return error_page("Unexpected form submission.")
        if duplicated:
            return error_page("Unexpected form submission.")
        try:
            sealed = keys.open("consent", facade.issuer, policy.uid, form.get("consent", ""))
        except SealError:
            return error_page("This approval page has expired. Start the sign-in again from the application.")
        if not _same_browser(request, sealed):
            return error_page("This approval did not come from the browser that was asked.", 403)
        browser = request.cookies[BROWSER_COOKIE]
        authorization = _request_from_record(sealed["req"])
        decision = form.get("decision")
        if decision == "deny":
            log.info("facade consent denied", extra={"policy": policy.ref})
            return self._redirect_error(
                facade, authorization.redirect_uri, "access_denied", "the user denied access", authorization.state
            )
        if decision != "approve":
            return error_page("Choose Allow or Deny.")
        cookies: list[str] = []
        if facade.consent == "remember":
            cookies.append(_remember_cookie(keys, route, request, browser, authorization))
        return await self._to_upstream(route, keys, authorization, browser, cookies)

    async def _to_upstream(
        self,
        route: Route,
        keys: SealingKeys,
        authorization: AuthorizationRequest,
        browser: str,
        cookies: list[str],
    ) -> Response:
        facade, policy = route.facade, route.policy
        try:
            endpoints = await self.upstream.endpoints(facade.upstream)
        except UpstreamUnavailable:
            return self._unavailable(facade, authorization)
        verifier = secrets.token_urlsafe(48)
        transaction = keys.seal(
            "transaction",
            facade.issuer,
            policy.uid,
            {"req": _request_record(authorization), "v": verifier, "b": _hash(browser), "jti": secrets.token_hex(16)},
            TRANSACTION_TTL,
        )
        scopes = list(dict.fromkeys([*facade.upstream.scopes, *authorization.scope]))
        params = {
            "response_type": "code",
            "client_id": facade.upstream.client_id,
            "redirect_uri": facade.endpoint("callback"),
            "scope": " ".join(scopes),
            "state": transaction,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "resource": policy.resource,
        }
        if "offline_access" in scopes:
            params["prompt"] = "consent"  # OpenID Connect Core §11: offline_access needs it
        response = RedirectResponse(with_params(endpoints.authorization, params), status_code=303, headers=NO_STORE)
        for cookie in cookies:
            response.headers.append("Set-Cookie", cookie)
        log.info("facade authorization started", extra={"policy": policy.ref, "scopes": " ".join(authorization.scope)})
        return response

    async def _callback(self, request: Request, route: Route, keys: SealingKeys, cors: dict) -> Response:
        facade, policy = route.facade, route.policy
        params, duplicated = _parse_pairs(request.scope.get("query_string", b"").decode("latin-1"))
        if duplicated:
            return error_page("The identity provider's answer is malformed.")
        try:
            transaction = keys.open("transaction", facade.issuer, policy.uid, params.get("state", ""))
        except SealError:
            return error_page("This sign-in has expired or is not valid. Start again from the application.")
        if not _same_browser(request, transaction):
            return error_page("This sign-in was started in another browser.", 403)
        try:
            endpoints = await self.upstream.endpoints(facade.upstream)
        except UpstreamUnavailable:
            return error_page("The identity provider is unavailable. Try again later.", 503)
        issuer = params.get("iss")
        if (issuer is not None and issuer != facade.upstream.issuer) or (issuer is None and endpoints.iss_parameter):
            log.warning("facade callback from another issuer", extra={"policy": policy.ref})
            return error_page("The answer did not come from the expected identity provider.")
        if not self.used.first_use("tx:" + transaction["jti"], time.time() + TRANSACTION_TTL):
            return error_page("This sign-in was already completed. Start again from the application.")
        authorization = _request_from_record(transaction["req"])
        if "error" in params:
            upstream_error = params["error"]
            error = upstream_error if upstream_error in _AUTHORIZE_ERRORS else "server_error"
            log.info("facade upstream authorization failed", extra={"policy": policy.ref, "error": error})
            return self._redirect_error(
                facade, authorization.redirect_uri, error, "the identity provider refused", authorization.state
            )
        upstream_code = params.get("code")
        if not upstream_code:
            return error_page("The identity provider's answer has no code.")
        record = _request_record(authorization) | {
            "uc": upstream_code,
            "v": transaction["v"],
            "jti": secrets.token_hex(16),
        }
        code = keys.seal("code", facade.issuer, policy.uid, record, CODE_TTL)
        answer = {"code": code}
        if authorization.state is not None:
            answer["state"] = authorization.state
        answer["iss"] = facade.issuer
        return RedirectResponse(with_params(authorization.redirect_uri, answer), status_code=302, headers=NO_STORE)

    def _unavailable(self, facade: CompiledFacade, authorization: AuthorizationRequest) -> Response:
        return self._redirect_error(
            facade,
            authorization.redirect_uri,
            "temporarily_unavailable",
            "the identity provider is unavailable",
            authorization.state,
        )

    def _redirect_error(
        self, facade: CompiledFacade, redirect_uri: str, error: str, description: str, state: str | None
    ) -> Response:
        params = {"error": error, "error_description": description}
        if state is not None:
            params["state"] = state
        params["iss"] = facade.issuer
        return RedirectResponse(with_params(redirect_uri, params), status_code=302, headers=NO_STORE)

    # -- token endpoint ------------------------------------------------------------------

    async def _authenticated(self, request: Request, route: Route, keys: SealingKeys) -> tuple[Client, dict]:
        form = await _form(request)
        try:
            client = await self._clients(keys).authenticate(
                route.policy, route.facade, request.headers.get("authorization"), form
            )
        except ClientError as error:
            raise OAuthError(401, "invalid_client", str(error)) from None
        return client, form

    async def _token(self, request: Request, route: Route, keys: SealingKeys, cors: dict) -> Response:
        client, form = await self._authenticated(request, route, keys)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            body = await self._code_grant(route, keys, client, form)
        elif grant_type == "refresh_token":
            body = await self._refresh_grant(route, keys, client, form)
        elif not grant_type:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        else:
            raise OAuthError(400, "unsupported_grant_type", "only authorization_code and refresh_token are supported")
        return JSONResponse(body, headers=cors | NO_STORE)

    async def _code_grant(self, route: Route, keys: SealingKeys, client: Client, form: dict) -> dict:
        facade, policy = route.facade, route.policy
        try:
            code = keys.open("code", facade.issuer, policy.uid, form.get("code", ""))
        except SealError:
            raise OAuthError(400, "invalid_grant", "the code is invalid or expired") from None
        if code["cid"] != client.client_id:
            raise OAuthError(400, "invalid_grant", "the code was issued to another client")
        if code["rgiven"] and form.get("redirect_uri") != code["ruri"]:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
        if "redirect_uri" in form and form["redirect_uri"] != code["ruri"]:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
        if not pkce_matches(form.get("code_verifier"), code["cc"]):
            raise OAuthError(400, "invalid_grant", "code_verifier does not match the code_challenge")
        if "resource" in form and form["resource"] != code["res"]:
            raise OAuthError(400, "invalid_target", "resource must be this server's resource")
        if not self.used.first_use("code:" + code["jti"], time.time() + CODE_TTL):
            raise OAuthError(400, "invalid_grant", "the code was already used")
        answer = await self._upstream_token(
            route,
            {
                "grant_type": "authorization_code",
                "code": code["uc"],
                "redirect_uri": facade.endpoint("callback"),
                "code_verifier": code["v"],
                "resource": policy.resource,
            },
        )
        log.info("facade token issued", extra={"policy": policy.ref, "client": client.log_id, "grant": "code"})
        return await self._client_answer(route, keys, client, answer, tuple(code["scope"]))

    async def _refresh_grant(self, route: Route, keys: SealingKeys, client: Client, form: dict) -> dict:
        facade, policy = route.facade, route.policy
        if "refresh_token" not in client.metadata.get("grant_types", ()):
            raise OAuthError(400, "unauthorized_client", "this client did not register the refresh_token grant")
        try:
            wrapped = keys.open("refresh", facade.issuer, policy.uid, form.get("refresh_token", ""))
        except SealError:
            raise OAuthError(400, "invalid_grant", "the refresh token is invalid or expired") from None
        if wrapped["cid"] != client.client_id:
            raise OAuthError(400, "invalid_grant", "the refresh token was issued to another client")
        granted = tuple(wrapped["scope"])
        scope = granted
        if "scope" in form:
            scope = tuple(form["scope"].split())
            if not set(scope) <= set(granted):
                raise OAuthError(400, "invalid_scope", "a refresh cannot widen the granted scope")
        if not self.used.first_use("refresh:" + wrapped["jti"], time.time() + REFRESH_TTL):
            # Rotation (OAuth 2.1 §4.3.1): a wrapped refresh token works once. A second use
            # means it was copied: end the upstream grant too, so neither copy goes on.
            log.warning("facade refresh token reused", extra={"policy": policy.ref, "client": client.log_id})
            with contextlib.suppress(UpstreamUnavailable, UpstreamRefused):
                await self.upstream.revoke(facade.upstream, wrapped["rt"], "refresh_token")
            raise OAuthError(400, "invalid_grant", "the refresh token was already used")
        upstream_form = {"grant_type": "refresh_token", "refresh_token": wrapped["rt"], "resource": policy.resource}
        if "scope" in form:
            upstream_form["scope"] = " ".join([*facade.upstream.scopes, *scope])
        answer = await self._upstream_token(route, upstream_form)
        log.info("facade token issued", extra={"policy": policy.ref, "client": client.log_id, "grant": "refresh"})
        return await self._client_answer(route, keys, client, answer, scope, (wrapped["rt"], granted))

    async def _upstream_token(self, route: Route, form: dict[str, str]) -> dict:
        try:
            return await self.upstream.token(route.facade.upstream, form)
        except UpstreamRefused as error:
            raise OAuthError(400, error.error, error.description) from None
        except UpstreamUnavailable as error:
            raise OAuthError(503, "temporarily_unavailable", error.reason) from None

    async def _client_answer(
        self,
        route: Route,
        keys: SealingKeys,
        client: Client,
        answer: dict,
        requested: tuple[str, ...],
        refreshed: tuple[str, tuple[str, ...]] | None = None,
    ) -> dict:
        """What the client gets: the upstream access token once it is proven to be for this
        resource, a wrapped refresh token, never the id_token. `refreshed`: the upstream
        refresh token just used and the scope of its grant, which a narrower refresh keeps
        (OAuth 2.1 §4.3.3)."""
        policy, facade = route.policy, route.facade
        access_token = answer["access_token"]
        try:
            await self.service.validator.validate(access_token, policy)
        except TokenError as error:
            log.warning(
                "facade upstream token refused",
                extra={"policy": policy.ref, "reason": error.reason},
            )
            raise OAuthError(
                502, "server_error", "the identity provider issued a token not valid for this resource"
            ) from None
        except KeysUnavailable:
            raise OAuthError(503, "temporarily_unavailable", "the identity provider's keys are unavailable") from None
        offered = allowed_scopes(policy)
        upstream_scope = answer.get("scope")
        if isinstance(upstream_scope, str):
            # What the upstream granted, as far as this client asked for it: the facade's own
            # upstream scopes (openid, offline_access...) are not the client's business.
            wanted = set(requested) if requested else offered
            granted = tuple(s for s in upstream_scope.split() if s in wanted)
        else:
            granted = requested
        body: dict = {"access_token": access_token, "token_type": "Bearer"}
        expires_in = answer.get("expires_in")
        if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0:
            body["expires_in"] = expires_in
        body["scope"] = " ".join(granted)
        refresh = answer.get("refresh_token")
        grant_scope = granted if refreshed is None else refreshed[1]
        if refreshed is not None and (not isinstance(refresh, str) or not refresh or refresh == refreshed[0]):
            refresh = refreshed[0]  # the upstream does not rotate: wrap the same one again
            if policy.ref not in self._unrotated:
                self._unrotated.add(policy.ref)  # once per policy and process: a setting to fix, not an event
                log.warning(
                    "facade upstream does not rotate refresh tokens: replay across replicas is not detected",
                    extra={"policy": policy.ref, "issuer": facade.upstream.issuer},
                )
        if isinstance(refresh, str) and refresh and "refresh_token" in client.metadata.get("grant_types", ()):
            body["refresh_token"] = keys.seal(
                "refresh",
                facade.issuer,
                policy.uid,
                {"cid": client.client_id, "rt": refresh, "scope": list(grant_scope), "jti": secrets.token_hex(16)},
                REFRESH_TTL,
            )
        return body

    # -- introspection and revocation ----------------------------------------------------

    def _presented(self, route: Route, keys: SealingKeys, client: Client, token: str) -> dict | None:
        """A wrapped refresh token of this client, opened; None for one that is ours in shape
        (a compact JWE) but does not open here or belongs to another client: such a token is
        answered locally (inactive, or revoked), never forwarded. Any other token: {}."""
        if token.count(".") != 4:
            return {}
        try:
            wrapped = keys.open("refresh", route.facade.issuer, route.policy.uid, token)
        except SealError:
            return None
        return wrapped if wrapped["cid"] == client.client_id else None

    async def _introspect(self, request: Request, route: Route, keys: SealingKeys, cors: dict) -> Response:
        client, form = await self._authenticated(request, route, keys)
        if client.auth_method == "none":
            raise OAuthError(401, "invalid_client", "introspection needs an authenticated (confidential) client")
        token = form.get("token")
        if not token:
            raise OAuthError(400, "invalid_request", "token is required")
        wrapped = self._presented(route, keys, client, token)
        inactive = JSONResponse({"active": False}, headers=cors | NO_STORE)
        offered = allowed_scopes(route.policy)
        try:
            if wrapped is None:
                return inactive
            if wrapped:
                answer = await self.upstream.introspect(route.facade.upstream, wrapped["rt"], "refresh_token")
                if answer.get("active") is not True:
                    return inactive
                body = {"active": True, "client_id": client.client_id, "token_type": "refresh_token"}
                body |= {name: answer[name] for name in ("exp", "iat", "sub") if name in answer}
                body["scope"] = " ".join(s for s in wrapped["scope"] if s in offered)
            elif token.count(".") == 2:
                # A JWT access token (the kind the facade hands out): authgate checks it for
                # this resource itself, as its check port would.
                try:
                    verified = await self.service.validator.validate(token, route.policy)
                except TokenError:
                    return inactive
                claims = verified.claims
                body = {"active": True, "scope": " ".join(sorted(s for s in verified.scopes if s in offered))}
                body |= {name: claims[name] for name in ("exp", "iat", "nbf", "sub", "aud", "iss") if name in claims}
            else:
                answer = await self.upstream.introspect(route.facade.upstream, token, _hint(form))
                if answer.get("active") is not True:
                    return inactive
                body = {name: answer[name] for name in _INTROSPECTION_FIELDS if name in answer}
                if isinstance(body.get("scope"), str):
                    body["scope"] = " ".join(s for s in body["scope"].split() if s in offered)
        except KeysUnavailable as error:
            raise OAuthError(503, "temporarily_unavailable", error.reason) from None
        except UpstreamUnavailable as error:
            raise OAuthError(503, "temporarily_unavailable", error.reason) from None
        return JSONResponse(body, headers=cors | NO_STORE)

    async def _revoke(self, request: Request, route: Route, keys: SealingKeys, cors: dict) -> Response:
        client, form = await self._authenticated(request, route, keys)
        token = form.get("token")
        if not token:
            raise OAuthError(400, "invalid_request", "token is required")
        done = Response(status_code=200, headers=cors | NO_STORE)
        wrapped = self._presented(route, keys, client, token)
        if wrapped is None:
            return done  # RFC 7009 §2.2: an invalid token, or another client's: nothing to say
        if wrapped:
            # This replica refuses it from now on, whatever the upstream does.
            self.used.first_use("refresh:" + wrapped["jti"], time.time() + REFRESH_TTL)
            upstream_token, hint = wrapped["rt"], "refresh_token"
        else:
            upstream_token, hint = token, _hint(form)
        try:
            await self.upstream.revoke(route.facade.upstream, upstream_token, hint)
        except UpstreamRefused as error:
            raise OAuthError(400, error.error, error.description) from None
        except UpstreamUnavailable as error:
            raise OAuthError(503, "temporarily_unavailable", error.reason) from None
        log.info("facade token revoked", extra={"policy": route.policy.ref, "client": client.log_id})
        return done


# -- helpers ------------------------------------------------------------------------------


def _request_record(request: AuthorizationRequest) -> dict:
    return {
        "cid": request.client_id,
        "ruri": request.redirect_uri,
        "rgiven": request.redirect_uri_given,
        "scope": list(request.scope),
        "state": request.state,
        "cc": request.code_challenge,
        "res": request.resource,
    }


def _request_from_record(record: dict) -> AuthorizationRequest:
    return AuthorizationRequest(
        client_id=record["cid"],
        client={},
        redirect_uri=record["ruri"],
        scope=tuple(record["scope"]),
        state=record["state"],
        code_challenge=record["cc"],
        resource=record["res"],
        redirect_uri_given=record["rgiven"],
    )


def _hint(form: dict) -> str | None:
    hint = form.get("token_type_hint")
    return hint if hint in ("access_token", "refresh_token") else None


def _parse_pairs(text: str) -> tuple[dict[str, str], set[str]]:
    """Query or form parameters without the empty ones; none may appear twice (OAuth 2.1
    §3.1): the names that did are returned as `duplicated`."""
    params: dict[str, str] = {}
    duplicated: set[str] = set()
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except ValueError:
        raise OAuthError(400, "invalid_request", "too many parameters") from None
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            duplicated.add(name)
        seen.add(name)
        if value and name not in params:  # OAuth 2.1 §3.1: an empty parameter is an omitted one
            params[name] = value
    return params, duplicated


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OAuthError(413, "invalid_request", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OAuthError(413, "invalid_request", f"the body exceeds {limit} bytes")
    return bytes(body)


async def _form(request: Request) -> dict[str, str]:
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "send the parameters as application/x-www-form-urlencoded")
    body = await _read_body(request, MAX_FORM_BYTES)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "the form body is not URL-encoded ASCII") from None
    form, duplicated = _parse_pairs(text)
    if duplicated:
        raise OAuthError(400, "invalid_request", "a parameter was sent twice")
    return form


def _json_error(error: OAuthError, cors: dict) -> JSONResponse:
    headers = cors | NO_STORE | error.headers
    if error.status == 401:
        # RFC 9110 §15.5.2 and RFC 6749 §5.2: the scheme the client may authenticate with.
        headers.setdefault("WWW-Authenticate", 'Basic realm="authgate"')
    if error.status == 429:
        headers["Retry-After"] = "10"
    return JSONResponse(
        {"error": error.error, "error_description": error.description}, status_code=error.status, headers=headers
    )


def _cors_headers(request: Request, policy: CompiledPolicy) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin is None or not policy.cors_origins:
        return {}
    if "*" in policy.cors_origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in policy.cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def _client_address(request: Request, hops: int) -> str:
    """The address rate limits key on: the peer, or with `hops` trusted proxies in front, the
    address the outermost of them saw (X-Forwarded-For, counted from the right: entries further
    left were written by the client and prove nothing)."""
    peer = request.client.host if request.client else "unknown"
    if hops <= 0:
        return peer
    forwarded = [entry.strip() for header in request.headers.getlist("x-forwarded-for") for entry in header.split(",")]
    return forwarded[-hops] if len(forwarded) >= hops and forwarded[-hops] else peer


def _origin(url: str) -> str:
    return parse_url(url).origin  # URLs the policy, the egress client or redirect rules accepted


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _same_browser(request: Request, sealed: dict) -> bool:
    """Was `sealed` (a consent form, a transaction) made for the browser sending this request?"""
    browser = request.cookies.get(BROWSER_COOKIE)
    return bool(browser) and _hash(browser) == sealed.get("b")


def _browser_id(request: Request) -> tuple[str, bool]:
    """The browser's random id (the CSRF token and flow binding): (id, newly made)."""
    current = request.cookies.get(BROWSER_COOKIE)
    if current and 32 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(32), True


def _browser_cookie(browser: str) -> str:
    return f"{BROWSER_COOKIE}={browser}; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax"


def _remembered_clients(keys: SealingKeys, route: Route, request: Request, browser: str) -> dict[str, list[str]]:
    try:
        record = keys.open("remember", route.facade.issuer, route.policy.uid, request.cookies.get(REMEMBER_COOKIE, ""))
    except SealError:
        return {}
    if record.get("b") != _hash(browser) or not isinstance(record.get("clients"), dict):
        return {}
    return record["clients"]


def _remembered(
    keys: SealingKeys, route: Route, request: Request, browser: str, authorization: AuthorizationRequest
) -> bool:
    scopes = _remembered_clients(keys, route, request, browser).get(_hash(authorization.client_id))
    return scopes is not None and set(authorization.scope) <= set(scopes)


def _remember_cookie(
    keys: SealingKeys, route: Route, request: Request, browser: str, authorization: AuthorizationRequest
) -> str:
    clients = _remembered_clients(keys, route, request, browser)
    key = _hash(authorization.client_id)
    clients.pop(key, None)
    clients[key] = sorted(set(authorization.scope))
    clients = dict(list(clients.items())[-REMEMBERED_CLIENTS:])
    sealed = keys.seal(
        "remember", route.facade.issuer, route.policy.uid, {"b": _hash(browser), "clients": clients}, REMEMBER_TTL
    )
    return f"{REMEMBER_COOKIE}={sealed}; Path=/; Max-Age={REMEMBER_TTL}; Secure; HttpOnly; SameSite=Lax"
