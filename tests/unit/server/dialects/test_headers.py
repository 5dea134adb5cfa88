"""The one header-reading rule every check dialect feeds (server.dialects.headers.collect)."""

import pytest

from authgate.errors import BadRequest
from authgate.server.dialects.headers import MAX_HEADER_VALUE, collect, method, request_id

WANTED_BYTES = frozenset({b"authorization", b"mcp-name", b"x-original-url"})
WANTED_TEXT = frozenset({"authorization", "mcp-name", "x-original-url"})


def both_forms(pairs: list[tuple[str, str]]):
    """The same headers as the ASGI list (bytes) and as gRPC hands them over (text)."""
    return [(n.encode(), v.encode("latin-1")) for n, v in pairs], pairs


def read(pairs):
    as_bytes, as_text = both_forms(pairs)
    return collect(as_bytes, WANTED_BYTES), collect(as_text, WANTED_TEXT)


def refused(pairs) -> list[str]:
    messages = []
    for form, wanted in zip(both_forms(pairs), (WANTED_BYTES, WANTED_TEXT), strict=True):
        with pytest.raises(BadRequest) as raised:
            collect(form, wanted)
        messages.append(str(raised.value))
    return messages


def test_the_headers_read_come_back_by_name_in_either_form():
    from_bytes, from_text = read([("authorization", "Bearer abc"), ("cookie", "x=1"), ("mcp-name", "search")])
    assert from_bytes == {b"authorization": "Bearer abc", b"mcp-name": "search"}
    assert from_text == {"authorization": "Bearer abc", "mcp-name": "search"}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("mcp-name", "admin_delete"), ("mcp-name", "search")], "mcp-name header sent more than once"),
        ([("authorization", "Bearer a"), ("authorization", "Bearer a")], "authorization header sent more than once"),
        (
            [("mcp-name", "admin_delete,search")],
            "mcp-name header must be one ASCII value without commas",
        ),  # a joined repeat
        ([("authorization", "Bearer a, Bearer b")], "authorization header must be one ASCII value without commas"),
        ([("mcp-name", "caf\xe9")], "mcp-name header must be one ASCII value without commas"),
        ([("Mcp-Name", "search"), ("mcp-name", "search")], "mcp-name header sent more than once"),
        ([("mcp-name", "x" * (MAX_HEADER_VALUE + 1))], "mcp-name header too large"),
        ([(f"x-filler-{i}", "x" * 15_000) for i in range(5)], "request headers too large"),
    ],
)
def test_ambiguous_or_oversized_headers_are_refused_alike(pairs, message):
    assert refused(pairs) == [message, message]


def test_unread_headers_are_neither_capped_nor_checked():
    big = "x" * (MAX_HEADER_VALUE + 1)
    assert read([("cookie", big), ("cookie", "a,b"), ("x-note", "caf\xe9")]) == ({}, {})


def test_a_url_may_hold_commas():
    assert read([("x-original-url", "https://a.example/p?x=1,2")])[1] == {"x-original-url": "https://a.example/p?x=1,2"}


def test_anchors_hold_at_the_true_end():
    assert request_id("abc\n") != "abc\n"
    with pytest.raises(BadRequest):
        method("GET\n", "method")
