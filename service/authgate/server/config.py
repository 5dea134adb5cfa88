"""What one `authgate serve` process is: its ports, its inputs and its service settings,
frozen. The command line builds it (cli.py); `authgate demo` is a preset of it
(`demo.preset`); the composition root (server/main.py) runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from authgate.server.service import ServiceSettings


@dataclass(frozen=True)
class Ports:
    public: int = 8080
    check: int = 8082
    grpc: int = 9001
    admin: int = 8081
    metrics: int = 9090


@dataclass(frozen=True)
class AdminAccess:
    """Who may push snapshots: a bearer secret file, and/or the operator's ServiceAccount
    tokens for `audience` (TokenReview against the API server)."""

    token_file: str | None = None
    audience: str | None = None
    subject: str | None = None  # system:serviceaccount:NS:NAME, with audience
    kube_api_server: str | None = None  # default: in-cluster
    kube_token_file: str | None = None
    kube_ca_file: str | None = None


@dataclass(frozen=True)
class ServiceConfig:
    address: str = "0.0.0.0"
    ports: Ports = field(default_factory=Ports)
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    policy_files: tuple[str, ...] = ()  # file mode; empty: Kubernetes mode (pushed snapshots)
    bootstrap_snapshot: str | None = None  # the mounted snapshot Secret
    sealing_keys: str | None = None  # the facade's keys (JWKS file), followed as it changes
    admin: AdminAccess = field(default_factory=AdminAccess)
    drain_seconds: float = 0.0  # on SIGTERM: answer this long while not ready, then stop
