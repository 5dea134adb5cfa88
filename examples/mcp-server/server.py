"""A minimal MCP server to run behind authgate (streamable HTTP at /mcp).

    python examples/mcp-server/server.py --host 127.0.0.1 --port 9000 --allowed-host mcp.example.com

Tools:
- `echo(text)` returns `text`;
- `whoami()` returns the identity authgate put on the request: the `X-Auth-Subject`
  and `X-Auth-Scopes` headers the proxy set from authgate's decision.

This server does no authentication: the proxy in front of it (nginx `auth_request`,
Envoy ext_authz, ...) asks authgate first, and replaces any client-sent `X-Auth-*`
header. So it must listen only where the proxy alone can reach it (loopback, a pod
network policy): reached directly, anyone could send `X-Auth-Subject` themselves.

Host-header check (DNS-rebinding protection, the SDK's `TransportSecuritySettings`):
the SDK answers 421 "Invalid Host header" to a request whose Host is not allowed. A
proxy passes the public name on (`proxy_set_header Host $host;` in
examples/nginx/nginx.conf, without a port), so name it with `--allowed-host
mcp.example.com` (an entry `name:*` allows that name with any port). Loopback names
(127.0.0.1, localhost, [::1], any port) are always allowed. `--allowed-origin` does
the same for the Origin header, which only browsers send.

Once it listens it prints `READY http://<host>:<port>/mcp` (with the real port when
started with `--port 0`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]

server = MCPServer("authgate-example", instructions="An example MCP server behind authgate.")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def whoami(ctx: Context) -> dict[str, str | None]:
    """The caller's identity as authgate established it (the proxy's X-Auth-* headers)."""
    headers = ctx.headers or {}
    return {"subject": headers.get("x-auth-subject"), "scopes": headers.get("x-auth-scopes")}


def transport_security(allowed_hosts: list[str], allowed_origins: list[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection allowing loopback plus the names the proxy forwards."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=LOOPBACK_HOSTS + allowed_hosts,
        allowed_origins=LOOPBACK_ORIGINS + allowed_origins,
    )


async def serve(host: str, port: int, security: TransportSecuritySettings) -> None:
    app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    serving = asyncio.create_task(uvicorn_server.serve())
    while not uvicorn_server.started:
        if serving.done():  # e.g. the port is taken: uvicorn logged why
            await serving
            sys.exit(1)
        await asyncio.sleep(0.02)
    bound_port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    print(f"READY http://{url_host}:{bound_port}/mcp", flush=True)
    await serving


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host header value the proxy forwards (repeatable), e.g. mcp.example.com or mcp.example.com:*",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an Origin header value to accept (repeatable), e.g. https://mcp.example.com",
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, transport_security(args.allowed_host, args.allowed_origin)))


if __name__ == "__main__":
    main()
