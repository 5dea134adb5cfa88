"""Token validation in-process: µs per validation, best of 5, many iterations each.

Rows per algorithm:
- floor: `cryptography` verify of the token's signing input with the same public key
  (an ES256 signature is DER-encoded once, outside the loop);
- authgate uncached: `TokenValidator.validate` with a verified-token cache that keeps
  nothing (max_entries=0), so every call parses, finds the key, verifies, checks claims,
  misses and fills the cache like a first-seen token does on the request path;
- authgate cached: the same with the real cache (a hit: SHA-256 of the token + lookup);
- jwcrypto: `jwt.JWT(jwt=token, key=jwk, algs=[alg], check_claims=...)`, what a
  straightforward implementation costs;
and, once: the whole in-process decision (`AuthService.check`, cache hit) with the
decision log off and on, which is what `--log-level` changes per request.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
import timeit
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk, jwt

from authgate.check.request import CheckRequest
from authgate.check.tokens.jwks import JwksSettings
from authgate.check.tokens.jws import parse_compact
from authgate.check.tokens.verified_cache import VerifiedTokenCache
from authgate.outbound.egress import EgressPolicy
from authgate.policy import compile_files
from authgate.server import logs
from authgate.server.service import AuthService, ServiceSettings
from bench.issuer import ALGORITHMS, RESOURCE, SCOPE, StaticIssuer

REPEAT = 5
MIN_TIME = 0.2  # seconds per repeat, as timeit's autorange
T = TypeVar("T")


@dataclass
class Row:
    alg: str
    floor_us: float
    uncached_us: float
    cached_us: float
    jwcrypto_us: float
    token_bytes: int


@dataclass
class MicroResult:
    rows: list[Row]
    check_quiet_us: float  # AuthService.check, cache hit, decision log below level
    check_logged_us: float  # the same, decision log at info through the JSON formatter
    iterations: dict[str, int]
    claim_checks_us: float = float("nan")  # split, base64url + JSON decode, typ/iss/aud/exp/nbf/sub checks


def claim_checker(token: str, issuer: str, audience: str) -> Callable[[], None]:
    """The least a validator must do besides the signature, by hand: split the compact JWS,
    decode header and payload, check typ, alg, iss, aud, exp, nbf and sub (the reference for
    the uncached-validation target, with the `cryptography` floor and a raw ASGI request)."""

    def check() -> None:
        header_b64, payload_b64, _ = token.split(".")
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        now = time.time()
        aud = claims["aud"]
        if not (
            header["typ"] == "at+jwt"
            and header["alg"] in ("RS256", "ES256", "EdDSA")
            and claims["iss"] == issuer
            and (aud == audience if isinstance(aud, str) else audience in aud)
            and claims["exp"] > now - 60
            and claims.get("nbf", 0) <= now + 60
            and isinstance(claims["sub"], str)
        ):
            raise ValueError("claims")

    return check


def best_sync(fn: Callable[[], object]) -> tuple[float, int]:
    """(best µs per call, calls per repeat)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * MIN_TIME / 0.2))
    best = min(timer.repeat(REPEAT, number))
    return best / number * 1e6, number


async def best_async(fn: Callable[[], Awaitable[object]]) -> tuple[float, int]:
    async def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        return time.perf_counter() - start

    number = 1
    while (elapsed := await run(number)) < MIN_TIME:
        number = max(number * 2, int(number * MIN_TIME / max(elapsed, 1e-9) * 1.1))
    best = min([elapsed] + [await run(number) for _ in range(REPEAT - 1)])
    return best / number * 1e6, number


def floor_verifier(public_key, alg: str, token: str) -> Callable[[], None]:
    parsed = parse_compact(token)
    data, signature = parsed.signing_input, parsed.signature
    if alg == "RS256":
        return lambda: public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        return lambda: public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    return lambda: public_key.verify(signature, data)


