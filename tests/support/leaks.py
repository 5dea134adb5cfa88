"""The guard that fails a test whenever a token it minted shows up in a captured log.

Every token a test makes (the `mint` fixture, IdP tokens, exchanged tokens) joins
`MINTED_TOKENS`; an authgate log is then searched for each of them, and for its signature.
"""

from __future__ import annotations

MINTED_TOKENS: set[str] = set()


def assert_no_token_in(text: str, where: str) -> None:
    for token in MINTED_TOKENS:
        signature = token.rsplit(".", 1)[-1]
        assert token not in text and (len(signature) < 16 or signature not in text), f"a token leaked into {where}"


def assert_clean_log(text: str, where: str) -> None:
    """An authgate log: no token, and no traceback (bad input is answered, never crashed on)."""
    assert_no_token_in(text, where)
    assert "Traceback (most recent call last)" not in text, f"a traceback in {where}"
