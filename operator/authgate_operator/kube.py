"""Everything the operator asks of the Kubernetes API, in one small client.

Built on kubernetes_asyncio; every call names the least it needs (a namespaced list with
a label selector, a get by name), matching the RBAC the Helm chart grants.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import secrets
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from authgate.errors import SnapshotTooLarge

log = logging.getLogger("authgate.operator")

GROUP, VERSION, PLURAL = "authgate.dev", "v1alpha1", "oauthpolicies"
GENERATION_ANNOTATION = "authgate.dev/generation"
VERSION_ANNOTATION = "authgate.dev/version"
SNAPSHOT_KEY = "snapshot.json.gz"
SEALING_KEY = "keys.json"
MAX_SECRET_BYTES = 1024 * 1024 - 16 * 1024  # Kubernetes caps a Secret at 1 MiB; leave room for metadata


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    ready: bool

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


def split_ref(ref: str) -> tuple[str, str]:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name:
        raise ValueError(f"expected NAMESPACE/NAME, got {ref!r}")
    return namespace, name


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # -- Secrets ------------------------------------------------------------------
    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status in (403, 404):
                if error.status == 403:
                    log.error("forbidden to read Secret", extra={"secret": f"{namespace}/{name}"})
                return None
            raise
        return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}

    async def read_snapshot(self, ref: str) -> tuple[int, str | None]:
        """(generation, version) stored in the snapshot Secret, (0, None) when there is none."""
        namespace, name = split_ref(ref)
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return 0, None
            raise
        annotations = secret.metadata.annotations or {}
        try:
            return int(annotations.get(GENERATION_ANNOTATION, "0")), annotations.get(VERSION_ANNOTATION)
        except ValueError:
            return 0, None

    async def write_snapshot(self, ref: str, document: bytes, generation: int, version: str) -> None:
        """Store the last good snapshot (gzip JSON), for replicas that start while we are down."""
        namespace, name = split_ref(ref)
        payload = gzip.compress(document, mtime=0)
        if len(payload) * 4 / 3 > MAX_SECRET_BYTES:
            raise SnapshotTooLarge(
                f"the compressed snapshot is {len(payload)} bytes; a Secret holds at most about 750 KiB of it"
            )
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                annotations={GENERATION_ANNOTATION: str(generation), VERSION_ANNOTATION: version},
                labels={"app.kubernetes.io/managed-by": "authgate-operator"},
            ),
            type="Opaque",
            data={SNAPSHOT_KEY: base64.b64encode(payload).decode()},
        )
        try:
            await self.core.replace_namespaced_secret(name, namespace, body)
        except ApiException as error:
            if error.status != 404:
                raise
            await self.core.create_namespaced_secret(namespace, body)

    async def ensure_sealing_secret(self, ref: str) -> bool:
        """Create the sealing-key Secret when missing; never overwrite one. True if created."""
        namespace, name = split_ref(ref)
        key = {
            "kty": "oct",
            "kid": secrets.token_hex(4),
            "k": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
            "alg": "dir",
        }
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "authgate-operator"}
            ),
            type="Opaque",
            data={SEALING_KEY: base64.b64encode(json.dumps({"keys": [key]}).encode()).decode()},
        )
        try:
            await self.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    # -- endpoints ------------------------------------------------------------------
    async def endpoints(self, service_ref: str, port_name: str = "admin", default_port: int = 8081) -> list[Endpoint]:
        """Every endpoint of the auth Service, ready or not (a new pod needs its snapshot to
        become ready)."""
        namespace, name = split_ref(service_ref)
        slices = await self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={name}"
        )
        found: dict[str, Endpoint] = {}
        for endpoint_slice in slices.items:
            port = next((p.port for p in endpoint_slice.ports or [] if p.name == port_name and p.port), None)
            if port is None and endpoint_slice.ports and len(endpoint_slice.ports) == 1:
                port = endpoint_slice.ports[0].port
            for endpoint in endpoint_slice.endpoints or []:
                if endpoint.conditions is not None and endpoint.conditions.terminating:
                    continue
                ready = endpoint.conditions is None or endpoint.conditions.ready is not False
                for address in endpoint.addresses or []:
                    found[address] = Endpoint(address, port or default_port, ready)
        return [found[address] for address in sorted(found)]

    # -- policy status and events -----------------------------------------------------
    async def any_policy(self, namespaces: tuple[str, ...]) -> bool:
        """Is there any OAuthPolicy at all? (One item asked for, not a listing.)"""
        for namespace in namespaces or (None,):
            if namespace is None:
                found = await self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
            else:
                found = await self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=1)
            if found.get("items"):
                return True
        return False

    async def patch_status(self, namespace: str, name: str, status: dict) -> int:
        """Merge-patch a policy's status; the resourceVersion the API answered."""
        patched = await self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        try:
            return int(patched["metadata"]["resourceVersion"])
        except (KeyError, TypeError, ValueError):
            return 0

    async def event(self, obj: dict, kind: str, reason: str, message: str) -> None:
        metadata = obj["metadata"]
        now = _now_rfc3339()
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{metadata['name']}.", namespace=metadata["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="OAuthPolicy",
                name=metadata["name"],
                namespace=metadata["namespace"],
                uid=metadata.get("uid"),
            ),
            reason=reason,
            message=message[:1024],
            type=kind,
            source=client.V1EventSource(component="authgate-operator"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await self.core.create_namespaced_event(metadata["namespace"], body)
        except ApiException as error:
            log.warning("could not record an event", extra={"status": error.status, "reason": reason})


def _now_rfc3339():
    import datetime

    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
