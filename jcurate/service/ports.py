"""The port check ``jcurate serve`` makes before it loads anything: a port out of range or already taken
is refused in one line at once, not after the index is built (or as a traceback)."""

from __future__ import annotations

import errno
import socket

from core.errors import JcurateError


def check_port(host: str, port: int) -> None:
    """Raise JcurateError unless ``host:port`` can be bound now (as uvicorn binds it, with SO_REUSEADDR)."""
    if not 1 <= port <= 65535:
        raise JcurateError(f"--port {port}: out of range; pick a port from 1 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as e:
        raise JcurateError(f"--host {host}: cannot resolve it ({e})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise JcurateError(f"--port {port}: address {host}:{port} is already in use (another "
                                   f"`jcurate serve`?); stop it or pick another --port") from None
            raise JcurateError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
