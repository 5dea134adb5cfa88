"""What one compile can take from the last: the policies nothing has changed for.

Every replica compiles the whole snapshot on each push, and the operator on each change,
so with 10,000 policies of which one changed, nearly all of a compile was done the time
before. A policy is taken from the last compile when all its compile reads is unchanged:

- the policy itself (its typed model, metadata included, as canonical JSON),
- the Secrets of its namespace (names, keys and values: a reference can only name those),
- the validation settings.

Only policies that validated without an issue are kept (an issue's text names the
policy's place in its input, which can move), and only those of the most recent compile:
the memo holds at most one snapshot's policies besides what a caller is building, most of
them the very objects the enforced snapshot holds. Everything kept is immutable (frozen
models and dataclasses), so snapshots may share it. Lookups and the swap at the end are
single dict operations, safe from any thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from authgate.policy.loader import PolicySource, Secrets
from authgate.policy.snapshot import CompiledPolicy
from authgate.policy.validation import ValidationSettings


@dataclass(frozen=True, slots=True)
class Reused:
    compiled: CompiledPolicy
    version_part: str  # the policy's share of the snapshot's content version (compile.content_version)


class Memo:
    __slots__ = ("_last", "_this")

    def __init__(self) -> None:
        self._last: dict[bytes, Reused] = {}
        self._this: dict[bytes, Reused] = {}

    def get(self, key: bytes) -> Reused | None:
        found = self._last.get(key)
        if found is not None:
            self._this[key] = found
        return found

    def put(self, key: bytes, reused: Reused) -> None:
        self._this[key] = reused

    def finish(self) -> None:
        """A compile ended: what it used or made is what the next one may reuse."""
        self._last, self._this = self._this, {}

    def clear(self) -> None:
        self._last, self._this = {}, {}

    def __len__(self) -> int:
        """The policies the next compile may reuse."""
        return len(self._last)


MEMO = Memo()


class Keys:
    """The reuse key of each policy of one compile."""

    def __init__(self, secrets: Secrets, settings: ValidationSettings) -> None:
        self._settings = repr(settings).encode()
        self._by_namespace: dict[str, list[tuple[str, Mapping[str, bytes]]]] = {}
        for (namespace, name), values in secrets.data.items():
            self._by_namespace.setdefault(namespace, []).append((name, values))
        self._digests: dict[str, bytes] = {}

    def __call__(self, source: PolicySource) -> bytes:
        namespace = source.policy.metadata.namespace
        secrets = self._digests.get(namespace)
        if secrets is None:
            secrets = self._digests[namespace] = _secrets_digest(self._by_namespace.get(namespace, []))
        digest = hashlib.sha256(source.policy.content_digest)
        digest.update(secrets)
        digest.update(self._settings)
        return digest.digest()


def _secrets_digest(secrets: list[tuple[str, Mapping[str, bytes]]]) -> bytes:
    digest = hashlib.sha256()
    for name, values in sorted(secrets, key=lambda item: item[0]):
        for key, value in sorted(values.items()):
            for part in (name.encode(), key.encode(), value):  # length-prefixed: no two inputs alike
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
    return digest.digest()
