"""A real coturn `turnserver` for tests: free ports, static credentials, killed on exit.

    with Coturn() as turn:
        url = turn.url("udp")          # turn:127.0.0.1:PORT?transport=udp
        ... turn.user, turn.password ...

It listens on one address, 127.0.0.1 unless `host` names another (a network namespace's root end,
tests/harness/netns.py), with UDP and TCP on one port (TLS on a second port when `tls=True`, with a
self-signed certificate made at start); relays from a small range of ports on that address, and
allows loopback peers, because every peer in these tests is on this machine. Credentials are a
static user and password (lt-cred-mech), or with `auth_secret` the TURN REST API's time-limited ones
(`use-auth-secret`, netcheck/server/turn_credentials.py). The options, credentials included, go in a 0600
configuration file, not on argv. `__enter__` returns only once the server answers a STUN Binding
request on UDP and accepts TCP (and TLS) connections.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness.ports import free_port

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
HOST = "127.0.0.1"
STUN_MAGIC = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
# Relay ports come from below the kernel's ephemeral range (32768-60999 here), so a socket bound
# to port 0 elsewhere in the test run cannot take one of them between our check and coturn's bind.
RELAY_PORT_FLOOR, RELAY_PORT_CEILING = 20_000, 32_000


class CoturnError(RuntimeError):
    """turnserver did not start, or did not answer; the message carries the tail of its log."""


class Coturn:
    """A `turnserver` subprocess; use as a context manager. `host`: the one address it listens and
    relays on; `auth_secret`: the TURN REST API's shared secret instead of `user` and `password`."""

    def __init__(self, user: str = "netcheck", password: str | None = None, realm: str = "netcheck.test",
                 tls: bool = False, relay_ports: int = 16, start_timeout_s: float = 10.0,
                 extra_options: tuple[str, ...] = (), host: str = HOST, auth_secret: str | None = None) -> None:
        self.host = host
        self.auth_secret = auth_secret  # use-auth-secret: then `user` and `password` are not accepted
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.realm = realm
        self.tls = tls
        self.relay_port_count = relay_ports
        self.start_timeout_s = start_timeout_s
        self.extra_options = extra_options
        self.port: int = 0
        self.tls_port: int | None = None
        self.relay_port_range: tuple[int, int] = (0, 0)
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.directory: Path | None = None

    # --- public ------------------------------------------------------------------------------

    def url(self, transport: str = "udp") -> str:
        """The ICE server URL for this server, e.g. `turn:127.0.0.1:3478?transport=udp`."""
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def tls_url(self) -> str:
        """`turns:127.0.0.1:PORT?transport=tcp`; only with `tls=True`."""
        if self.tls_port is None:
            raise ValueError("this Coturn was started without TLS")
        return f"turns:{self.host}:{self.tls_port}?transport=tcp"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "turnserver.log"

    @property
    def cert_path(self) -> Path:
        """The self-signed certificate (PEM) clients should trust for TLS; only with `tls=True`."""
        assert self.directory is not None
        return self.directory / "cert.pem"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def __enter__(self) -> Coturn:
        self._tmp = tempfile.TemporaryDirectory(prefix="netcheck-coturn-")
        self.directory = Path(self._tmp.name)
        if self.tls:
            _write_self_signed_cert(self.directory / "cert.pem", self.directory / "key.pem", self.host)
        last_error: Exception | None = None
        for _attempt in range(4):  # a port picked as free can be taken before turnserver binds it
            self._pick_ports()
            self._start()
            try:
                self._wait_until_listening()
                return self
            except CoturnError as exc:
                last_error = exc
                self._kill()
        self.__exit__()
        raise last_error  # type: ignore[misc]

    def __exit__(self, *exc: object) -> None:
        self._kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- internals ---------------------------------------------------------------------------

    def _pick_ports(self) -> None:
        self.port = free_port(self.host, udp_too=True)
        self.tls_port = _free_tcp_port(self.host, avoid={self.port}) if self.tls else None
        self.relay_port_range = _free_udp_range(self.host, self.relay_port_count)

    def _config(self) -> str:
        assert self.directory is not None
        low, high = self.relay_port_range
        lines = [
            f"listening-ip={self.host}", f"relay-ip={self.host}", f"listening-port={self.port}",
            f"min-port={low}", f"max-port={high}",
            *(("use-auth-secret", f"static-auth-secret={self.auth_secret}") if self.auth_secret is not None
              else ("lt-cred-mech", f"user={self.user}:{self.password}")),
            f"realm={self.realm}", "fingerprint", "allow-loopback-peers", "no-cli", "no-dtls", "no-rfc5780",
            "no-multicast-peers", "no-software-attribute",
            f"log-file={self.log_path}", "simple-log", "no-stdout-log",
            f"pidfile={self.directory / 'turnserver.pid'}", f"userdb={self.directory / 'turndb'}",
        ]
        if self.tls:
            lines += [f"tls-listening-port={self.tls_port}", f"cert={self.cert_path}",
                      f"pkey={self.directory / 'key.pem'}"]
        else:
            lines.append("no-tls")
        lines += list(self.extra_options)
        return "\n".join(lines) + "\n"

    def _start(self) -> None:
        assert self.directory is not None
        config = self.directory / "turnserver.conf"
        config.write_text("")
        os.chmod(config, 0o600)
        config.write_text(self._config())
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.directory, start_new_session=True)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        checks = [self._answers_stun_over_udp, lambda: _accepts_tcp((self.host, self.port))]
        if self.tls_port is not None:
            checks.append(lambda: _accepts_tcp((self.host, self.tls_port)))
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise CoturnError(f"turnserver exited {self.proc.returncode}:\n{self._log_tail()}")
            if all(check() for check in checks):
                return
            time.sleep(0.05)
        raise CoturnError(f"turnserver not listening within {self.start_timeout_s} s:\n{self._log_tail()}")

    def _answers_stun_over_udp(self) -> bool:
        transaction = secrets.token_bytes(12)
        request = struct.pack("!HHI", BINDING_REQUEST, 0, STUN_MAGIC) + transaction
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(request, (self.host, self.port))
                data = sock.recv(2048)
            except OSError:
                return False
        return len(data) >= 20 and struct.unpack_from("!H", data)[0] == BINDING_SUCCESS and data[8:20] == transaction

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _free_tcp_port(host: str, avoid: set[int]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
        if port not in avoid:
            return port
    raise CoturnError(f"no free TCP port on {host}")


def _free_udp_range(host: str, count: int) -> tuple[int, int]:
    """`count` consecutive ports free for UDP and TCP on `host` (coturn relays both)."""
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(RELAY_PORT_FLOOR, RELAY_PORT_CEILING - count)
        if all(_port_is_free(host, port) for port in range(low, low + count)):
            return low, low + count - 1
    raise CoturnError(f"no {count} consecutive free ports in {RELAY_PORT_FLOOR}..{RELAY_PORT_CEILING}")


def _port_is_free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _accepts_tcp(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.2):
            return True
    except OSError:
        return False


def _write_self_signed_cert(cert_path: Path, key_path: Path, host: str = HOST) -> None:
    """A one-day self-signed certificate for `host` / localhost (cryptography, which aiortc needs)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netcheck test TURN")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
