"""The command line's own answers (the commands themselves are tested through real processes)."""

from __future__ import annotations

import sys

import pytest

from authgate import cli


@pytest.fixture
def without_operator(monkeypatch):
    """authgate.cli as installed without the `operator` extra: authgate_operator cannot be imported."""
    monkeypatch.setitem(sys.modules, "authgate_operator", None)
    monkeypatch.setitem(sys.modules, "authgate_operator.main", None)
    monkeypatch.setattr(cli.logs, "configure", lambda level: None)  # the test process's logging stays as it is


@pytest.mark.parametrize(
    "arguments",
    [[], ["--namespace", "apps", "--service", "authgate/authgate"], ["--help"], ["-h"], ["--standalone", "x", "y"]],
)
def test_operator_without_its_extra_says_how_to_install_it(without_operator, capsys, arguments):
    assert cli.main(["operator", *arguments]) == 2
    stderr = capsys.readouterr().err
    assert "pip install 'authgate[operator]'" in stderr
    assert "unrecognized arguments" not in stderr


def test_unknown_arguments_of_other_commands_are_still_refused(without_operator, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["validate", "x.yaml", "--bogus"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
