"""The provider as Gatekeeper reaches it: real gunicorn, mutual TLS 1.3, on loopback.

One ``manifest-provider serve`` subprocess per module (see ``tests/providerproc.py``)
answers requests signed freshly with a generated key. The TLS material is a
"provider CA" for the server certificate and a separate "Gatekeeper CA" for the
client certificate with Gatekeeper's webhook DNS name, as in a cluster.

Note on TLS 1.3: the server checks the client certificate after the client has
already sent its Finished message, so a rejected client may see its handshake
"succeed" and then get the alert (or a closed connection) on its first read.
"Rejected" below therefore means: no HTTP response ever arrives.
"""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509

from provider.certs import (
    GATEKEEPER_CLIENT_DNS_NAME,
    CertUsage,
    DevCertPaths,
    ensure_dev_certs,
    generate_ca,
    issue_certificate,
    load_keyed,
    write_file,
    write_keyed,
)
from provider.core.cosignkey import PrivateKey
from provider.core.signing import sign_documents
from provider.errors import KeyMaterialError
from provider.tlsctx import (
    ReloadingServerContext,
    ServerTlsFiles,
    build_server_context,
    client_dns_names,
    dns_names_allowed,
)
from provider.wire import encode_key, encode_request
from tests.providerproc import ProviderProcess, client_context, content_length, run_provider

# -- material ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> PrivateKey:
    return PrivateKey.generate()


def _configmap(name: str, value: str = "v") -> bytes:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: team-a\ndata:\n  k: {value}\n"
    ).encode()


def _signed_object(key: PrivateKey, name: str) -> dict[str, Any]:
    from provider.core.limits import DEFAULT_LIMITS
    from provider.core.safeyaml import load_documents

    docs = load_documents(sign_documents(_configmap(name), key), limits=DEFAULT_LIMITS)
    obj: dict[str, Any] = docs[0]
    return obj


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, signing_key: PrivateKey) -> Iterator[ProviderProcess]:
    directory = tmp_path_factory.mktemp("provider-tls")
    # With the plain-HTTP probe listener on: every test of the main port runs next to it.
    with run_provider(
        directory,
        keys={"release": signing_key.public_pem()},
        workers=1,
        threads=4,
        # The access log is off by default; on here so its JSON lines are checked.
        config={"server": {"accessLog": True}},
        extra_args=("--health-listen", "127.0.0.1:0"),
    ) as proc:
        yield proc


def _health_port(proc: ProviderProcess) -> int:
    """The probe port from the line ``serve`` prints after the verdict URL."""
    for line in proc.stdout_path.read_text("utf-8").splitlines():
        if line.startswith("manifest-provider: health probes on http://127.0.0.1:"):
            return int(line.split("http://127.0.0.1:", 1)[1].split()[0])
    raise AssertionError(proc.stdout_path.read_text("utf-8"))


