"""`--admin-audience`: the operator refuses to start with a token the replicas would refuse."""

from __future__ import annotations

import base64
import json

import pytest

from authgate_operator.admin_token import AdminTokenError, check_admin_token, token_audiences


def jwt(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_a_token_for_the_audience_passes():
    check_admin_token(jwt({"aud": ["https://kubernetes.default.svc", "authgate-admin"]}) + "\n", "authgate-admin")
    assert token_audiences(jwt({"aud": "one"})) == ["one"]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (jwt({"aud": ["https://kubernetes.default.svc"]}), "not --admin-audience authgate-admin"),
        (jwt({"sub": "x"}), "no audience"),
        ("a-shared-bearer-secret", "not a JWT"),
        ("a.!!!.c", "cannot be read"),
    ],
)
def test_a_token_the_replicas_would_refuse_is_refused_with_the_reason(token, message):
    with pytest.raises(AdminTokenError, match=message):
        check_admin_token(token, "authgate-admin")


def test_the_operator_does_not_start_with_a_token_for_another_audience(tmp_path, capsys):
    from authgate_operator.main import run

    token = tmp_path / "token"
    token.write_text(jwt({"aud": ["https://kubernetes.default.svc"]}))
    args = [
        "--service=ns/svc",
        "--snapshot-secret=ns/snap",
        f"--admin-token-file={token}",
        "--admin-audience=authgate.dev/admin/ns/authgate",
    ]
    import argparse

    from authgate_operator.main import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(args)) == 2
    assert "not --admin-audience authgate.dev/admin/ns/authgate" in capsys.readouterr().err
