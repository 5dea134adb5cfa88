"""The guard that fails a test whenever a token, a secret or a cookie value it handled
shows up in a captured log.

Every token a test makes (the `mint` fixture, IdP tokens, exchanged tokens) joins
`MINTED_TOKENS`; every secret and cookie value (admin tokens, client secrets, the facade's
browser and consent cookies) joins `SECRETS`; an authgate log is then searched for each of
them (and for each token's signature).
"""

from __future__ import annotations

MINTED_TOKENS: set[str] = set()
SECRETS: set[str] = set()
_SHORTEST_SECRET = 12  # shorter values could occur in a log by chance


def remember_secret(value: str | None) -> None:
    if value and len(value) >= _SHORTEST_SECRET:
        SECRETS.add(value)


def assert_no_token_in(text: str, where: str) -> None:
    for token in MINTED_TOKENS:
        signature = token.rsplit(".", 1)[-1]
        assert token not in text and (len(signature) < 16 or signature not in text), f"a token leaked into {where}"


def assert_no_secret_in(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret or cookie value leaked into {where}"


def assert_clean_log(text: str, where: str) -> None:
    """An authgate log: no token, secret or cookie value, and no traceback (bad input is
    answered, never crashed on)."""
    assert_no_token_in(text, where)
    assert_no_secret_in(text, where)
    assert "Traceback (most recent call last)" not in text, f"a traceback in {where}"
