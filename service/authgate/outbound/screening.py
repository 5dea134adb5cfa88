"""Connect-time screening of outbound destinations, after our own DNS resolution.

The addresses authgate never connects to unless egress allows them (loopback, private,
link-local, CGNAT, multicast, reserved, cloud metadata, and their IPv4-mapped, NAT64,
6to4 and Teredo forms), the allow/deny rules of `--egress-allow`/`--egress-deny`, and
the httpcore network backend that applies them to every connection (so DNS rebinding
cannot reach internal addresses). Hand-written because no library offers connect-time
screening for httpx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def host_key(host: str) -> str:
    return host.lower().rstrip(".")


def literal_address(host: str) -> IPAddress | None:
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
class Destinations:
    networks: tuple[IPNetwork, ...]
    hosts: frozenset[str]

    @classmethod
    def parse(cls, entries: Iterable[str], setting: str) -> Destinations:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            host = host_key(entry.strip())
            if not _HOST_NAME.match(host):
                raise ValueError(f"egress {setting} entry {entry!r} is neither a CIDR nor a host name")
            hosts.add(host)
        return cls(tuple(networks), frozenset(hosts))

    def matches(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)


@dataclass(frozen=True)
class EgressRules:
    """The admin's allow/deny lists applied on top of screening."""

    allow: Destinations
    deny: Destinations

    def host_refusal(self, host: str) -> str | None:
        if host_key(host) in self.deny.hosts:
            return f"host {host} is in egress deny"
        return None

    def host_allowed(self, host: str) -> bool:
        return host_key(host) in self.allow.hosts

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


class DestinationRefused(Exception):
    """Raised inside the network backend; request() turns it into EgressBlocked with the URL."""


class ScreeningBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, screens every address, connects only to a permitted one.

    Connecting to the screened IP (not re-resolving the name) defeats DNS rebinding; TLS still
    verifies the URL's host name because httpcore passes server_hostname to start_tls.
    """

    def __init__(self, rules: EgressRules, *, require_allowed: bool) -> None:
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
            raise DestinationRefused(refusal)
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
            raise DestinationRefused(f"{host} resolved only to refused addresses: " + "; ".join(refusals))

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
        raise DestinationRefused("unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class ScreenedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its httpcore pool rebuilt on the screening backend.

    AsyncHTTPTransport has no network_backend argument. Subclassing and swapping the one pool
    it builds keeps httpx's request mapping, exception mapping and streaming untouched, where a
    transport of our own would have to copy them from httpx's private helpers.
    """

    def __init__(self, backend: ScreeningBackend, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
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
