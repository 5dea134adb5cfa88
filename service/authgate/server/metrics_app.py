"""The metrics port."""

from __future__ import annotations

from prometheus_client import make_asgi_app


def create_metrics_app():
    """The metrics port: `/metrics` and nothing else, so that an `auth_request` or a probe
    pointed at the wrong port gets 404, never a 200 that looks like an allow."""
    exposition = make_asgi_app()

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] != "/metrics":
            body = b'{"error":"not_found"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await exposition(scope, receive, send)

    return app
