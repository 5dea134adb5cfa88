"""authgate as a client of other servers: the one egress client (timeouts, caps, SSRF
screening), OAuth client authentication, and RFC 8693 token exchange."""
