"""The OAuth 2.1 authorization-server facade (spec.facade) for MCP clients, in front of the
real identity provider. Stateless: everything it must remember is sealed (authgate.sealing).

Built so far: redirect-URI rules and client registration (RFC 7591) as pure functions.
The HTTP endpoints, consent and the upstream flow are not served yet.
"""
