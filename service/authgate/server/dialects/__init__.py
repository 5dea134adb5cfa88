"""Each gateway's way of asking (nginx, Traefik, Envoy HTTP and gRPC) turned into a
CheckRequest, and one Decision rendered back."""