def _plain(proc: ProviderProcess, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(proc.host, _health_port(proc), timeout=10)
    try:
        conn.request(method, path, **kwargs)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _verdict(item: dict[str, Any]) -> dict[str, Any]:
    assert item["error"] == "", item
    value: dict[str, Any] = item["value"]
    return value


# -- the wire, as Gatekeeper sends it ------------------------------------------------


def _raw_exchange(proc: ProviderProcess, ctx: ssl.SSLContext, payload: bytes, *, sni: str | None) -> bytes:
    """Send ``payload`` over a fresh TLS connection; read until a whole response arrived or EOF."""
    received = b""
    with (
        socket.create_connection((proc.host, proc.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        assert tls.version() == "TLSv1.3"
        tls.sendall(payload)
        while data := tls.recv(65536):
            received += data
            head, sep, body = received.partition(b"\r\n\r\n")
            length = content_length(head) if sep else None
            if length is not None and len(body) >= length:
                break
    return received


def test_gatekeeper_request_byte_for_byte(provider: ProviderProcess, signing_key: PrivateKey) -> None:
    """Go's net/http writes exactly these headers for Gatekeeper's POST (TLS 1.3, SNI = host name)."""
    obj = _signed_object(signing_key, "gk-wire")
    tampered = _signed_object(signing_key, "gk-wire-tampered")
    tampered["data"]["k"] = "changed"
    keys = [encode_key(obj), encode_key(tampered)]
    body = orjson.dumps(
        {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": keys},
        }
    )
    payload = (
        b"POST /validate HTTP/1.1\r\n"
        b"Host: localhost:" + str(provider.port).encode() + b"\r\n"
        b"User-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Accept-Encoding: gzip\r\n"
        b"\r\n" + body
    )
    response = _raw_exchange(provider, provider.client_context(), payload, sni="localhost")
    head, _, content = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"content-type: application/json" in head.lower()
    answer = orjson.loads(content)
    assert answer["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1"
    assert answer["kind"] == "ProviderResponse"
    assert answer["response"]["systemError"] == ""
    by_key = {item["key"]: _verdict(item) for item in answer["response"]["items"]}
    assert by_key[keys[0]]["reason"] == "VERIFIED"
    assert by_key[keys[1]]["reason"] == "MANIFEST_MISMATCH"


# -- who may connect ---------------------------------------------------------------------


def _rejected(proc: ProviderProcess, ctx: ssl.SSLContext) -> str:
    """Try a full request; return how it failed (the test fails if an HTTP response arrives)."""
    conn = http.client.HTTPSConnection(proc.host, proc.port, timeout=10, context=ctx)
    try:
        conn.request(
            "POST", "/validate", body=encode_request([]), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        pytest.fail(f"expected the connection to be refused, got HTTP {response.status}")
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    raise AssertionError("unreachable")


def test_client_without_certificate_is_rejected(provider: ProviderProcess) -> None:
    how = _rejected(provider, client_context(provider.tls.provider_ca if provider.tls else None))
    assert "CERTIFICATE_REQUIRED" in how.upper() or "reset" in how.lower() or "EOF" in how.upper(), how


def test_client_certificate_from_another_ca_is_rejected(provider: ProviderProcess, tmp_path: Path) -> None:
    other = generate_ca("someone else's CA")
    forged = issue_certificate(other, usage=CertUsage.CLIENT, dns_names=[GATEKEEPER_CLIENT_DNS_NAME])
    write_keyed(forged, tmp_path / "c.crt", tmp_path / "c.key")
    assert provider.tls is not None
    ctx = client_context(provider.tls.provider_ca, cert=tmp_path / "c.crt", key=tmp_path / "c.key")
    how = _rejected(provider, ctx)
    assert "UNKNOWN_CA" in how.upper() or "reset" in how.lower() or "EOF" in how.upper(), how


def test_tls_1_2_is_rejected_at_the_handshake(provider: ProviderProcess) -> None:
    ctx = provider.client_context(tls_version=ssl.TLSVersion.TLSv1_2)
    with (
        socket.create_connection((provider.host, provider.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError) as caught,
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")
    assert "PROTOCOL_VERSION" in str(caught.value).upper() or "UNSUPPORTED" in str(caught.value).upper()


def test_client_dns_name_pin_mismatch_is_rejected(provider: ProviderProcess, tmp_path: Path) -> None:
    """Right CA, wrong identity: another workload holding a certificate of Gatekeeper's CA."""
    assert provider.tls is not None
    gatekeeper_ca = load_keyed(provider.tls.gatekeeper_ca, provider.tls.gatekeeper_ca_key)
    other = issue_certificate(gatekeeper_ca, usage=CertUsage.CLIENT, dns_names=["intruder.other-ns.svc"])
    write_keyed(other, tmp_path / "c.crt", tmp_path / "c.key")
    _rejected(
        provider, client_context(provider.tls.provider_ca, cert=tmp_path / "c.crt", key=tmp_path / "c.key")
    )
    assert "intruder.other-ns.svc" in provider.logs()
    # The pinned identity from the same CA still works: the pin, not the CA, made the difference.
    assert provider.ask([])["response"]["systemError"] == ""


def test_plain_http_to_the_tls_port_gets_no_answer(provider: ProviderProcess) -> None:
    with socket.create_connection((provider.host, provider.port), timeout=10) as raw:
        raw.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        received = b""
        try:
            while chunk := raw.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert b"ProviderResponse" not in received
    assert not received.startswith(b"HTTP/1.1 200")


# -- the probe listener (server.healthListen) ------------------------------------------


def test_health_port_answers_probes_without_a_client_certificate(provider: ProviderProcess) -> None:
    """Plain HTTP, no certificate at all, as kubelet's httpGet probes; status only, no detail."""
    assert _plain(provider, "GET", "/healthz") == (200, b'{"status":"ok"}')
    status, body = _plain(provider, "GET", "/readyz")
    assert (status, orjson.loads(body)) == (200, {"status": "ready"})
    # The main port's /readyz names the configuration file and generation; the probe port must not.
    detail = orjson.loads(provider.get("/readyz")[1])
    assert detail["ready"] is True
    assert detail["generation"].encode() not in body and b"config" not in body and b"path" not in body
    # A query string is still the same probe.
    assert _plain(provider, "GET", "/healthz?verbose=1")[0] == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/validate"),
        ("GET", "/validate"),
        ("GET", "/metrics"),
        ("POST", "/readyz"),
        ("HEAD", "/healthz"),
        ("GET", "/"),
        ("GET", "/readyz/"),
        ("GET", "//validate"),
        ("GET", "/%76alidate"),
    ],
)
def test_health_port_serves_nothing_else(
    provider: ProviderProcess, signing_key: PrivateKey, method: str, path: str
) -> None:
    key = encode_key(_signed_object(signing_key, "via-health-port"))
    status, body = _plain(
        provider,
        method,
        path,
        body=encode_request([key]) if method == "POST" else None,
        # A Host header naming the main port changes nothing: the socket decides.
        headers={"Content-Type": "application/json", "Host": f"127.0.0.1:{provider.port}"},
    )
    assert status == 404, (status, body)
    assert b"ProviderResponse" not in body and b"manifest_provider" not in body and b"VERIFIED" not in body
    if method != "HEAD":
        assert orjson.loads(body)["error"].startswith("not found")


def test_health_port_keeps_a_connection_to_its_paths(provider: ProviderProcess) -> None:
    """Kept-alive requests on one probe connection stay on the health-only app."""
    conn = http.client.HTTPConnection(provider.host, _health_port(provider), timeout=10)
    try:
        for path, expected in (("/healthz", 200), ("/metrics", 404), ("/readyz", 200), ("/validate", 404)):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == expected, path
    finally:
        conn.close()


def test_main_port_still_requires_a_client_certificate_next_to_the_health_port(
    provider: ProviderProcess,
) -> None:
    assert provider.tls is not None
    for path in ("/healthz", "/readyz", "/validate"):
        conn = http.client.HTTPSConnection(
            provider.host, provider.port, timeout=10, context=client_context(provider.tls.provider_ca)
        )
        try:
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)):
                conn.request("GET", path)
                conn.getresponse()
        finally:
            conn.close()
    # And TLS on the probe port finds no TLS server there.
    with (
        socket.create_connection((provider.host, _health_port(provider)), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
    ):
        provider.client_context().wrap_socket(raw, server_hostname="localhost")


def test_health_only_app_reports_the_apps_own_readiness() -> None:
    """The probe app's status follows the real app's readiness (503 until TLS is confirmed)."""
    from werkzeug.test import Client

    from provider.app import create_app
    from provider.server import health_only_app
    from provider.web import runtime_of

    app = create_app(watch=False)
    probe = Client(health_only_app(app))
    response = probe.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "not ready"})
    assert probe.get("/healthz").status_code == 200
    runtime_of(app).mark_tls_ready()
    response = probe.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready"})
    runtime_of(app).mark_tls_unready("certificate file unreadable")
    response = probe.get("/readyz")
    assert response.status_code == 503 and b"unreadable" not in response.data
    assert probe.post("/validate", data=b"{}").status_code == 404
    assert probe.get("/metrics").status_code == 404


_UNREADY_SERVER = """
import socket, sys
from provider.app import create_app
from provider.server import ProviderServer, ServerOptions

main = socket.create_server(("127.0.0.1", 0))
health = socket.create_server(("127.0.0.1", 0))
options = ServerOptions(
    host="127.0.0.1", port=main.getsockname()[1], listen_fd=main.fileno(),
    health_host="127.0.0.1", health_port=health.getsockname()[1], health_listen_fd=health.fileno(),
    workers=1, threads=2, insecure_plain_http=True,
)
print(main.getsockname()[1], health.getsockname()[1], flush=True)
# The serving material is never confirmed, so the workers' app stays not ready.
ProviderServer(options, lambda: create_app(watch=False)).serve()
"""


def test_health_port_reports_the_workers_readiness_not_the_process(tmp_path: Path) -> None:
    """Real gunicorn whose workers are alive but not ready: the probe port says 503, not 200."""
    import subprocess
    import sys

    from tests.providerproc import serve_env, stop

    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(
            [sys.executable, "-c", _UNREADY_SERVER], env=serve_env(), stdout=o, stderr=e
        )
    try:
        deadline = time.monotonic() + 60
        while not out.read_text().strip():
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        main_port, health_port = (int(p) for p in out.read_text().split())
        answers: dict[str, tuple[int, bytes]] = {}
        while time.monotonic() < deadline and "/healthz" not in answers:
            try:
                for path in ("/healthz", "/readyz"):
                    conn = http.client.HTTPConnection("127.0.0.1", health_port, timeout=10)
                    conn.request("GET", path)
                    response = conn.getresponse()
                    answers[path] = (response.status, response.read())
                    conn.close()
            except OSError:
                time.sleep(0.05)
        assert answers["/healthz"] == (200, b'{"status":"ok"}')
        assert answers["/readyz"] == (503, b'{"status":"not ready"}')
        # The main port's own /readyz agrees and says why.
        conn = http.client.HTTPConnection("127.0.0.1", main_port, timeout=10)
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        assert response.status == 503
        assert orjson.loads(response.read())["checks"]["tls"]["ok"] is False
        conn.close()
    finally:
        stop(process)


def test_server_options_bind_the_health_socket_and_need_a_known_port(tmp_path: Path) -> None:
    from provider.config import parse_settings
    from provider.errors import ConfigError
    from provider.server import ProviderServer, ServerOptions

    server = parse_settings(
        {
            "server": {
                "listen": "0.0.0.0:8443",
                "healthListen": "[::]:8081",
                "tls": {"insecurePlainHTTP": True},
            }
        }
    ).server
    options = ServerOptions.from_settings(server)
    assert (options.health_host, options.health_port, options.health_bind) == ("::", 8081, "[::]:8081")
    settings = ProviderServer(options, lambda: None).gunicorn_settings()
    assert settings["bind"] == ["0.0.0.0:8443", "[::]:8081"]
    assert settings["worker_class"].health_port == 8081
    # Without a health listener: one bind, and no health-only routing in the worker.
    plain = ServerOptions.from_settings(
        parse_settings({"server": {"tls": {"insecurePlainHTTP": True}}}).server
    )
    assert plain.health_bind is None
    settings = ProviderServer(plain, lambda: None).gunicorn_settings()
    assert settings["bind"] == ["0.0.0.0:8443"] and settings["worker_class"].health_port is None
    # The same port twice, or a port 0 nobody bound beforehand, are refused before anything starts.
    for health_port in (8443, 0):
        bad = ServerOptions(
            host="0.0.0.0",
            port=8443,
            health_host="0.0.0.0",
            health_port=health_port,
            insecure_plain_http=True,
        )
        with pytest.raises(ConfigError, match="healthListen"):
            ProviderServer(bad, lambda: None)


# -- volume ---------------------------------------------------------------------------------


def test_batch_of_500_keys(provider: ProviderProcess, signing_key: PrivateKey) -> None:
    objects = [_signed_object(signing_key, f"batch-{i}") for i in range(500)]
    objects[7]["data"]["k"] = "tampered"
    keys = [encode_key(o) for o in objects]
    answer = provider.ask(keys)
    items = answer["response"]["items"]
    assert answer["response"]["systemError"] == ""
    assert len(items) == 500
    reasons = {item["key"]: _verdict(item)["reason"] for item in items}
    assert reasons[keys[7]] == "MANIFEST_MISMATCH"
    assert [reasons[k] for i, k in enumerate(keys) if i != 7] == ["VERIFIED"] * 499


def test_50_concurrent_clients(provider: ProviderProcess, signing_key: PrivateKey) -> None:
    objects = [_signed_object(signing_key, f"concurrent-{i}") for i in range(50)]
    start = threading.Barrier(50)

    def one(obj: dict[str, Any]) -> str:
        start.wait(timeout=30)
        answer = provider.ask([encode_key(obj)])
        return str(_verdict(answer["response"]["items"][0])["reason"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, objects))
    assert results == ["VERIFIED"] * 50


# -- connections -----------------------------------------------------------------------------


def test_idle_keep_alive_connections_are_closed(provider: ProviderProcess) -> None:
    """Gatekeeper leaves its connections idle; the server closes them after keepAliveSeconds (2 here)."""
    conn = provider.connection()
    provider.ask([], conn=conn)
    assert conn.sock is not None
    sock = conn.sock
    sock.settimeout(10)
    started = time.monotonic()
    assert sock.recv(1) == b""  # orderly close by the server
    assert time.monotonic() - started < 8
    conn.close()


# -- certificate rotation while serving --------------------------------------------------------


def _served_serial(proc: ProviderProcess) -> int:
    with (
        socket.create_connection((proc.host, proc.port), timeout=10) as raw,
        proc.client_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert tls.recv(64).startswith(b"HTTP/1.1 200")
    return x509.load_der_x509_certificate(der).serial_number


def _wait_for_serial(proc: ProviderProcess, serial: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    seen = _served_serial(proc)
    while seen != serial and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _served_serial(proc)
    return seen


def test_certificate_rotation_without_restart(provider: ProviderProcess) -> None:
    tls = provider.tls
    assert tls is not None
    provider_ca = load_keyed(tls.provider_ca, tls.provider_ca_key)
    before = load_keyed(tls.server_cert, tls.server_key).serial_number
    assert _served_serial(provider) == before
    pid = provider.process.pid

    # A client keeps one connection busy across the whole rotation (closer together than the
    # idle keep-alive timeout): none of its requests may fail.
    stop = threading.Event()
    answered: list[str] = []
    failures: list[BaseException] = []

    def keep_asking() -> None:
        conn = provider.connection()
        try:
            while not stop.is_set():
                answered.append(provider.ask([], conn=conn)["response"]["systemError"])
                time.sleep(0.2)
        except BaseException as exc:
            failures.append(exc)
        finally:
            conn.close()

    busy = threading.Thread(target=keep_asking)
    busy.start()
    try:
        # Half-rotated (new certificate, old key): unusable, so the old pair stays in service.
        fresh = issue_certificate(
            provider_ca, usage=CertUsage.SERVER, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        )
        write_file(tls.server_cert, fresh.certificate_pem(), private=False)
        time.sleep(1.5)
        assert _served_serial(provider) == before
        assert "cannot be used yet" in provider.logs()

        write_file(tls.server_key, fresh.key_pem(), private=True)
        assert _wait_for_serial(provider, fresh.serial_number) == fresh.serial_number
    finally:
        stop.set()
        busy.join(30)
    assert not failures, failures
    assert len(answered) >= 5 and set(answered) == {""}
    assert provider.process.pid == pid and provider.process.poll() is None


# -- the TLS context and certificates without a server -----------------------------------------


@pytest.fixture(scope="module")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertPaths:
    paths, created = ensure_dev_certs(tmp_path_factory.mktemp("dev") / "certs")
    assert created
    return paths


def test_dev_certs_are_reused_while_valid_and_keys_are_private(dev_certs: DevCertPaths) -> None:
    before = dev_certs.server_cert.read_bytes()
    again, created = ensure_dev_certs(dev_certs.directory)
    assert not created and again.server_cert.read_bytes() == before
    for key in (dev_certs.server_key, dev_certs.client_key):
        assert key.stat().st_mode & 0o777 == 0o600
    assert dev_certs.ca_cert.stat().st_mode & 0o777 == 0o644
    # Asking for a name the server certificate lacks regenerates the whole set.
    _, created = ensure_dev_certs(dev_certs.directory, dns_names=("localhost", "provider.example"))
    assert created and dev_certs.server_cert.read_bytes() != before


def test_dev_certs_broken_file_is_regenerated(tmp_path: Path) -> None:
    paths, _ = ensure_dev_certs(tmp_path)
    paths.client_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    _, created = ensure_dev_certs(tmp_path)
    assert created
    load_keyed(paths.client_cert, paths.client_key)


def test_issue_certificate_rejects_bad_input() -> None:
    ca = generate_ca()
    with pytest.raises(KeyMaterialError):
        issue_certificate(ca, usage=CertUsage.SERVER)
    with pytest.raises(KeyMaterialError, match="not-an-ip"):
        issue_certificate(ca, usage=CertUsage.SERVER, ip_addresses=["not-an-ip"])
    leaf = issue_certificate(ca, usage=CertUsage.CLIENT, dns_names=["a.example"], valid_days=100_000)
    # A leaf never outlives its CA.
    assert leaf.certificate.not_valid_after_utc <= ca.certificate.not_valid_after_utc
    assert leaf.certificate.not_valid_before_utc < datetime.datetime.now(datetime.UTC)


def test_server_context_is_tls13_only_and_requires_client_certs(dev_certs: DevCertPaths) -> None:
    ctx = build_server_context(ServerTlsFiles(dev_certs.server_cert, dev_certs.server_key, dev_certs.ca_cert))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.num_tickets == 0


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("server_cert", "server certificate"),
        ("server_key", "server certificate"),
        ("ca_cert", "client CA file"),
    ],
)
def test_server_context_names_the_unusable_file(
    dev_certs: DevCertPaths, tmp_path: Path, broken: str, message: str
) -> None:
    files = {n: getattr(dev_certs, n) for n in ("server_cert", "server_key", "ca_cert")}
    files[broken] = tmp_path / "missing.pem"
    with pytest.raises(KeyMaterialError, match=message):
        build_server_context(ServerTlsFiles(files["server_cert"], files["server_key"], files["ca_cert"]))
    # A file that holds no certificates at all is as bad as a missing one.
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(KeyMaterialError):
        build_server_context(ServerTlsFiles(dev_certs.server_cert, dev_certs.server_key, empty))


def test_reloading_context_checks_files_at_most_every_interval(tmp_path: Path) -> None:
    paths, _ = ensure_dev_certs(tmp_path)
    now = [0.0]
    reloading = ReloadingServerContext(
        ServerTlsFiles(paths.server_cert, paths.server_key, paths.ca_cert),
        check_interval_seconds=5,
        clock=lambda: now[0],
    )
    first = reloading.context()
    ensure_dev_certs(tmp_path, dns_names=("localhost", "rotated.example"))
    now[0] = 4.9
    assert reloading.context() is first  # interval not over: no stat, no reload
    now[0] = 5.0
    second = reloading.context()
    assert second is not first and reloading.reloads == 1
    now[0] = 20.0
    assert reloading.context() is second  # nothing changed


def test_sni_callback_swaps_in_the_new_context_without_sni(tmp_path: Path) -> None:
    """A server that kept one context object still presents the rotated certificate (no SNI sent)."""
    paths, _ = ensure_dev_certs(tmp_path / "certs")
    now = [0.0]
    reloading = ReloadingServerContext(
        ServerTlsFiles(paths.server_cert, paths.server_key, paths.ca_cert),
        check_interval_seconds=1,
        clock=lambda: now[0],
    )
    fixed = reloading.context()  # held forever, like a server that caches its context
    ensure_dev_certs(tmp_path / "certs", dns_names=("localhost", "rotated.example"))
    new_serial = load_keyed(paths.server_cert, paths.server_key).serial_number
    now[0] = 2.0
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        conn, _ = listener.accept()
        with fixed.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    ctx = client_context(paths.ca_cert, cert=paths.client_cert, key=paths.client_key)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(b"x")
    thread.join(10)
    listener.close()
    assert der is not None
    assert x509.load_der_x509_certificate(der).serial_number == new_serial


def test_dns_name_pin_matching() -> None:
    cert = {"subjectAltName": (("DNS", GATEKEEPER_CLIENT_DNS_NAME), ("IP Address", "10.0.0.1"))}
    names = client_dns_names(cert)
    assert names == (GATEKEEPER_CLIENT_DNS_NAME,)
    assert dns_names_allowed(names, [GATEKEEPER_CLIENT_DNS_NAME.upper() + "."])
    assert dns_names_allowed(names, [])  # no pin configured
    assert not dns_names_allowed(names, ["gatekeeper-webhook-service.other.svc"])
    assert not dns_names_allowed((), [GATEKEEPER_CLIENT_DNS_NAME])
    assert not dns_names_allowed(
        client_dns_names({"subjectAltName": (("IP Address", "10.0.0.1"),)}), ["10.0.0.1"]
    )
    assert client_dns_names(None) == ()


def test_logs_are_json_lines_with_one_access_line_per_request(provider: ProviderProcess) -> None:
    provider.ask([])
    time.sleep(0.3)
    records = [orjson.loads(line) for line in provider.logs().splitlines() if line.strip()]
    access = [r for r in records if r.get("logger") == "gunicorn.access"]
    assert any(
        r.get("method") == "POST" and r.get("path") == "/validate" and r.get("status") == 200 for r in access
    )
    # stdout holds what serve prints for people, nothing else.
    assert provider.stdout_path.read_text().splitlines() == [
        f"manifest-provider: serving verdicts on {provider.verdict_url}",
        f"manifest-provider: health probes on http://127.0.0.1:{_health_port(provider)}"
        " (GET /healthz, GET /readyz)",
    ]
