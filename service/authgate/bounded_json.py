"""The one reader of JSON from untrusted bytes: tokens, sealed values, admin bodies, client
registrations and every answer of an outbound call.

Three bounds, all at the C parser's speed: the size is checked before parsing; the
parser's own recursion limit bounds nesting, and its RecursionError is mapped to a normal
error (never a 5xx or a traceback); numbers are strict RFC 8259 (`NaN`, `Infinity` and
values that overflow a float such as `1e400` are refused, so no claim can be infinite).
Integers keep Python's arbitrary precision (capped at 4,300 digits by the interpreter):
callers that need a range check it. With `unique_members`, an object naming a member twice
is refused (RFC 7515 §5.2, RFC 7519 §4: for tokens, which another parser might read by its
first member while we read the last); it costs a Python hook per object, so it is for
tokens, not for every answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

from authgate.errors import JSONInputError


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# The standard C parser; the hooks run only for float literals and NaN/Infinity.
def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate member")
    return value


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_refuse_constant)
_UNIQUE_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_constant=_refuse_constant, object_pairs_hook=_unique_members
)


def read(data: bytes | str, max_bytes: int, unique_members: bool = False) -> Any:
    """Parse `data` (UTF-8 when bytes) as strict JSON of at most `max_bytes`."""
    if len(data) > max_bytes:
        raise JSONInputError(f"larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return (_UNIQUE_DECODER if unique_members else _DECODER).decode(text)
    except RecursionError:
        raise JSONInputError("nested too deeply") from None
    except UnicodeDecodeError:
        raise JSONInputError("not UTF-8") from None
    except ValueError:  # json.JSONDecodeError, the hooks, and int digits past the interpreter's limit
        raise JSONInputError("not JSON") from None


def read_object(data: bytes | str, max_bytes: int, unique_members: bool = False) -> dict[str, Any]:
    """`read`, and the value must be a JSON object."""
    value = read(data, max_bytes, unique_members)
    if not isinstance(value, dict):
        raise JSONInputError(f"a JSON {type(value).__name__}, not an object")
    return value
