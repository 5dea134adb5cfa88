"""The OAuth 2.1 authorization-server facade (spec.facade) for MCP clients, in front of the
real identity provider. Stateless: everything it must remember is sealed (`records.py`,
authgate.sealing). `routes.Facade` is what the public port serves; one module per endpoint
(metadata, register, authorize, callback, token, introspect, revoke), pure rules beside them
(authorization_request, registration, redirects, clients), and one error mapping (answers).
"""
