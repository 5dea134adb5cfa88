"""The one client for every outbound call: timeouts, size caps, no redirects, no proxy env.

Destinations are screened after our own DNS resolution, at connect time, so DNS rebinding
cannot reach internal addresses; the httpcore network backend doing this is hand-written
because no library offers connect-time screening for httpx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpcore
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
from authgate.urls import parse_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


# Screened IPv4 ranges, most specific first so the reason names the narrowest one.
_SCREENED_IPV4 = tuple(
    (ipaddress.IPv4Network(cidr), reason)
    for cidr, reason in (
        ("169.254.169.254/32", "cloud metadata"),  # AWS, GCP, Azure, OpenStack, ...
        ("100.100.100.200/32", "cloud metadata"),  # Alibaba Cloud
        ("255.255.255.255/32", "broadcast"),
        ("0.0.0.0/8", "unspecified"),  # "this network", RFC 791
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_SCREENED_IPV6 = tuple(
    (ipaddress.IPv6Network(cidr), reason)
    for cidr, reason in (
        ("fd00:ec2::254/128", "cloud metadata"),  # AWS IMDS over IPv6
        ("64:ff9b:1::/48", "local-use NAT64"),  # RFC 8215, never global
        ("100::/64", "discard-only"),
        ("2001:2::/48", "benchmarking"),
        ("2001:10::/28", "ORCHID"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 segment identifiers"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST_IPV6 = ipaddress.IPv6Network("2000::/3")
_SIIT_IPV6 = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_COMPATIBLE_IPV6 = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible
_NAT64_IPV6 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address stands for (IPv4-mapped is normalised earlier)."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIIT_IPV6:
        return [("IPv4-translated", low32)]
    if address in _COMPATIBLE_IPV6:
        return [("IPv4-compatible", low32)]
    if address in _NAT64_IPV6:
        return [("NAT64", low32)]
    if address.sixtofour is not None:  # 2002::/16, v4 in bits 16..47
        return [("6to4", address.sixtofour)]
    if address.teredo is not None:  # 2001::/32: (server = bits 32..63, client = ~low 32)
        server, client = address.teredo
        return [("Teredo server", server), ("Teredo client", client)]
    return []


def _normalise(address: IPAddress) -> IPAddress:
    # An IPv4-mapped address is the IPv4 destination itself on a dual-stack socket.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _screening_reason(address: IPAddress) -> str | None:
    """Why an address is internal or not routable on the internet; None when it is public.

    Explicit tables rather than ipaddress's is_private/is_global, whose meaning changed
    across Python releases.
    """
    address = _normalise(address)
    if isinstance(address, ipaddress.IPv4Address):
        return next((reason for net, reason in _SCREENED_IPV4 if address in net), None)
    if address == ipaddress.IPv6Address("::"):
        return "unspecified"
    if address == ipaddress.IPv6Address("::1"):
        return "loopback"
    embedded = _embedded_ipv4(address)
    for form, ipv4 in embedded:
        if (reason := _screening_reason(ipv4)) is not None:
            return f"{form} form of {ipv4}, {reason}"
    if address in _COMPATIBLE_IPV6:
        return "IPv4-compatible (deprecated, RFC 4291 §2.5.5.1)"
    for net, reason in _SCREENED_IPV6:
        if address in net:
            return reason
    if not embedded and address not in _GLOBAL_UNICAST_IPV6:
        return "reserved (outside global unicast 2000::/3)"
    return None


_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


def _literal_address(host: str) -> IPAddress | None:
    """The address a URL host denotes literally, including inet_aton forms like 127.1."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):  # resolvers read "127.1", "0x7f.1", "2130706433" as IPv4
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class _Entries:
    networks: tuple[IPNetwork, ...]
    hosts: frozenset[str]

    @classmethod
    def parse(cls, entries: Iterable[str], setting: str) -> _Entries:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            host = _host_key(entry.strip())
            if not _HOST_NAME.match(host):
                raise ValueError(f"egress {setting} entry {entry!r} is neither a CIDR nor a host name")
            hosts.add(host)
        return cls(tuple(networks), frozenset(hosts))

    def matches(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)


