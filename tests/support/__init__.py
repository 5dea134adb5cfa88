"""authgate's own test drivers and the scenarios several test modules share (the
third-party components they run against are in tests/infra).

- `authgate`: `authgate serve` as a process; `leaks`: the minted-token guard on its logs.
- `facade`: the OAuth facade driven over HTTP, client and user side.
- `edge`, `proxy_cases`: authgate behind the example proxies, and the scenarios every proxy runs.
- `installation`: an authgate installation (chart RBAC, replicas, operator) on the test control plane.
- `local_node`: a control plane with a real node, `helm install`, Traefik, the IdP and MCP server as pods.
- `mcp_flow`: the MCP login through the facade as the user (Chromium) and the SDK client live it.
"""
