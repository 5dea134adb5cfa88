"""The Python gRPC ceiling: a trivial unary servicer of
`envoy.service.auth.v3.Authorization/Check` returning one fixed, prebuilt CheckResponse
(status OK), with nothing parsed and nothing decided.

    python -m bench.grpc_ceiling PORT          # grpc.aio (issue #14's reference)
    python -m bench.grpc_ceiling PORT sync     # grpcio's synchronous server, as authgate runs it

Both with the same message-size cap as authgate's gRPC port; `sync` with the same worker
pool (server/grpc_app.py), so "authgate gRPC Check / this" is the share of the ceiling of
the implementation authgate uses.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import status_pb2

RESPONSE = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0))


class FixedAnswer(external_auth_pb2_grpc.AuthorizationServicer):
    async def Check(self, request, context) -> external_auth_pb2.CheckResponse:
        return RESPONSE


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 1024 * 1024)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(FixedAnswer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def serve_sync(port: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from authgate.server.grpc_app import WORKERS

    class Fixed(external_auth_pb2_grpc.AuthorizationServicer):
        def Check(self, request, context) -> external_auth_pb2.CheckResponse:
            return RESPONSE

    server = grpc.server(
        ThreadPoolExecutor(max_workers=WORKERS), options=[("grpc.max_receive_message_length", 1024 * 1024)]
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Fixed(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def main(port: int, sync: bool = False) -> None:
    if sync:
        serve_sync(port)
        return
    try:
        import uvloop  # as authgate's process runs

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(serve(port))


if __name__ == "__main__":
    main(int(sys.argv[1]), sync=sys.argv[2:] == ["sync"])
