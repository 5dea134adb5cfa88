"""The one client for every outbound call: timeouts, size caps, no redirects, no proxy env.

Destinations are screened after our own DNS resolution, at connect time, so DNS rebinding
cannot reach internal addresses (outbound/screening.py); `check_url` refuses statically
what it can before any connection.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpx

from authgate import bounded_json
from authgate.errors import (
    EgressBadResponse,
    EgressBlocked,
    EgressError,
    EgressRedirect,
    EgressTimeout,
    EgressTooLarge,
    TargetError,
)
from authgate.outbound.screening import (
    DestinationRefused,
    Destinations,
    EgressRules,
    ScreenedTransport,
    ScreeningBackend,
    host_key,
    literal_address,
)
from authgate.urls import parse_url


@dataclass(frozen=True)
class EgressPolicy:
    """Service configuration for outbound calls (flags / Helm values, never policy)."""

    allow: tuple[str, ...] = ()  # CIDRs or exact host names allowed despite screening
    deny: tuple[str, ...] = ()  # CIDRs or exact host names always refused
    proxy: str | None = field(default=None, repr=False)  # may carry credentials
    insecure_http: bool = False  # http:// only to destinations in `allow`
    ca_bundle: str | None = None  # PEM of extra trusted CAs, added to certifi's
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    total_timeout: float = 10.0
    max_response_bytes: int = 1_048_576


@dataclass(frozen=True)
class EgressResponse:
    url: str
    status_code: int
    headers: httpx.Headers
    content: bytes

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object (RFC 8259, UTF-8), else EgressBadResponse."""
        try:  # the size was capped while reading (max_response_bytes)
            return bounded_json.read_object(self.content, len(self.content))
        except bounded_json.JSONInputError as error:
            raise EgressBadResponse(self.url, f"body is {error}", self.status_code) from None

    def max_age(self) -> float | None:
        """Cache-Control max-age in seconds (RFC 9111 §5.2.2.1); None if absent or unusable.

        s-maxage is for shared caches and ignored; no-store and a bare no-cache give None
        (the caller must not reuse the body without asking again); duplicates are invalid.
        """
        max_age: float | None = None
        for directive in self.headers.get("cache-control", "").split(","):
            name, _, argument = directive.partition("=")
            name, argument = name.strip().lower(), argument.strip().strip('"')
            if name == "no-store" or (name == "no-cache" and not argument):
                return None
            if name == "max-age":
                if max_age is not None or not (argument.isascii() and argument.isdigit()):
                    return None
                # RFC 9111 §1.2.2: delta-seconds beyond 2^31 are taken as 2^31.
                max_age = float(2**31 if len(argument) > 10 else min(int(argument), 2**31))
        return max_age


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def _shown(url: str) -> str:
    """The URL as error messages show it: never with user name or password."""
    return _USERINFO.sub(r"\1", url)


