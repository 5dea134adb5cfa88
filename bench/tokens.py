"""Many distinct valid tokens, fast, and a client that presents each one once.

`distinct_tokens` signs with `cryptography` directly (the same header and claims as
`StaticIssuer.token`, a distinct `sub` and `jti` each): 100,000 ES256 tokens take seconds,
where jwcrypto would take minutes. `present_once` sends one check per token over 32
keep-alive connections (raw asyncio streams, as bench/paced_load.py does), so a server's
verified-token cache ends up holding as many of them as it keeps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bench.issuer import StaticIssuer
from bench.paced_load import read_response


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def distinct_tokens(issuer: StaticIssuer, alg: str, audience: str, scope: str, count: int) -> list[str]:
    key = issuer.keys[alg]
    private = key.key.get_op_key("sign")
    header = _b64(json.dumps({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, separators=(",", ":")).encode())
    now = int(time.time())
    tokens = []
    for i in range(count):
        claims = {
            "iss": issuer.issuer,
            "aud": audience,
            "sub": f"bench-user-{i}",
            "client_id": "bench-client",
            "scope": scope,
            "iat": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        }
        signing_input = f"{header}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}".encode()
        if alg == "ES256":
            r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        elif alg == "RS256":
            signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:  # EdDSA (Ed25519)
            signature = private.sign(signing_input)
        tokens.append(f"{signing_input.decode()}.{_b64(signature)}")
    return tokens


def write_tokens(path: Path, tokens: Sequence[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path


async def _present(host: str, port: int, requests: list[bytes], connections: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < len(requests):
                request = requests[next_index]
                next_index += 1
                writer.write(request)
                status, close = await asyncio.wait_for(read_response(reader), 30)
                statuses[status] = statuses.get(status, 0) + 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses


def present_once(
    port: int, path: str, host_header: str, tokens: Sequence[str], connections: int = 32
) -> dict[int, int]:
    """One GET `path` per token on 127.0.0.1:`port`; the statuses counted."""
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        for token in tokens
    ]
    return asyncio.run(_present("127.0.0.1", port, requests, connections))
