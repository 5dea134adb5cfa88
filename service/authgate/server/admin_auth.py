"""Who may push snapshots to the admin API.

Two mechanisms, either or both:
- a bearer secret (`--admin-token-file`), for use without Kubernetes;
- the Kubernetes way (`--admin-audience`, `--admin-subject`): the operator presents a
  projected ServiceAccount token minted for a dedicated audience; authgate asks the API
  server (TokenReview) whether it is valid for that audience and accepts it only for the
  operator's ServiceAccount. The service reads no Kubernetes object: TokenReview is the
  one API call it makes, with its own ServiceAccount token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from authgate import bounded_json

log = logging.getLogger("authgate.admin")

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _presented(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


class BearerSecret:
    """A shared secret read from a file on each use, so a rotated mounted Secret applies at once."""

    def __init__(self, token_file: str) -> None:
        self.token_file = token_file

    async def accepts(self, token: str) -> bool:
        try:
            expected = Path(self.token_file).read_text().strip()  # noqa: ASYNC240 - a few bytes, admin path only
        except OSError:
            log.error("admin token file unreadable", extra={"path": self.token_file})
            return False
        return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


@dataclass(frozen=True)
class KubeAPI:
    """Where and how the service reaches the API server (in a pod: the in-cluster defaults)."""

    server: str
    token_file: str
    ca_file: str | None

    @classmethod
    def in_cluster(cls, server: str | None = None, token_file: str | None = None, ca_file: str | None = None):
        if server is None:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("not in a cluster: pass --kube-api-server (and --kube-token-file, --kube-ca-file)")
            server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        default_ca = IN_CLUSTER_DIR / "ca.crt"
        return cls(
            server=server.rstrip("/"),
            token_file=token_file or str(IN_CLUSTER_DIR / "token"),
            ca_file=ca_file or (str(default_ca) if default_ca.exists() else None),
        )


class TokenReviewer:
    """Accepts ServiceAccount tokens that the API server confirms for `audience` and `subject`.

    Answers are cached per token digest for at most `cache_seconds`, so a push storm costs
    one TokenReview per token, and a revoked token stops working within that time.
    """

    def __init__(self, api: KubeAPI, audience: str, subject: str, cache_seconds: float = 60.0) -> None:
        self.api = api
        self.audience = audience
        self.subject = subject
        self.cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, bool]] = {}
        self._client = httpx.AsyncClient(
            verify=api.ca_file if api.ca_file else True,
            timeout=httpx.Timeout(5.0),
            follow_redirects=False,
            trust_env=False,
        )

    async def accepts(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        verdict = await self._review(token)
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[digest] = (now + self.cache_seconds, verdict)
        return verdict

    async def _review(self, token: str) -> bool:
        try:
            own_token = Path(self.api.token_file).read_text().strip()  # noqa: ASYNC240 - as above
            response = await self._client.post(
                f"{self.api.server}/apis/authentication.k8s.io/v1/tokenreviews",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token, "audiences": [self.audience]},
                },
                headers={"Authorization": f"Bearer {own_token}"},
            )
        except (OSError, httpx.HTTPError) as error:
            log.error("TokenReview failed", extra={"error": type(error).__name__})
            return False
        if response.status_code != 201 or len(response.content) > 64 * 1024:
            log.error("TokenReview refused", extra={"status": response.status_code})
            return False
        try:
            status = bounded_json.read_object(response.content, 64 * 1024).get("status")
        except bounded_json.JSONInputError:
            return False
        if not isinstance(status, dict) or not isinstance(status.get("user"), dict | None):
            return False
        username = (status.get("user") or {}).get("username")
        accepted = (
            status.get("authenticated") is True
            and self.audience in (status.get("audiences") or [])
            and username == self.subject
        )
        if not accepted:
            log.warning(
                "admin token rejected", extra={"username": username, "authenticated": status.get("authenticated")}
            )
        return accepted

    async def aclose(self) -> None:
        await self._client.aclose()


class AdminAuth:
    def __init__(self, bearer: BearerSecret | None = None, reviewer: TokenReviewer | None = None) -> None:
        self.mechanisms = [m for m in (bearer, reviewer) if m is not None]

    @property
    def configured(self) -> bool:
        return bool(self.mechanisms)

    async def authenticate(self, authorization: str | None) -> bool:
        token = _presented(authorization)
        if token is None:
            return False
        for mechanism in self.mechanisms:
            if await mechanism.accepts(token):
                return True
        return False
