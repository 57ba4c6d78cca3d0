"""A real OCI registry on loopback for tests: the Debian ``docker-registry``.

:func:`start_registry` writes a generated configuration into a temporary
directory and runs ``/usr/bin/docker-registry serve`` on a free loopback port
with filesystem storage in that directory. Options:

* ``htpasswd`` - basic authentication (bcrypt entries, generated here);
* ``tls`` - a certificate for ``127.0.0.1``/``localhost`` issued by a CA that
  is generated for the registry (``RunningRegistry.ca_file``);
* ``token`` - bearer-token authentication through :class:`TokenServer`, a
  small token service written for these tests: it checks basic credentials
  when the test asks for them and issues ES256 JWTs whose ``x5c`` header
  carries its self-signed certificate, which is the registry's
  ``rootcertbundle``.

The registry writes an access log line per request; ``RunningRegistry.count``
counts requests by method and path fragment, so tests can prove how many pulls
happened. Everything binds 127.0.0.1 and lives under the given directory, so
two xdist workers never share a port or a file.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from provider.certs import CertUsage, KeyedCertificate, generate_ca, issue_certificate

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
SERVICE = "manifest-provider-test-registry"
ISSUER = "manifest-provider-test-issuer"


def have_registry() -> bool:
    return REGISTRY_BINARY.is_file() and os.access(REGISTRY_BINARY, os.X_OK)


def free_port() -> int:
    """A port that was free a moment ago (the registry cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd (the registry accepts bcrypt only)."""
    try:
        import bcrypt
    except ImportError:  # libxcrypt's crypt(3) knows bcrypt too
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # type: ignore[import-not-found,unused-ignore]

        alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        salt = "".join(secrets.choice(alphabet) for _ in range(22))
        return str(crypt.crypt(password, f"$2b$05${salt}"))
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()


# --- certificates -------------------------------------------------------------------------------


def make_ca(common_name: str = "manifest-provider test CA") -> KeyedCertificate:
    """A CA for the registry's TLS certificate (the project's own certificate tooling)."""
    return generate_ca(common_name, valid_days=1)


def issue_server_cert(
    ca: KeyedCertificate, *, names: tuple[str, ...] = ("localhost",)
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for 127.0.0.1 and ``names``."""
    leaf = issue_certificate(
        ca, usage=CertUsage.SERVER, dns_names=names, ip_addresses=("127.0.0.1",), valid_days=1
    )
    return leaf.certificate_pem(), leaf.key_pem()


# --- token server -------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A bearer-token service for the registry's ``auth: token:`` mode.

    Grants every requested repository action when the basic credentials match
    ``users`` (or when ``users`` is empty: anonymous tokens). Records every
    request's query so tests can check the scope the client asked for.
    """

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None) -> None:
        self.users = dict(users or {})
        self.requests: list[dict[str, list[str]]] = []
        self.authorizations: list[str | None] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "manifest-provider test token issuer")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.rootcert_file = directory / "token-root.pem"
        self.rootcert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append(query)
        header = req.headers.get("Authorization")
        self.authorizations.append(header)
        subject = ""
        if self.users:
            user = self._basic_user(header)
            if user is None:
                req.send_response(401)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            subject = user
        access = []
        for scope in query.get("scope", []):
            parts = scope.split(":")
            if len(parts) == 3 and parts[0] == "repository":
                access.append({"type": "repository", "name": parts[1], "actions": parts[2].split(",")})
        token = self.issue(subject=subject, access=access)
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _basic_user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        if user in self.users and secrets.compare_digest(self.users[user], password):
            return user
        return None

    def issue(self, *, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# --- the registry -------------------------------------------------------------------------------

_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


@dataclass
class RunningRegistry:
    """A started registry. ``host`` is ``127.0.0.1:PORT`` as used in references."""

    port: int
    scheme: str
    directory: Path
    log_file: Path
    process: subprocess.Popen[bytes]
    ca_file: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def access_log(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the registry has logged so far."""
        out = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            m = _ACCESS_LINE.search(line)
            if m:
                out.append((m["method"], m["path"], int(m["status"])))
        return out

    def count(self, method: str, fragment: str, *, settle_seconds: float = 0.3) -> int:
        """Requests with ``method`` whose path contains ``fragment``."""
        time.sleep(settle_seconds)  # the registry writes its access log line after answering
        return sum(1 for m, p, _ in self.access_log() if m == method and fragment in p)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.token_server is not None:
            self.token_server.close()


