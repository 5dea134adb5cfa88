"""Traefik v3 running `examples/traefik/traefik.yml` + `dynamic.yml`, moved onto test ports.

The binary is built from Go modules by `make tools` (hack/tools/). Rendering swaps the
example's fixed addresses in one pass and fails if one is missing:

    127.0.0.1:8000   the web entry point       127.0.0.1:8082   authgate check port
    127.0.0.1:8090   the ping entry point      127.0.0.1:8080   authgate public port
    127.0.0.1:9000   the app                   dynamic.yml      its rendered absolute path
    127.0.0.1:8443   the websecure entry point /etc/traefik/tls/ certificate, key, client CA
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from tests.infra.ports import free_port
from tests.infra.processes import HttpUrl, Process
from tests.infra.tls import TestCA, proxy_tls_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "traefik"
EXAMPLE_HOST = "mcp.example.com"


def _render(text: str, replacements: dict[str, str], name: str) -> str:
    missing = [token for token in replacements if token not in text]
    if missing:
        raise ValueError(f"Traefik example {name} lacks what the tests replace: {missing}")
    pattern = re.compile("|".join(re.escape(token) + r"\b" for token in replacements))
    return pattern.sub(lambda match: replacements[match.group(0)], text)


class Traefik:
    """Attributes: `url`, `tls_url`, `host`, `listen_port`, `tls_port`, `ca` (of the TLS
    certificate and of the client certificates accepted: `ca`, or a new one), `process`.
    Methods: `start()`, `stop()`."""

    def __init__(
        self,
        work_dir: Path,
        *,
        binary: Path,
        check_port: int,
        public_port: int,
        app_port: int,
        ca: TestCA | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.listen_port, self.ping_port, self.tls_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.listen_port}"
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.ca, tls_dir = proxy_tls_directory(self.work_dir / "tls", EXAMPLE_HOST, ca)
        self.host = EXAMPLE_HOST
        dynamic = self.work_dir / "dynamic.yml"
        dynamic.write_text(
            _render(
                (EXAMPLES / "dynamic.yml").read_text(),
                {
                    "127.0.0.1:8082": f"127.0.0.1:{check_port}",
                    "127.0.0.1:8080": f"127.0.0.1:{public_port}",
                    "127.0.0.1:9000": f"127.0.0.1:{app_port}",
                    "/etc/traefik/tls/": f"{tls_dir}/",
                },
                "dynamic.yml",
            )
        )
        self.config_file = self.work_dir / "traefik.yml"
        self.config_file.write_text(
            _render(
                (EXAMPLES / "traefik.yml").read_text(),
                {
                    "127.0.0.1:8000": f"127.0.0.1:{self.listen_port}",
                    "127.0.0.1:8090": f"127.0.0.1:{self.ping_port}",
                    "127.0.0.1:8443": f"127.0.0.1:{self.tls_port}",
                    "filename: dynamic.yml": f"filename: {dynamic}",
                },
                "traefik.yml",
            )
        )
        self.process = Process("traefik", [str(binary), f"--configFile={self.config_file}"], log_dir=self.work_dir)

    def start(self, timeout: float = 30.0) -> Traefik:
        self.process.start(HttpUrl(f"http://127.0.0.1:{self.ping_port}/ping", frozenset({200})), timeout=timeout)
        # /ping answers before the file provider's routers are in place: wait until the
        # example's host is routed (any answer but Traefik's own 404 for "no router").
        deadline = time.monotonic() + timeout
        while httpx.get(self.url, headers={"Host": self.host}, timeout=5).status_code == 404:
            if time.monotonic() > deadline:
                raise RuntimeError("Traefik never loaded the example's routers\n" + self.process.log_tail())
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Traefik:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
