"""A test tool that is not installed: skipped locally, a failure under CI=true.

require_tool(None if shutil.which("nginx") else "nginx not installed: run make tools")
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_tool(problem: str | None) -> None:
    """Skip locally when a tool is missing; under CI=true a missing tool fails the test."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)
