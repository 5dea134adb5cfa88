"""Sealing keys rotated while flows are in progress (#16 reliability): the running authgate
follows its --sealing-keys file as a mounted Secret changes, and every flow started under the
old key finishes. The key file is rewritten in place the way a Secret update lands (a new file
renamed over the old one), between the steps of real authorization-code flows through the
real oidc-provider."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.facade import FacadeHarness, jose_header, sealing_keys_file


def rotate(path: Path, new_keys: list[dict]) -> None:
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(json.dumps({"keys": new_keys}))
    os.replace(staged, path)


def loaded_kids(facade: FacadeHarness) -> list[list[str]]:
    """The kids of every "sealing keys loaded" line so far (the file is checked every 10 s)."""
    lines = [json.loads(line) for line in facade.authgate.log().splitlines() if '"sealing keys loaded"' in line]  # type: ignore[attr-defined]
    return [line["kids"] for line in lines]


def test_sealing_key_rotated_mid_flow_flows_started_before_finish(
    start_facade: Callable[..., FacadeHarness], tmp_path: Path
) -> None:
    keys_file = sealing_keys_file(tmp_path / "keys.json", "k1")
    k1 = json.loads(keys_file.read_text())["keys"]
    k2 = json.loads(sealing_keys_file(tmp_path / "k2.json", "k2").read_text())["keys"]
    facade = start_facade(keys=keys_file)
    client = facade.register()
    assert jose_header(client.client_id)["kid"] == "k1"
    at_consent = facade.start(client)  # the transaction is sealed with k1
    decided = facade.start(client)
    at_upstream = facade.decide(decided, "approve")  # on its way to the upstream, sealed with k1
    assert at_upstream.status_code == 303, at_upstream.text[:300]

    rotate(keys_file, [*k1, *k2])  # k2 is appended: from now on it seals, k1 still opens
    deadline = time.monotonic() + 30
    while ["k1", "k2"] not in loaded_kids(facade):
        assert time.monotonic() < deadline, f"the rotated key file was never picked up: {loaded_kids(facade)}"
        facade.start(client)  # the file is looked at when keys are needed, at most every 10 s
        time.sleep(1)

    for finished in (
        facade.redeem(client, at_consent, facade.approve(at_consent)),
        facade.redeem(client, decided, facade.through_upstream(at_upstream, decided)),
    ):
        assert finished.status_code == 200, finished.text[:300]
        assert finished.json()["access_token"]
    fresh = facade.register()  # sealed with k2: a flow started now finishes too
    assert jose_header(fresh.client_id)["kid"] == "k2"
    assert facade.login(fresh)["access_token"]
