"""`make run` (`authgate demo`) as a newcomer meets it: the service and its demo issuer
start, `authgate token` signs a token, and the curl lines it prints answer as they say."""

from __future__ import annotations

import os
import subprocess

import httpx
from tests.infra.ports import free_port
from tests.infra.processes import HttpUrl, Process
from tests.support.authgate import AUTHGATE


def test_the_demo_answers_as_its_curl_lines_say(tmp_path):
    ports = {name: free_port() for name in ("port", "check-port", "grpc-port", "admin-port", "metrics-port")}
    issuer_port = free_port()
    env = {**os.environ, "AUTHGATE_LOCAL_DIR": str(tmp_path / "local")}
    flags = [f"--{name}={port}" for name, port in ports.items()]
    demo = Process("demo", [AUTHGATE, "demo", f"--issuer-port={issuer_port}", *flags], log_dir=tmp_path, env=env)
    demo.start(HttpUrl(f"http://127.0.0.1:{ports['admin-port']}/readyz", frozenset({200})), timeout=30)
    try:
        token = subprocess.run(
            [AUTHGATE, "token", "--sub", "alice", "--scope", "mcp:read"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        check = f"http://127.0.0.1:{ports['check-port']}/ext-authz/nginx"
        original = {"X-Original-URL": "https://mcp.example.com/mcp", "X-Original-Method": "POST"}
        allowed = httpx.get(check, headers={**original, "Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and allowed.headers["x-auth-subject"] == "alice"
        assert httpx.get(check, headers=original).status_code == 401
        admin_tool = {**original, "Mcp-Method": "tools/call", "Mcp-Name": "admin_reset"}
        assert httpx.get(check, headers={**admin_tool, "Authorization": f"Bearer {token}"}).status_code == 403
        metadata = httpx.get(
            f"http://127.0.0.1:{ports['port']}/.well-known/oauth-protected-resource/mcp",
            headers={"Host": "mcp.example.com"},
        )
        assert metadata.json()["resource"] == "https://mcp.example.com/mcp"
    finally:
        demo.stop()
    assert "/ext-authz/nginx" in demo.read_log()  # the curl lines were printed
    assert token not in demo.read_log()
