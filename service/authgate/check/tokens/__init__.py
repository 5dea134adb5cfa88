"""Access-token validation: compact JWS, the issuers' keys (JWKS), RFC 7662 introspection,
and the verified-token cache."""
