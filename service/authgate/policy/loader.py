"""YAML streams and snapshot documents → typed OAuthPolicies and Secrets, with precise issues.

Nothing here looks beyond one document: cross-field checks are in `validate.py`, cross-policy
ones in `ownership.py`, so the operator (which reads objects from the API, not files) shares them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from authgate.errors import PolicyIssue
from authgate.policy.model import API_VERSION, KIND, OAuthPolicy

MAX_POLICY_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PolicySource:
    """A parsed policy and where it came from (for error messages)."""

    policy: OAuthPolicy
    source: str
    document: int | None = None
    order: int = 0  # position in the input, the tie-breaker after creationTimestamp


@dataclass(frozen=True)
class Secrets:
    """Secret data by (namespace, name); values are bytes as in a Kubernetes Secret."""

    data: Mapping[tuple[str, str], Mapping[str, bytes]] = field(default_factory=dict)

    def get(self, namespace: str, name: str, key: str) -> bytes | None:
        return self.data.get((namespace, name), {}).get(key)

    def has(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.data


@dataclass(frozen=True)
class Loaded:
    policies: list[PolicySource]
    secrets: Secrets
    issues: list[PolicyIssue]


def field_path(loc: Iterable[object]) -> str:
    """Pydantic location → `spec.issuers[0].jwksUri`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _pydantic_issues(error: ValidationError, source: str, document: int | None) -> list[PolicyIssue]:
    issues = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        issues.append(PolicyIssue(source, document, field_path(item["loc"]), message))
    return issues


def _parse_secret(
    manifest: Mapping[str, object], source: str, document: int | None
) -> tuple[tuple[str, str], dict[str, bytes]] | list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return [PolicyIssue(source, document, "metadata.name", "required field is missing")]
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or not namespace:
        return [PolicyIssue(source, document, "metadata.namespace", "must be a string")]
    values: dict[str, bytes] = {}
    for section in ("data", "stringData"):
        content = manifest.get(section) or {}
        if not isinstance(content, dict):
            issues.append(PolicyIssue(source, document, section, "must be a mapping"))
            continue
        for key, value in content.items():
            if not isinstance(key, str) or not isinstance(value, str):
                issues.append(PolicyIssue(source, document, f"{section}.{key}", "must be a string"))
            elif section == "data":
                try:
                    values[key] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    issues.append(PolicyIssue(source, document, f"data.{key}", "not valid base64"))
            else:
                values[key] = value.encode()
    return issues or ((namespace, metadata["name"]), values)


def parse_manifests(documents: Iterable[tuple[str, int | None, object]]) -> Loaded:
    """Each item is (source, document index, parsed YAML/JSON object). Policies and Secrets only."""
    policies: list[PolicySource] = []
    secrets: dict[tuple[str, str], dict[str, bytes]] = {}
    issues: list[PolicyIssue] = []
    for order, (source, document, manifest) in enumerate(documents):
        if manifest is None:
            continue  # an empty document in a stream (e.g. a trailing `---`)
        if not isinstance(manifest, dict):
            issues.append(PolicyIssue(source, document, "", "document is not a mapping"))
            continue
        kind, api_version = manifest.get("kind"), manifest.get("apiVersion")
        if kind == "Secret" and api_version == "v1":
            parsed = _parse_secret(manifest, source, document)
            if isinstance(parsed, list):
                issues.extend(parsed)
            elif parsed[0] in secrets:
                issues.append(
                    PolicyIssue(source, document, "metadata.name", f"duplicate Secret {parsed[0][0]}/{parsed[0][1]}")
                )
            else:
                secrets[parsed[0]] = parsed[1]
        elif kind == KIND:
            try:
                policy = OAuthPolicy.model_validate(manifest)
            except ValidationError as error:
                issues.extend(_pydantic_issues(error, source, document))
            else:
                policies.append(PolicySource(policy, source, document, order))
        else:
            issues.append(
                PolicyIssue(
                    source,
                    document,
                    "kind",
                    f"expected {KIND} ({API_VERSION}) or Secret (v1), got {kind!r} ({api_version!r})",
                )
            )
    return Loaded(policies, Secrets(secrets), issues)


def read_yaml_documents(path: str | Path) -> list[tuple[str, int | None, object]]:
    """Every YAML document of a file; a syntax error becomes a thrown PolicyError-ready issue list."""
    name = str(path)
    file = Path(path)
    try:
        if file.stat().st_size > MAX_POLICY_FILE_BYTES:
            raise _FileIssue(PolicyIssue(name, None, "", "file larger than 4 MiB"))
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise _FileIssue(PolicyIssue(name, None, "", f"cannot read: {error.strerror}")) from None
    except UnicodeDecodeError:
        raise _FileIssue(PolicyIssue(name, None, "", "not UTF-8 text")) from None
    documents: list[tuple[str, int | None, object]] = []
    try:
        for index, document in enumerate(yaml.safe_load_all(text), start=1):
            documents.append((name, index, document))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise _FileIssue(PolicyIssue(name, len(documents) + 1, "", f"{problem}{where}")) from None
    except RecursionError:
        raise _FileIssue(PolicyIssue(name, len(documents) + 1, "", "nested too deeply")) from None
    return documents


class _FileIssue(Exception):
    def __init__(self, issue: PolicyIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def load_files(paths: Iterable[str | Path]) -> Loaded:
    documents: list[tuple[str, int | None, object]] = []
    file_issues: list[PolicyIssue] = []
    for path in paths:
        try:
            documents.extend(read_yaml_documents(path))
        except _FileIssue as problem:
            file_issues.append(problem.issue)
    loaded = parse_manifests(documents)
    return Loaded(loaded.policies, loaded.secrets, file_issues + loaded.issues)
