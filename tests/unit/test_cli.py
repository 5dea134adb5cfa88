"""The command line's own answers (the commands themselves are tested through real processes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# authgate.cli as installed without the `operator` extra: authgate_operator cannot be imported.
WITHOUT_OPERATOR = """
import sys
sys.modules["authgate_operator"] = None
sys.modules["authgate_operator.main"] = None
from authgate.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "arguments",
    [[], ["--namespace", "apps", "--service", "authgate/authgate"], ["--help"], ["-h"], ["--standalone", "x", "y"]],
)
def test_operator_without_its_extra_says_how_to_install_it(arguments):
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPERATOR, "operator", *arguments], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "pip install 'authgate[operator]'" in result.stderr
    assert "unrecognized arguments" not in result.stderr


def test_unknown_arguments_of_other_commands_are_still_refused():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPERATOR, "validate", "x.yaml", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr
