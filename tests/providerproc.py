"""Run the real ``manifest-provider serve`` (gunicorn, mutual TLS 1.3) for tests.

Tests that need the provider as Gatekeeper sees it start it with
:func:`run_provider`, which writes a configuration and TLS material into a
directory, starts ``python -m provider serve --config ... --listen
127.0.0.1:0`` as a subprocess (a free loopback port, so xdist-safe), waits
until ``GET /readyz`` answers 200 over mutual TLS, yields a
:class:`ProviderProcess`, and stops the server with SIGTERM afterwards::

    from tests.providerproc import run_provider

    @pytest.fixture(scope="module")
    def provider(tmp_path_factory, demo_pub_pem):
        with run_provider(tmp_path_factory.mktemp("provider"), keys={"demo": demo_pub_pem}) as proc:
            yield proc

    def test_something(provider):
        answer = provider.ask([key])          # the parsed ProviderResponse
        status, body = provider.post(raw)     # raw bytes, as Gatekeeper would send them

The TLS material mirrors a real installation: the provider's server
certificate comes from a "provider CA" (what the Provider's ``caBundle``
holds), the client certificate from a separate "Gatekeeper CA" with the DNS
name of Gatekeeper's webhook service (what ``server.tls.clientCAFile`` and
``clientDNSNames`` name). Material is generated once per process and copied.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import yaml

from provider.certs import (
    GATEKEEPER_CLIENT_DNS_NAME,
    CertUsage,
    generate_ca,
    issue_certificate,
    write_file,
)

ROOT = Path(__file__).resolve().parent.parent
VERDICT_PATH = "/validate"
_BANNER = "manifest-provider: serving verdicts on "


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """PEM files in one directory; see the module docstring for who trusts what."""

    directory: Path

    @property
    def provider_ca(self) -> Path:
        return self.directory / "provider-ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def gatekeeper_ca(self) -> Path:
        return self.directory / "gatekeeper-ca.crt"

    @property
    def gatekeeper_ca_key(self) -> Path:
        return self.directory / "gatekeeper-ca.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def provider_ca_key(self) -> Path:
        return self.directory / "provider-ca.key"


@cache
def _pem_set() -> dict[str, bytes]:
    provider_ca = generate_ca("test provider CA")
    gatekeeper_ca = generate_ca("test gatekeeper CA")
    server = issue_certificate(
        provider_ca, usage=CertUsage.SERVER, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
    )
    client = issue_certificate(gatekeeper_ca, usage=CertUsage.CLIENT, dns_names=[GATEKEEPER_CLIENT_DNS_NAME])
    return {
        "provider-ca.crt": provider_ca.certificate_pem(),
        "provider-ca.key": provider_ca.key_pem(),
        "server.crt": server.certificate_pem(),
        "server.key": server.key_pem(),
        "gatekeeper-ca.crt": gatekeeper_ca.certificate_pem(),
        "gatekeeper-ca.key": gatekeeper_ca.key_pem(),
        "client.crt": client.certificate_pem(),
        "client.key": client.key_pem(),
    }


def make_tls_material(directory: Path) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in _pem_set().items():
        write_file(directory / name, data, private=name.endswith(".key"))
    return TlsMaterial(directory)


def client_context(
    ca_file: Path | None,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    tls_version: ssl.TLSVersion | None = ssl.TLSVersion.TLSv1_3,
) -> ssl.SSLContext:
    """A client context like Gatekeeper's: verify the server, present a client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if tls_version is not None:
        ctx.minimum_version = tls_version
        ctx.maximum_version = tls_version
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def content_length(head: bytes) -> int | None:
    """The Content-Length of a raw HTTP/1.1 head (status or request line and headers), if it has one."""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return None


