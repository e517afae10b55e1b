"""A real `redis-server` (Debian's /usr/bin/redis-server) on loopback, for tests and benchmarks.

    with RedisServer(password="...") as server:     # 127.0.0.1, a free port, data in a temp dir
        url = server.url                            # redis://127.0.0.1:PORT/0 (no password in it)
        server.stop(); ...; server.start()          # an outage: same port, same data (AOF)

`start()` returns once the server answers PING; `stop()` is SIGTERM (Redis writes its append-only
file and exits). Persistence is on (appendonly, fsync every write) as a deployment would have it,
so a restart keeps the sessions' streams. No config file is read; nothing listens beyond loopback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from tests.harness.ports import HOST, free_port
from tests.harness.servers import stop

REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT_S = 10.0


class RedisError(RuntimeError):
    """The server did not start; the message carries the tail of its log."""


class RedisServer:
    def __init__(self, password: str | None = None, appendfsync: str = "always") -> None:
        self.password = password
        self.appendfsync = appendfsync
        """`always` for the outage tests (nothing acknowledged is lost); `everysec` for benchmarks."""
        self.directory = Path(tempfile.mkdtemp(prefix="netcheck-redis-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port when it ran before); retries new ports if the first bind fails."""
        for _ in range(5):
            if not self.port:
                self.port = free_port()
            args = [REDIS_SERVER, "--bind", HOST, "--port", str(self.port), "--dir", str(self.directory),
                    "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--protected-mode", "yes",
                    "--logfile", "", "--daemonize", "no"]
            if self.password:
                args += ["--requirepass", self.password]
            self._log = open(self.directory / "redis.log", "ab")
            self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return
            stop(self.process)
            self.port = 0 if "Address already in use" in self.log_tail() else self.port
        raise RedisError(f"redis-server did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.directory / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_ready(self) -> bool:
        """PING over a plain socket until PONG (or NOAUTH: it answers, a password is needed)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as connection:
                    if self.password:
                        connection.sendall(f"AUTH {self.password}\r\n".encode())
                        connection.recv(64)
                    connection.sendall(b"PING\r\n")
                    if connection.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)  # a fresh process needs a moment to bind: nothing to await but its port
        return False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
