"""nginx running `examples/nginx/nginx.conf` itself, moved onto test ports.

The example is production-shaped and uses fixed addresses; rendering swaps them
in one pass (so a new port can never be rewritten by a later swap), and fails if
one is missing, so the example and the tests cannot drift apart:

    example text       becomes                           meaning
    listen 8000        listen 127.0.0.1:<listen_port>    the public server(s)
    listen 8443        listen 127.0.0.1:<tls_port>       the public server over TLS
    /etc/nginx/tls/    <prefix>/tls/                     its certificate, key, client CA
    127.0.0.1:8082     127.0.0.1:<check_port>            authgate check port
    127.0.0.1:8080     127.0.0.1:<public_port>           authgate public port
    127.0.0.1:9000     127.0.0.1:<app_port>              the app (e.g. EchoUpstream)

It then runs `nginx -p DIR -c nginx.conf -e stderr -g 'daemon off; pid ...;'`
with everything inside DIR: the access log (`access_log`), the temp paths
(added at the top of the `http {}` block, since Debian's compiled-in ones are under
/var/lib/nginx), errors to the process log. The example must therefore not set
`pid`, `user` or `daemon`. When run as root the workers also run as root
(`user root;`): the default `nobody` cannot enter pytest's 0700 temp dirs.

A pytest fixture would use it like this:

    @pytest.fixture
    def nginx(tmp_path, authgate, echo_upstream):
        with Nginx(tmp_path / "nginx", check_port=authgate.check_port,
                   public_port=authgate.port, app_port=echo_upstream.port) as proxy:
            yield proxy   # proxy.url, with Host: mcp.example.com

    httpx.get(f"{nginx.url}/mcp", headers={"Host": "mcp.example.com"})
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from functools import cache
from pathlib import Path

from tests.infra.ports import free_port
from tests.infra.processes import Process, TcpPort
from tests.infra.tls import TestCA, proxy_tls_directory

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "nginx" / "nginx.conf"
EXAMPLE_HOST = "mcp.example.com"

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@cache
def _compiled_modules(binary: str) -> str:
    return subprocess.run([binary, "-V"], capture_output=True, text=True, check=True).stderr


def render_config(
    template: str,
    *,
    listen_port: int,
    check_port: int,
    public_port: int,
    app_port: int,
    tls_port: int | None = None,
    tls_dir: Path | None = None,
) -> str:
    """The example's text with its fixed addresses replaced (see the module docstring);
    the TLS listener and its files only when `tls_port` and `tls_dir` are given."""
    replacements = {
        "listen 8000": f"listen 127.0.0.1:{listen_port}",
        "127.0.0.1:8082": f"127.0.0.1:{check_port}",
        "127.0.0.1:8080": f"127.0.0.1:{public_port}",
        "127.0.0.1:9000": f"127.0.0.1:{app_port}",
    }
    if tls_port is not None and tls_dir is not None:
        replacements["listen 8443"] = f"listen 127.0.0.1:{tls_port}"
        replacements["/etc/nginx/tls/"] = f"{tls_dir}/"
    missing = [token for token in replacements if token not in template]
    if missing:
        raise ValueError(f"nginx example lacks the address(es) the tests replace: {missing}")
    pattern = re.compile("|".join(re.escape(token) + r"\b" for token in replacements))
    return pattern.sub(lambda match: replacements[match.group(0)], template)


class Nginx:
    """Constructor: `work_dir` (becomes the nginx prefix), `check_port`,
    `public_port` (authgate), `app_port`, optional `listen_port` (default free),
    `config_path` (default the example), `binary` (default `nginx` on PATH), `ca` (the
    TestCA of the TLS listener's certificate and of the client certificates it accepts;
    default a new one).

    Attributes: `prefix`, `listen_port`, `url` (http://127.0.0.1:<listen_port>),
    `tls_port`, `tls_url` (https://127.0.0.1:<tls_port>), `ca`,
    `host` (the example's server_name), `config_file` (rendered), `access_log`,
    `process`. Methods: `start()`, `stop()`, `validate()` (`nginx -t`), `reload()`.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        check_port: int,
        public_port: int,
        app_port: int,
        listen_port: int | None = None,
        config_path: str | os.PathLike[str] = EXAMPLE_CONFIG,
        binary: str = "nginx",
        ca: TestCA | None = None,
    ) -> None:
        resolved = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
        if resolved is None:
            raise RuntimeError(f"`{binary}` not found: apt-get install nginx (run `make tools`)")
        self.binary = resolved
        self.prefix = Path(work_dir).resolve()
        self.listen_port = listen_port or free_port()
        self.url = f"http://127.0.0.1:{self.listen_port}"
        self.host = EXAMPLE_HOST
        self.access_log = self.prefix / "logs" / "access.log"
        self.config_file = self.prefix / "nginx.conf"
        self.process: Process | None = None
        for directory in ("logs", *(f"temp/{name}" for name in _TEMP_PATHS)):
            (self.prefix / directory).mkdir(parents=True, exist_ok=True)
        template = Path(config_path).read_text()
        self.tls_port: int | None = None
        self.ca = ca
        tls_dir = None
        if "listen 8443" in template:
            self.ca, tls_dir = proxy_tls_directory(self.prefix / "tls", EXAMPLE_HOST, ca)
            self.tls_port = free_port()
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        text = render_config(
            template,
            listen_port=self.listen_port,
            check_port=check_port,
            public_port=public_port,
            app_port=app_port,
            tls_port=self.tls_port,
            tls_dir=tls_dir,
        )
        self.config_file.write_text(self._with_local_paths(text))

    def _with_local_paths(self, text: str) -> str:
        compiled = _compiled_modules(self.binary)
        lines = [f"access_log {self.access_log};"]
        for name in _TEMP_PATHS:
            module = "core" if name == "client_body" else name
            if f"--without-http_{module}_module" not in compiled:
                lines.append(f"{name}_temp_path {self.prefix / 'temp' / name};")
        http_block = re.compile(r"^http\s*\{", re.MULTILINE)
        if not http_block.search(text):
            raise ValueError("nginx config has no `http {` block")
        injected = "http {\n    # added by tests/infra/nginx.py\n    " + "\n    ".join(lines)
        return http_block.sub(lambda _: injected, text, count=1)

    def _args(self) -> list[str]:
        globals_ = f"daemon off; pid {self.prefix / 'nginx.pid'};"
        if os.geteuid() == 0:
            globals_ += " user root;"
        prefix = f"{self.prefix}/"
        return [
            self.binary,
            "-p",
            prefix,
            "-c",
            str(self.config_file),
            "-e",
            "stderr",
            "-g",
            globals_,
        ]

    def validate(self) -> str:
        """`nginx -t` on the rendered config; raises with nginx's output if it is invalid."""
        result = subprocess.run([*self._args(), "-t"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{result.stdout}{result.stderr}")
        return result.stderr

    def start(self, timeout: float = 15.0) -> Nginx:
        self.process = Process("nginx", self._args(), log_dir=self.prefix / "logs")
        self.process.start(TcpPort(self.listen_port), timeout=timeout)
        return self

    def reload(self) -> None:
        """Re-read `config_file` (SIGHUP), e.g. after a test edited it."""
        assert self.process is not None
        assert self.process.popen is not None
        self.process.popen.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
