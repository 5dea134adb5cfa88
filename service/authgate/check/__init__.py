"""The check: a CheckRequest in, a Decision out (route, rule, credentials, token, roles,
requirements). Knows no web framework, no gRPC, no Kubernetes: server/ translates."""
