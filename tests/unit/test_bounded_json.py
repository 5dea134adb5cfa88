"""The one reader of untrusted JSON: size first, depth as a normal error, strict numbers."""

from __future__ import annotations

import pytest

from authgate import bounded_json
from authgate.errors import JSONInputError


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"a":' * 3000 + "1" + "}" * 3000, "nested too deeply"),
        ('{"exp": NaN}', "not JSON"),
        ('{"exp": Infinity}', "not JSON"),
        ('{"exp": -Infinity}', "not JSON"),
        ('{"exp": 1e400}', "not JSON"),  # overflows to inf: never a claim value
        ('{"exp": -1e400}', "not JSON"),
        ('{"exp": ' + "9" * 5000 + "}", "not JSON"),  # past the interpreter's int-digit limit
        ("{'a': 1}", "not JSON"),
        ('{"a": 1} x', "not JSON"),
        ("", "not JSON"),
    ],
)
def test_unbounded_or_non_strict_json_is_refused(text: str, why: str) -> None:
    with pytest.raises(JSONInputError, match=why):
        bounded_json.read(text, 1 << 20)


def test_the_size_is_checked_before_parsing() -> None:
    with pytest.raises(JSONInputError, match="larger than 16 bytes"):
        bounded_json.read(b'{"a": "' + b"x" * 100 + b'"}', 16)


def test_bytes_must_be_utf8() -> None:
    with pytest.raises(JSONInputError, match="not UTF-8"):
        bounded_json.read(b'{"a": "\xff"}', 100)


def test_strict_json_still_reads_numbers_and_nesting_a_token_may_carry() -> None:
    value = bounded_json.read(
        '{"exp": 1796162374, "f": 1.5, "n": -0.0, "big": ' + "1" * 400 + ', "a": [[[[1]]]]}', 4096
    )
    assert value["exp"] == 1796162374 and value["f"] == 1.5 and value["a"] == [[[[1]]]]
    assert value["big"] == int("1" * 400)  # a range is the caller's to check (tokens: NumericDate)


def test_read_object_wants_an_object() -> None:
    assert bounded_json.read_object(b'{"a": 1}', 100) == {"a": 1}
    with pytest.raises(JSONInputError, match="a JSON list, not an object"):
        bounded_json.read_object(b"[1]", 100)


def test_json_input_error_is_a_value_error() -> None:
    # callers that caught json's ValueError keep working
    assert issubclass(JSONInputError, ValueError)


def test_duplicate_members_are_refused_where_asked():
    text = '{"iss": "https://evil.example.com", "iss": "https://idp.example.com"}'
    assert bounded_json.read(text, 100)["iss"] == "https://idp.example.com"  # answers: the last, as RFC 8259 allows
    with pytest.raises(JSONInputError, match="not JSON"):
        bounded_json.read(text, 100, unique_members=True)  # tokens: refused (RFC 7519 §4)
    with pytest.raises(JSONInputError):
        bounded_json.read('{"a": {"b": 1, "b": 2}}', 100, unique_members=True)  # at any depth
