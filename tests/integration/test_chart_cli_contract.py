"""The chart and the binary agree: every argument the chart's Deployments pass parses with
the real `authgate` command line (a renamed or missing flag would crash-loop the pods)."""

from __future__ import annotations

import pytest
from tests.infra.tools import require_built
from tests.integration.test_chart import CI_VALUES, Chart

from authgate.cli import build_parser

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: "default" if v is None else v.stem)
def test_every_rendered_container_command_parses(values) -> None:
    chart = Chart(require_built("helm"))
    objects = chart.render(*([values] if values else []))
    containers = [c for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]]
    assert {c["args"][0] for c in containers} == {"serve", "operator"}
    for container in containers:
        parsed = build_parser().parse_args(container["args"])  # SystemExit on an unknown flag
        assert parsed.command == container["args"][0]


def test_a_missing_sealing_key_file_does_not_stop_the_service(start_authgate, tmp_path) -> None:
    service = start_authgate(None, "--sealing-keys", str(tmp_path / "absent.json"), ready=False)
    assert service.process.running
    assert "sealing keys not found" in service.log()
