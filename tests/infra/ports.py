"""Free TCP ports on the loopback interface."""

import socket
import threading

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, never the same twice in this process.

    The kernel picks it (bind to port 0); the socket is closed again, so another
    process could take it before the caller binds: keep the gap short.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port found in 100 tries")