@dataclass(frozen=True)
class _Rules:
    """The admin's allow/deny lists applied on top of screening."""

    allow: _Entries
    deny: _Entries

    def host_refusal(self, host: str) -> str | None:
        if _host_key(host) in self.deny.hosts:
            return f"host {host} is in egress deny"
        return None

    def host_allowed(self, host: str) -> bool:
        return _host_key(host) in self.allow.hosts

    def address_refusal(self, address: IPAddress, *, host_allowed: bool, require_allowed: bool) -> str | None:
        """Why a connection to `address` is refused, or None. Deny beats allow beats screening."""
        address = _normalise(address)
        disguised = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []
        if any(self.deny.matches(a) for a in [address, *(v4 for _, v4 in disguised)]):
            return f"{address} is in egress deny"
        if host_allowed or self.allow.matches(address):
            return None
        if (reason := _screening_reason(address)) is not None:
            return f"{address} is {reason}"
        if require_allowed:
            return f"{address} is not in egress allow, as plain http requires"
        return None


class _DestinationRefused(Exception):
    """Raised inside the network backend; request() turns it into EgressBlocked with the URL."""


class _ScreeningBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, screens every address, connects only to a permitted one.

    Connecting to the screened IP (not re-resolving the name) defeats DNS rebinding; TLS still
    verifies the URL's host name because httpcore passes server_hostname to start_tls.
    """

    def __init__(self, rules: _Rules, *, require_allowed: bool) -> None:
        self._rules = rules
        self._require_allowed = require_allowed
        # AnyIOBackend is what httpcore's (private) AutoBackend picks under asyncio.
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (refusal := self._rules.host_refusal(host)) is not None:
            raise _DestinationRefused(refusal)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None

        host_allowed = self._rules.host_allowed(host)
        permitted: list[str] = []
        refusals: list[str] = []
        for info in infos:
            target = str(info[4][0])
            if target in permitted:
                continue
            refusal = self._rules.address_refusal(
                ipaddress.ip_address(target),
                host_allowed=host_allowed,
                require_allowed=self._require_allowed,
            )
            if refusal is None:
                permitted.append(target)
            elif refusal not in refusals:
                refusals.append(refusal)
        if not permitted:
            raise _DestinationRefused(f"{host} resolved only to refused addresses: " + "; ".join(refusals))

        failure: Exception | None = None
        for target in permitted:  # in resolver order; refused addresses are never tried
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
            try:
                return await self._inner.connect_tcp(
                    target,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _DestinationRefused("unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ScreenedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its httpcore pool rebuilt on the screening backend.

    AsyncHTTPTransport has no network_backend argument. Subclassing and swapping the one pool
    it builds keeps httpx's request mapping, exception mapping and streaming untouched, where a
    transport of our own would have to copy them from httpx's private helpers.
    """

    def __init__(self, backend: _ScreeningBackend, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits, http1=True, http2=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            # Fail at startup rather than send unscreened if a new httpx renames its pool.
            raise RuntimeError("httpx.AsyncHTTPTransport has no _pool: cannot install screening")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )


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
        self._rules = _Rules(allow=_Entries.parse(policy.allow, "allow"), deny=_Entries.parse(policy.deny, "deny"))
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
            transport = _ScreenedTransport(_ScreeningBackend(self._rules, require_allowed=False), ssl_context, limits)
            # Plain http connects only to allowed destinations, decided after DNS too.
            mounts["http://"] = _ScreenedTransport(
                _ScreeningBackend(self._rules, require_allowed=True), ssl_context, limits
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
        address = _literal_address(host)
        if address is not None:
            refusal = self._rules.address_refusal(address, host_allowed=False, require_allowed=plain_http)
            if refusal is not None:
                raise EgressBlocked(shown, refusal)
        elif proxied and not self._rules.host_allowed(host):
            if plain_http:
                raise EgressBlocked(shown, f"plain http through the proxy needs {host} in egress allow")
            if _host_key(host) == "localhost" or _host_key(host).endswith(".localhost"):
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
        except _DestinationRefused as exc:
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
