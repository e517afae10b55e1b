"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST, udp_too: bool = False) -> int:
    """A TCP port on `host` that was free a moment ago (and free for UDP too with `udp_too`).

    Racy by nature: another process may take it before the server binds it. The servers here retry
    with new ports when they die with "address already in use", which is cheaper than anything cleverer.
    """
    for _ in range(50):
        kind = socket.SOCK_DGRAM if udp_too else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for UDP and TCP on {host}")
