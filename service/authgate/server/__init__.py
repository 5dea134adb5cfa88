"""The process: configuration, the running service, one ASGI app per port, the gRPC port,
logs and the Uvicorn listeners. The only layer that knows Starlette, Uvicorn and gRPC."""
