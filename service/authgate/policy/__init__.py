"""OAuthPolicy: model, loading, validation and compilation into an immutable Snapshot.

Pure code: no web framework, no Kubernetes client, no network. The operator imports it.
"""

from authgate.policy.compile import (
    CompileResult,
    compile_document,
    compile_files,
    compile_loaded,
    compile_strict,
    snapshot_document,
)
from authgate.policy.loader import Loaded, PolicySource, Secrets, load_files, parse_manifests
from authgate.policy.secret_refs import SecretReference, secret_names, secret_refs
from authgate.policy.snapshot import EMPTY_SNAPSHOT, FORMAT_VERSION, CompiledPolicy, Snapshot
from authgate.policy.validation import ValidationSettings

__all__ = [
    "EMPTY_SNAPSHOT",
    "FORMAT_VERSION",
    "CompileResult",
    "CompiledPolicy",
    "Loaded",
    "PolicySource",
    "SecretReference",
    "Secrets",
    "Snapshot",
    "ValidationSettings",
    "compile_document",
    "compile_files",
    "compile_loaded",
    "compile_strict",
    "load_files",
    "parse_manifests",
    "secret_names",
    "secret_refs",
    "snapshot_document",
]
