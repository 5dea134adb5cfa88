"""Policy documents and helpers shared by the policy package's tests."""

from pathlib import Path

import pytest

from authgate.errors import PolicyError
from authgate.policy import ValidationSettings, compile_files

EXAMPLES = Path(__file__).parents[3] / "examples" / "policies"
STRICT = ValidationSettings()

BASE = """\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {name: api, namespace: apps}
spec:
  resource: https://mcp.example.com/mcp
  issuers:
    - issuer: https://idp.example.com
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def issues_of(tmp_path: Path, text: str, settings: ValidationSettings = STRICT) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        compile_files([path], settings)
    return [str(issue) for issue in raised.value.issues]
