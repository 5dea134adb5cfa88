"""`authgate serve` as a real process on 127.0.0.1, with its log captured for assertions."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tests.infra.ports import free_port
from tests.infra.processes import HttpUrl, Process
from tests.support.leaks import remember_secret

from authgate.server.logs import DecisionLog

AUTHGATE = str(Path(sys.executable).with_name("authgate"))
# Egress to test servers on loopback over plain http (issuers, JWKS, token endpoints).
LOCAL_EGRESS = ("--insecure-http", "--egress-allow", "127.0.0.1")


class Authgate:
    """Attributes: `port` (public), `check_port`, `admin_port`, `metrics_port`, `admin_token`,
    `process`. `check_url(dialect)` is the ext-authz URL."""

    def __init__(
        self,
        log_dir: Path,
        policy: str | None = None,
        args: list[str] | None = None,
        name: str = "authgate",
        admin_token: str | None = "test-admin-token-0123456789",
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port, self.check_port = free_port(), free_port()
        self.admin_port, self.metrics_port = free_port(), free_port()
        self.grpc_port = free_port()
        self.admin_token = admin_token
        remember_secret(admin_token)
        command = [
            AUTHGATE,
            "serve",
            "--address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--check-port",
            str(self.check_port),
            "--admin-port",
            str(self.admin_port),
            "--metrics-port",
            str(self.metrics_port),
            "--grpc-port",
            str(self.grpc_port),
        ]
        if admin_token is not None:
            token_file = self.log_dir / f"{name}-admin-token"
            token_file.write_text(admin_token)
            command += ["--admin-token-file", str(token_file)]
        if policy is not None:
            policy_file = self.log_dir / f"{name}-policy.yaml"
            policy_file.write_text(policy)
            command += ["--policy", str(policy_file)]
        self.process = Process(name, command + list(args or []), log_dir=self.log_dir)

    def start(self, timeout: float = 20.0, ready: bool = True) -> Authgate:
        condition = HttpUrl(f"http://127.0.0.1:{self.admin_port}/readyz", frozenset({200} if ready else {200, 503}))
        self.process.start(condition, timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Authgate:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def check_url(self, dialect: str = "nginx") -> str:
        return f"http://127.0.0.1:{self.check_port}/ext-authz/{dialect}"

    def nginx_check(self, url: str, method: str = "GET", token: str | None = None, **headers: str) -> httpx.Response:
        sent = {"X-Original-URL": url, "X-Original-Method": method}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        return httpx.get(self.check_url("nginx"), headers=sent, timeout=10)

    def admin(self, method: str, path: str, body: Any = None, token: str | None = "default") -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.admin_token if token == 'default' else token}"
        content = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        return httpx.request(
            method,
            f"http://127.0.0.1:{self.admin_port}{path}",
            headers=headers,
            content=content,
            timeout=10,
        )

    def log(self) -> str:
        """Everything the process logged; decision lines are written in batches, so this
        first waits for the batch of the last requests to be out."""
        time.sleep(2 * DecisionLog.FLUSH_SECONDS)
        return self.process.read_log()

    def decisions(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if '"logger":"authgate.decision"' in line:
                out.append(json.loads(line))
        return out


def policy_yaml(
    issuer_url: str,
    resource: str = "https://api.example.com/mcp",
    extra: str = "",
    issuer_extra: str = "",
    name: str = "api",
    namespace: str = "default",
) -> str:
    """A policy document; `extra` is appended under spec (indent 2), `issuer_extra` under the issuer (indent 6)."""
    return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  resource: {resource}
  issuers:
    - issuer: {issuer_url}
{issuer_extra}
{extra}
"""