def start_registry(
    directory: Path,
    *,
    htpasswd: dict[str, str] | None = None,
    tls: bool = False,
    token: bool = False,
    token_users: dict[str, str] | None = None,
) -> RunningRegistry:
    """Start ``docker-registry`` with storage and configuration under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    storage = directory / "storage"
    storage.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"secret": secrets.token_hex(16), "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    ca_file: Path | None = None
    if tls:
        ca = make_ca()
        cert_pem, key_pem = issue_server_cert(ca)
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(ca.certificate_pem())
        (directory / "server.pem").write_bytes(cert_pem)
        (directory / "server.key").write_bytes(key_pem)
        config["http"]["tls"] = {
            "certificate": str(directory / "server.pem"),
            "key": str(directory / "server.key"),
        }
    token_server: TokenServer | None = None
    if htpasswd:
        lines = "".join(f"{user}:{bcrypt_hash(pw)}\n" for user, pw in htpasswd.items())
        (directory / "htpasswd").write_text(lines)
        config["auth"] = {"htpasswd": {"realm": "test-realm", "path": str(directory / "htpasswd")}}
    elif token:
        token_server = TokenServer(directory, users=token_users)
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(token_server.rootcert_file),
            }
        }
    log_file = directory / "registry.log"
    last_error = ""
    for _attempt in range(5):
        port = free_port()
        config["http"]["addr"] = f"127.0.0.1:{port}"
        config_file = directory / "config.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        log_file.write_bytes(b"")
        log = log_file.open("ab")
        process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env={"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "none"},
        )
        log.close()
        scheme = "https" if tls else "http"
        running = RunningRegistry(
            port=port,
            scheme=scheme,
            directory=directory,
            log_file=log_file,
            process=process,
            ca_file=ca_file,
            users=dict(htpasswd or {}),
            token_server=token_server,
        )
        if _wait_ready(running):
            return running
        last_error = log_file.read_text(errors="replace")[-2000:]
        process.kill()
        process.wait(timeout=5)
    if token_server is not None:
        token_server.close()
    raise RuntimeError(f"docker-registry did not start: {last_error}")


def _wait_ready(reg: RunningRegistry, *, timeout: float = 10.0) -> bool:
    """True once this process logged that it listens on its port and the port answers.

    The log line proves the port is ours: a neighbour that took the port first makes our
    process exit instead.
    """
    deadline = time.monotonic() + timeout
    marker = f"listening on 127.0.0.1:{reg.port}"
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            return False
        if marker in reg.log_file.read_text(errors="replace"):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", reg.port), timeout=0.5):
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def running_registry(directory: Path, **options: Any) -> Iterator[RunningRegistry]:
    reg = start_registry(directory, **options)
    try:
        yield reg
    finally:
        reg.stop()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_fixture(name: str, **options: Any) -> Any:
    """A session-scoped pytest fixture named ``name`` running one registry; assign it to that name.

    ``plain = registry_fixture("plain")`` or ``tls = registry_fixture("tls", tls=True)``. Each
    xdist worker has its own session, so each runs its own registry.
    """
    import pytest

    @pytest.fixture(scope="session", name=name)
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
        reg = start_registry(tmp_path_factory.mktemp(f"registry-{name}"), **options)
        try:
            yield reg
        finally:
            reg.stop()

    return _fixture