@dataclass(frozen=True, slots=True)
class ProviderProcess:
    """A running provider: where it listens and the client material that reaches it."""

    url: str  # scheme://127.0.0.1:PORT (no path)
    host: str
    port: int
    tls: TlsMaterial | None
    config_path: Path
    directory: Path
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def verdict_url(self) -> str:
        return self.url + VERDICT_PATH

    def client_context(self, **kwargs: Any) -> ssl.SSLContext:
        assert self.tls is not None, "plain HTTP provider"
        kwargs.setdefault("cert", self.tls.client_cert)
        kwargs.setdefault("key", self.tls.client_key)
        return client_context(self.tls.provider_ca, **kwargs)

    def connection(
        self, *, timeout: float = 30.0, context: ssl.SSLContext | None = None
    ) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=timeout, context=context or self.client_context()
        )

    def post(
        self, body: bytes, *, path: str = VERDICT_PATH, conn: http.client.HTTPConnection | None = None
    ) -> tuple[int, bytes]:
        own = conn is None
        c = conn or self.connection()
        try:
            c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = c.getresponse()
            return response.status, response.read()
        finally:
            if own:
                c.close()

    def ask(self, keys: Sequence[str], *, conn: http.client.HTTPConnection | None = None) -> dict[str, Any]:
        """POST a ProviderRequest for ``keys``; the parsed ProviderResponse (HTTP 200 asserted)."""
        from provider.wire import encode_request

        status, body = self.post(encode_request(keys), conn=conn)
        assert status == 200, (status, body[:300])
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    def get(self, path: str) -> tuple[int, bytes]:
        c = self.connection(timeout=5.0)
        try:
            c.request("GET", path)
            response = c.getresponse()
            return response.status, response.read()
        finally:
            c.close()

    def logs(self) -> str:
        return self.stderr_path.read_text("utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of the gunicorn workers (children of the server process)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()]


def write_config(
    directory: Path,
    *,
    keys: Mapping[str, bytes],
    tls: TlsMaterial | None,
    client_dns_names: Sequence[str] = (GATEKEEPER_CLIENT_DNS_NAME,),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """A configuration file trusting ``keys`` (name -> PEM) and serving with ``tls``."""
    key_entries = []
    for name, pem in keys.items():
        path = directory / f"{name}.pub"
        write_file(path, pem, private=False)
        key_entries.append({"name": name, "path": path.name})
    server: dict[str, Any] = {"keepAliveSeconds": 2, "reloadIntervalSeconds": 0}
    if tls is not None:
        server["tls"] = {
            "certFile": str(tls.server_cert),
            "keyFile": str(tls.server_key),
            "clientCAFile": str(tls.gatekeeper_ca),
            "clientDNSNames": list(client_dns_names),
        }
    else:
        server["tls"] = {"insecurePlainHTTP": True}
    doc: dict[str, Any] = {"keys": key_entries, "server": server}
    for section, value in (config or {}).items():
        if isinstance(value, Mapping) and isinstance(doc.get(section), dict):
            doc[section] = {**doc[section], **value}
        else:
            doc[section] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def serve_command(*args: str) -> list[str]:
    """The ``manifest-provider`` command line (the package need not be installed)."""
    return [sys.executable, "-m", "provider", *args]


def serve_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_banner(
    stdout_path: Path, process: subprocess.Popen[bytes], stderr_path: Path, timeout: float
) -> str:
    """The URL from the ``serving verdicts on URL`` line ``serve`` prints before serving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in stdout_path.read_text("utf-8", errors="replace").splitlines():
            if line.startswith(_BANNER):
                return line[len(_BANNER) :].strip()
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}: {stderr_path.read_text()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"serve printed no URL within {timeout} s: {stderr_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes], *, timeout: float = 20.0) -> int:
    """SIGTERM (gunicorn's graceful shutdown), then SIGKILL if it does not finish in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def run_provider(
    directory: Path,
    *,
    keys: Mapping[str, bytes],
    config: Mapping[str, Any] | None = None,
    workers: int = 1,
    threads: int = 4,
    client_dns_names: Sequence[str] = (GATEKEEPER_CLIENT_DNS_NAME,),
    plain_http: bool = False,
    extra_args: Sequence[str] = (),
    start_timeout: float = 60.0,
) -> Iterator[ProviderProcess]:
    """Start ``manifest-provider serve`` in ``directory``; see the module docstring."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = None if plain_http else make_tls_material(directory / "tls")
    config_path = write_config(
        directory, keys=keys, tls=tls, client_dns_names=client_dns_names, config=config
    )
    args = ["serve", "--config", str(config_path), "--listen", "127.0.0.1:0"]
    args += ["--workers", str(workers), "--threads", str(threads), *extra_args]
    if plain_http:
        args.append("--insecure-plain-http")
    stdout_path = directory / "serve.out"
    stderr_path = directory / "serve.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            serve_command(*args), cwd=directory, env=serve_env(), stdout=out, stderr=err
        )
    try:
        url = wait_for_banner(stdout_path, process, stderr_path, start_timeout)
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        proc = ProviderProcess(
            url=f"{parts.scheme}://{parts.netloc}",
            host=parts.hostname,
            port=parts.port,
            tls=tls,
            config_path=config_path,
            directory=directory,
            process=process,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
        )
        _wait_ready(proc, start_timeout, workers=workers)
        yield proc
    finally:
        stop(process)


def _wait_ready(proc: ProviderProcess, timeout: float, *, workers: int) -> None:
    """Until a worker answers ``GET /readyz`` with 200 and every worker has built its app."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.process.returncode}: {proc.logs()[-3000:]}")
        try:
            status, body = proc.get("/readyz")
            if status == 200 and proc.logs().count('"message":"provider configured"') >= workers:
                return
            last = (status, body[:200])
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"provider not ready within {timeout} s (last: {last!r}): {proc.logs()[-3000:]}")
