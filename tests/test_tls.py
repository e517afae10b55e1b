"""`netcheck serve --tls-cert/--tls-key`, and clients that verify TLS by default (issue 8)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.servers import REPO, stop, subprocess_env
from tests.harness.coturn import _write_self_signed_cert


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`netcheck serve` over HTTPS with a self-signed certificate for 127.0.0.1; (URL, certificate)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    _write_self_signed_cert(cert, key)
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--http-port", "0", "--udp-port", "0",
                                "--tls-cert", str(cert), "--tls-key", str(key)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=subprocess_env())
    assert process.stdout is not None
    kind, address = process.stdout.readline().split()
    process.stdout.readline()
    assert kind == "https"
    yield f"https://{address}", cert
    stop(process)


def check(url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), "check", "--quick", "--no-av", "--json",
                           "--server", url], capture_output=True, text=True, timeout=60, env=subprocess_env(**env))


def test_a_client_refuses_an_untrusted_certificate_in_one_line(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_server
    result = check(url, NETCHECK_HOME=str(tmp_path))
    assert result.returncode == 5
    assert result.stderr.count("\n") == 1 and "TLS certificate is not trusted" in result.stderr
    assert "SSL_CERT_FILE" in result.stderr


def test_a_client_that_trusts_the_clinics_ca_checks_over_https(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    url, cert = tls_server
    result = check(url, NETCHECK_HOME=str(tmp_path), SSL_CERT_FILE=str(cert))
    assert result.returncode in (0, 3, 4), result.stderr
    assert '"recommendation"' in result.stdout


@pytest.mark.parametrize("args, message", [
    (("--tls-cert", "/nonexistent.pem"), "go together"),
    (("--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"), "cannot use --tls-cert/--tls-key"),
])
def test_bad_tls_flags_are_one_line_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "--http-port", "0", "--udp-port", "0",
                             *args], capture_output=True, text=True, timeout=30, env=subprocess_env())
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
