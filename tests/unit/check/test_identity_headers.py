"""Identity headers: what reaches the upstream, and what never does."""

import pytest

from authgate.check.identity_headers import header_value


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("alice", "alice"),
        (42, "42"),
        (True, "true"),
        (["a", "b"], "a,b"),
        ("alice\r\nX-Admin: 1", None),  # header injection
        ("tab\there", None),
        ("José", None),  # non-ASCII is left out, not mangled
        ("", None),
        ({"nested": 1}, None),
        ([1, 2], None),
        ("x" * 5000, None),
    ],
)
def test_only_printable_ascii_claims_become_header_values(claim, expected):
    assert header_value(claim) == expected