def _transport_failure(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _load_client_certificate(context: ssl.SSLContext, certificate: bytes, key: bytes) -> None:
    """ssl only loads chains from files: write them to a private temporary directory, load,
    delete. The context keeps the key in memory."""
    with tempfile.TemporaryDirectory(prefix="authgate-mtls-") as directory:
        os.chmod(directory, 0o700)
        cert_path, key_path = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, content in ((cert_path, certificate), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(content)
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError) as error:
            raise ValueError(f"unusable client certificate or key: {error}") from None


class EgressClient:
    """Every outbound call of authgate goes through one of these (one per process)."""

    def __init__(
        self, policy: EgressPolicy = EgressPolicy(), client_certificate: tuple[bytes, bytes] | None = None
    ) -> None:
        """`client_certificate`: PEM certificate chain and key for mutual TLS (RFC 8705)."""
        for name in ("connect_timeout", "read_timeout", "total_timeout", "max_response_bytes"):
            if not getattr(policy, name) > 0:
                raise ValueError(f"egress {name} must be positive")
        self._policy = policy
        self._rules = EgressRules(
            allow=Destinations.parse(policy.allow, "allow"), deny=Destinations.parse(policy.deny, "deny")
        )
        # certifi, as httpx uses by default; not the system store, whose location
        # SSL_CERT_FILE/SSL_CERT_DIR in the environment could change.
        ssl_context = ssl.create_default_context(cafile=certifi.where())
        if policy.ca_bundle is not None:
            ssl_context.load_verify_locations(cafile=policy.ca_bundle)
        if client_certificate is not None:
            _load_client_certificate(ssl_context, *client_certificate)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        transport: httpx.AsyncBaseTransport
        mounts: dict[str, httpx.AsyncBaseTransport] = {}
        if policy.proxy is not None:
            # The proxy resolves names, so check_url screens what it can see statically.
            scheme = httpx.URL(policy.proxy).scheme
            if scheme not in ("http", "https"):
                raise ValueError("egress proxy must be an http:// or https:// URL")
            # An https proxy is verified with the same trust as destinations (ca_bundle).
            proxy = httpx.Proxy(policy.proxy, ssl_context=ssl_context if scheme == "https" else None)
            transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False, limits=limits, proxy=proxy)
        else:
            transport = ScreenedTransport(ScreeningBackend(self._rules, require_allowed=False), ssl_context, limits)
            # Plain http connects only to allowed destinations, decided after DNS too.
            mounts["http://"] = ScreenedTransport(
                ScreeningBackend(self._rules, require_allowed=True), ssl_context, limits
            )
        self._client = httpx.AsyncClient(
            transport=transport,
            mounts=mounts,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(
                connect=policy.connect_timeout,
                read=policy.read_timeout,
                write=policy.read_timeout,
                pool=policy.connect_timeout,
            ),
            headers={"User-Agent": "authgate"},
        )

    def check_url(self, url: str) -> None:
        """Static checks, no network: https (http only with insecure_http to an allowed
        destination), a host, no userinfo, and no literal address or host name that is refused.

        Without a proxy, a host name not listed in allow passes here for http and is decided
        at connect time from its resolved addresses; with a proxy it must be listed.
        """
        shown = _shown(url)
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise EgressBlocked(shown, "not a valid URL") from None
        if parsed.scheme not in ("https", "http"):
            raise EgressBlocked(shown, f"scheme {parsed.scheme!r} is not https")
        if parsed.userinfo:
            raise EgressBlocked(shown, "user name or password in the URL is not allowed")
        if not parsed.host:
            raise EgressBlocked(shown, "URL has no host")
        if parsed.scheme == "http" and not self._policy.insecure_http:
            raise EgressBlocked(shown, "http is not allowed (https required)")
        try:  # and the one strict parser, so that httpx cannot see another host than policy checks did
            parse_url(url)
        except TargetError as error:
            raise EgressBlocked(shown, f"not a valid URL ({error})") from None

        host = parsed.raw_host.decode("ascii")
        if (refusal := self._rules.host_refusal(host)) is not None:
            raise EgressBlocked(shown, refusal)
        proxied = self._policy.proxy is not None
        plain_http = parsed.scheme == "http"
        address = literal_address(host)
        if address is not None:
            refusal = self._rules.address_refusal(address, host_allowed=False, require_allowed=plain_http)
            if refusal is not None:
                raise EgressBlocked(shown, refusal)
        elif proxied and not self._rules.host_allowed(host):
            if plain_http:
                raise EgressBlocked(shown, f"plain http through the proxy needs {host} in egress allow")
            if host_key(host) == "localhost" or host_key(host).endswith(".localhost"):
                # RFC 6761: these names are loopback; the proxy would resolve them for us.
                raise EgressBlocked(shown, f"{host} is loopback")

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> EgressResponse:
        """One call: any status is returned except redirects (never followed); the body is
        read up to max_bytes (default: the policy's cap) within the policy's total timeout."""
        self.check_url(url)
        shown = _shown(url)
        cap = self._policy.max_response_bytes if max_bytes is None else max_bytes
        try:
            async with asyncio.timeout(self._policy.total_timeout):
                return await self._send(method, url, shown, headers, data, auth, cap)
        except TimeoutError:
            total = self._policy.total_timeout
            raise EgressTimeout(shown, f"no complete response within {total}s") from None

    async def _send(
        self,
        method: str,
        url: str,
        shown: str,
        headers: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        cap: int,
    ) -> EgressResponse:
        request_headers = httpx.Headers(headers)
        request_headers["Accept-Encoding"] = "identity"  # the cap counts what we hold in memory
        try:
            async with self._client.stream(method, url, headers=request_headers, data=data, auth=auth) as response:
                status = response.status_code
                # 304 is a cache answer, not a redirect (RFC 9110 §15.4.5).
                if 300 <= status < 400 and status != 304:
                    raise EgressRedirect(shown, f"status {status}: redirects are not followed")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise EgressBadResponse(shown, f"content-encoding {encoding!r} was not asked for", status)
                declared = response.headers.get("content-length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > cap:
                    raise EgressTooLarge(shown, f"Content-Length {declared} exceeds {cap} bytes")
                content = bytearray()
                async for chunk in response.aiter_raw():
                    content += chunk
                    if len(content) > cap:
                        raise EgressTooLarge(shown, f"body exceeds {cap} bytes")
                return EgressResponse(url=shown, status_code=status, headers=response.headers, content=bytes(content))
        except DestinationRefused as exc:
            raise EgressBlocked(shown, str(exc)) from None
        except httpx.TimeoutException as exc:
            raise EgressTimeout(shown, self._timeout_detail(exc)) from None
        except httpx.LocalProtocolError as exc:
            # Its message (and cause) can quote our own header values, e.g. credentials.
            raise EgressError(shown, type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise EgressError(shown, _transport_failure(exc)) from exc

    def _timeout_detail(self, exc: httpx.TimeoutException) -> str:
        policy = self._policy
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connect timed out after {policy.connect_timeout}s"
        if isinstance(exc, httpx.PoolTimeout):
            return f"no free connection within {policy.connect_timeout}s"
        kind = "write" if isinstance(exc, httpx.WriteTimeout) else "read"
        return f"{kind} timed out after {policy.read_timeout}s"

    async def get_json(self, url: str, *, max_bytes: int | None = None) -> tuple[dict[str, Any], EgressResponse]:
        """GET a JSON object (discovery, JWKS, metadata documents); anything but 200 is bad."""
        response = await self.request("GET", url, headers={"Accept": "application/json"}, max_bytes=max_bytes)
        if response.status_code != 200:
            raise EgressBadResponse(response.url, f"status {response.status_code}, expected 200", response.status_code)
        return response.json_object(), response

    async def aclose(self) -> None:
        await self._client.aclose()
