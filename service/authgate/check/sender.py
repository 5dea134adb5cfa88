"""Sender-constrained tokens: hold a verified token to the binding it carries.

RFC 9449 §7 (DPoP) and RFC 8705 §3 (certificate-bound tokens), under the issuer entry's
`senderConstraint` (Optional: a bound token proves its binding, an unbound one is a
bearer token; Required: every token carries that binding; Disabled: none may). A token
whose binding cannot be checked is never accepted: cnf members authgate does not know
were refused by the validator already, and a certificate-bound token with no
certificate from the proxy is refused here.

The client certificate reaches authgate only from the proxy that terminated TLS, in the
one header the service was told to trust (server/dialects/client_cert.py): never policy,
since the thumbprint a client would need to forge is readable in its token.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from authgate.check.credentials import Credentials
from authgate.check.request import CheckRequest
from authgate.check.tokens.dpop import Proof, ProofTarget, ProofVerifier, b64url
from authgate.check.tokens.validator import VerifiedToken
from authgate.errors import ProofError, TokenError
from authgate.policy.snapshot import CompiledPolicy


def proof_target(policy: CompiledPolicy, request: CheckRequest) -> ProofTarget:
    """The URL a proof must name; a dialect that carries no scheme takes the resource's."""
    scheme = request.scheme or urlsplit(policy.resource).scheme
    return ProofTarget(request.method, scheme, request.host, request.path)


def _check_dpop_form(credentials: Credentials, token: VerifiedToken) -> None:
    mode = token.issuer.dpop
    if token.jkt is not None:
        if mode == "Disabled":
            raise TokenError("DPoP-bound tokens are not accepted from this issuer")
        if credentials.scheme != "DPoP":
            raise TokenError("a DPoP-bound token must be sent with the DPoP scheme")
    elif credentials.scheme == "DPoP":
        raise TokenError("the DPoP scheme needs a DPoP-bound token (cnf.jkt)")
    elif mode == "Required":
        raise TokenError("this issuer's tokens must be DPoP-bound")


def _check_certificate(request: CheckRequest, token: VerifiedToken) -> None:
    mode = token.issuer.mtls
    if token.x5t is None:
        if mode == "Required":
            raise TokenError("this issuer's tokens must be certificate-bound")
        return
    if mode == "Disabled":
        raise TokenError("certificate-bound tokens are not accepted from this issuer")
    if request.client_cert_sha256 is None:
        raise TokenError("certificate-bound token without a client certificate")
    if not hmac.compare_digest(b64url(request.client_cert_sha256), token.x5t):
        raise TokenError("the client certificate is not the one the token is bound to")


def check_binding(
    policy: CompiledPolicy,
    request: CheckRequest,
    credentials: Credentials,
    token: VerifiedToken,
    proofs: ProofVerifier | None,
) -> Proof | None:
    """The token's binding holds for this request (TokenError or ProofError otherwise).
    Returns the DPoP proof that proved it, already consumed (its jti is remembered)."""
    _check_dpop_form(credentials, token)
    _check_certificate(request, token)
    if token.jkt is None:
        return None
    if request.dpop is None:
        raise ProofError("DPoP proof missing")
    if proofs is None:  # a caller that cannot check proofs accepts no DPoP-bound token
        raise ProofError("DPoP proofs are not checked here")
    proof = proofs.verify(
        request.dpop,
        credentials.token,
        proof_target(policy, request),
        policy.dpop,
        policy.uid,
        token.issuer.clock_skew_seconds,
    )
    if not hmac.compare_digest(proof.jkt, token.jkt):
        raise TokenError("the DPoP proof's key is not the one the token is bound to")
    proofs.consume(proof)
    return proof
