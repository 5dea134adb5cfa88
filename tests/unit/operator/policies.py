"""OAuthPolicy objects as the API server returns them, for the operator's unit tests."""


def policy(
    name: str,
    namespace: str = "apps",
    resource: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    generation: int = 1,
    **spec,
) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "generation": generation,
            "creationTimestamp": created,
            "resourceVersion": "7",
            "managedFields": [{"x": 1}],
        },
        "spec": {
            "resource": resource or f"https://{name}.example.com/mcp",
            "issuers": [{"issuer": "https://idp.example.com"}],
            **spec,
        },
        "status": {"conditions": []},
    }


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
