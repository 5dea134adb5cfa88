"""Offline kubeconform with strict schemas: `kubeconform(paths)` validates manifests.

The schemas are built once by `make tools` (hack/schemas/build.sh) into the tool cache,
`$AUTHGATE_TOOLS_DIR/schemas-<key>/`, from the pinned Kubernetes, Gateway API, Envoy
Gateway, Istio and Traefik modules; kubeconform itself by hack/tools/build.sh. The
repository's own CRDs (crds/*.yaml) change with the code, so they are converted per test
run into a temporary directory, searched after the cached one.

Every object that lists its fields refuses unknown ones, so a typo fails. kubeconform runs
with `-strict` (duplicate keys fail too) and without `-ignore-missing-schemas` (a kind
without a schema is an error, never a silent skip). `MESH_CONFIG_API_VERSION` /
`MESH_CONFIG_KIND` name the synthetic kind carrying Istio's MeshConfig schema.

When the schemas or kubeconform are missing, the helpers skip the test locally and fail it
under CI=true (tests.infra.availability.require_tool).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tests.infra.availability import require_tool

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_BUILD = ROOT / "hack" / "schemas" / "build.sh"
GENERATOR = ROOT / "hack" / "schemas" / "openapi2jsonschema.py"
TOOLS_BUILD = ROOT / "hack" / "tools" / "build.sh"
OWN_CRDS = ROOT / "crds"
# kubeconform's own naming: lowercased kind, then -<group's first label>-<version>.
LOCATION = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
MESH_CONFIG_API_VERSION = "mesh.istio.io/v1alpha1"
MESH_CONFIG_KIND = "MeshConfig"


def _print_path(script: Path, *args: str) -> Path | None:
    if not script.is_file():
        return None
    result = subprocess.run(
        ["bash", str(script), "--print-path", *args], capture_output=True, text=True, check=False, timeout=60
    )
    found = result.stdout.strip()
    return Path(found) if result.returncode == 0 and found and Path(found).exists() else None


@functools.cache
def schema_dir() -> Path | None:
    """The cached schema directory for the pinned versions, or None if not built."""
    return _print_path(SCHEMAS_BUILD)


@functools.cache
def kubeconform_binary() -> Path | None:
    """$KUBECONFORM, else the binary hack/tools/build.sh built, else None."""
    if os.environ.get("KUBECONFORM"):
        binary = Path(os.environ["KUBECONFORM"])
        return binary if binary.is_file() else None
    return _print_path(TOOLS_BUILD, "kubeconform")


def require_kubeconform() -> tuple[Path, Path]:
    """(kubeconform, schema dir); skips (locally) or fails (CI=true) when either is missing."""
    binary, schemas = kubeconform_binary(), schema_dir()
    require_tool(None if binary else "kubeconform not built: run make tools (hack/tools/build.sh kubeconform)")
    require_tool(None if schemas else "kubeconform schemas not built: run make tools (hack/schemas/build.sh)")
    assert binary is not None and schemas is not None
    return binary, schemas


@functools.cache
def own_crd_schema_dir() -> Path | None:
    """The repository's CRDs converted (strict, real ObjectMeta) into a temporary
    directory, once per test run; None when crds/ has none."""
    files = sorted(p for p in OWN_CRDS.glob("*.y*ml") if "CustomResourceDefinition" in p.read_text())
    if not files:
        return None
    _, schemas = require_kubeconform()
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in [GENERATOR, *files])).hexdigest()[:12]
    out = Path(tempfile.mkdtemp(prefix=f"authgate-crd-schemas-{digest}-"))
    atexit.register(shutil.rmtree, out, True)
    command = [sys.executable, str(GENERATOR), "--out", str(out), "--meta", str(schemas)]
    for path in files:
        command += ["--crd", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"converting {[str(p) for p in files]} failed:\n{result.stderr}")
    return out


def kubeconform(paths: Iterable[str | os.PathLike[str]], *extra_args: str) -> subprocess.CompletedProcess[str]:
    """`kubeconform -strict -summary -output json -verbose` over `paths` (files or
    directories), offline, with the cached schemas and the repository's CRDs. The JSON
    report is on stdout (`resources`: one entry per object with `status`, `msg`;
    `summary`); the exit status is non-zero if anything is invalid or has no schema."""
    binary, schemas = require_kubeconform()
    locations = [schemas]
    own = own_crd_schema_dir()
    if own is not None:
        locations.append(own)
    command = [str(binary), "-strict", "-summary", "-output", "json", "-verbose"]
    for location in locations:
        command += ["-schema-location", f"{location}/{LOCATION}"]
    command += [*extra_args, "--", *(os.fspath(p) for p in paths)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def report(result: subprocess.CompletedProcess[str]) -> dict:
    """kubeconform's JSON report; raises with its output when there is none."""
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"kubeconform gave no JSON report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        ) from None