async def _measure(issuer: StaticIssuer, policy_file: Path) -> MicroResult:
    settings = ServiceSettings(
        egress=EgressPolicy(allow=("127.0.0.1",), insecure_http=True),
        jwks=JwksSettings(refresh_interval=3600.0),  # no refresh while measuring
    )
    service = AuthService(settings)
    service.load(compile_files([str(policy_file)], settings.validation))
    policy = service.snapshot.policies[0]
    entry = policy.issuers[0]
    keys = service.keys.get(entry.key_source)
    await keys.refresh()  # discovery + JWKS from the local issuer, once
    if keys.index is None:
        raise RuntimeError(f"keys not loaded: {keys.last_error}")
    validator = service.validator
    cached_cache = validator.cache
    no_cache: VerifiedTokenCache = VerifiedTokenCache(max_entries=0)
    iterations: dict[str, int] = {}
    rows = []
    try:
        for alg in ALGORITHMS:
            token = issuer.token(alg, RESOURCE, SCOPE)
            public = jwk.JWK(**issuer.public_jwk(alg))
            floor_us, iterations[f"{alg} floor"] = best_sync(floor_verifier(public.get_op_key("verify"), alg, token))

            validator.cache = no_cache
            verified = await validator.validate(token, policy)
            assert verified.subject == "bench-user" and len(no_cache) == 0
            uncached_us, iterations[f"{alg} uncached"] = await best_async(lambda t=token: validator.validate(t, policy))

            validator.cache = cached_cache
            await validator.validate(token, policy)
            assert len(cached_cache) == 1
            cached_us, iterations[f"{alg} cached"] = await best_async(lambda t=token: validator.validate(t, policy))
            cached_cache.clear()

            check_claims = {"iss": issuer.issuer, "aud": RESOURCE, "exp": None}
            jwt.JWT(jwt=token, key=public, algs=[alg], expected_type="JWS", check_claims=check_claims)
            jwcrypto_us, iterations[f"{alg} jwcrypto"] = best_sync(
                lambda t=token, k=public, a=alg, c=check_claims: jwt.JWT(
                    jwt=t, key=k, algs=[a], expected_type="JWS", check_claims=c
                )
            )
            rows.append(Row(alg, floor_us, uncached_us, cached_us, jwcrypto_us, len(token)))

        # The whole decision in-process (route, rule, cached token, roles, headers, metrics,
        # decision log), with the decision log off, then on (JSON to an in-memory stream).
        token = issuer.token("ES256", RESOURCE, SCOPE)
        request = CheckRequest(
            host="bench.example.com",
            path="/mcp/tools",
            method="POST",
            authorization=f"Bearer {token}",
            request_id="bench",
        )
        decision = await service.check(request, "nginx")
        assert decision.allowed, decision
        root = logging.getLogger()
        saved = (root.level, list(root.handlers))
        try:
            root.setLevel(logging.WARNING)
            quiet_us, iterations["check quiet"] = await best_async(lambda: service.check(request, "nginx"))
            sink = io.StringIO()
            handler = logging.StreamHandler(sink)
            handler.setFormatter(logs.JsonFormatter())
            root.handlers[:] = [handler]
            root.setLevel(logging.INFO)

            async def logged():
                sink.seek(0)
                sink.truncate()
                return await service.check(request, "nginx")

            logged_us, iterations["check logged"] = await best_async(logged)
            line = json.loads(sink.getvalue().splitlines()[-1])
            assert line["logger"] == "authgate.decision" and line["decision"] == "allow", line
        finally:
            root.setLevel(saved[0])
            root.handlers[:] = saved[1]
    finally:
        await service.stop()
    claims_token = issuer.token("ES256", RESOURCE, SCOPE)
    claims_us, iterations["claim checks"] = best_sync(claim_checker(claims_token, issuer.issuer, RESOURCE))
    return MicroResult(rows, quiet_us, logged_us, iterations, claims_us)


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is installed (authgate serves on it), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def measure(issuer: StaticIssuer, policy_file: Path) -> MicroResult:
    return run_on_uvloop(_measure(issuer, policy_file))


def write_reference_input(path: Path, issuer: StaticIssuer, alg: str, token: str, audience: str) -> Path:
    path.write_text(
        json.dumps(
            {"alg": alg, "token": token, "jwk": issuer.public_jwk(alg), "issuer": issuer.issuer, "audience": audience}
        )
    )
    return path


def reference(input_file: Path) -> dict[str, float]:
    """The uncached-validation reference's in-process terms for one token: the `cryptography`
    floor and the claim checks, µs (best of 5). bench/table.py runs it pinned to the server CPU
    right after each distinct-token run, so it sees the same machine as that run."""
    spec = json.loads(input_file.read_text())
    public = jwk.JWK(**spec["jwk"]).get_op_key("verify")
    floor_us, _ = best_sync(floor_verifier(public, spec["alg"], spec["token"]))
    claims_us, _ = best_sync(claim_checker(spec["token"], spec["issuer"], spec["audience"]))
    return {"floor_us": floor_us, "claims_us": claims_us}


if __name__ == "__main__":  # python -m bench.micro reference INPUT.json (bench/table.py)
    import sys

    if sys.argv[1:2] != ["reference"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.micro reference INPUT.json")
    print(json.dumps(reference(Path(sys.argv[2]))))
