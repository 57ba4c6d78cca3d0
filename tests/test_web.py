"""The HTTP surface: Flask test client for routing, a real HTTP server on loopback for the wire contract.

The server is werkzeug's threaded WSGI server bound to 127.0.0.1 port 0 in a
thread; requests are written to a socket byte for byte, the way Gatekeeper's
Go client writes them.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from flask import Flask
from werkzeug.serving import make_server

from provider import wire
from provider.app import create_app
from provider.config import Settings
from provider.core.signing import bundle_ref_documents
from provider.service import ProviderRuntime
from provider.sources.oci import push_signed_bundle
from provider.web import EXTENSION
from tests.keyutil import keypair
from tests.registry import have_registry, start_registry
from tests.test_service import (
    BlockingResolver,
    bundle_of,
    configmap,
    key_of,
    referenced,
    settings_with,
    signed,
    tampered,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    return signed(configmap())


def runtime(app: Flask) -> ProviderRuntime:
    rt: ProviderRuntime = app.extensions[EXTENSION]
    return rt


class Server:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def raw(self, data: bytes, *, timeout: float = 30) -> tuple[http.client.HTTPResponse, bytes]:
        """Send ``data`` as is; read one response."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            sock.sendall(data)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response, response.read()
        finally:
            sock.close()

    def post(
        self, body: bytes, *, content_type: str | None = "application/json", path: str = "/validate"
    ) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, orjson.loads(data)


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], Server]]:
    servers: list[Server] = []

    def start(settings: Settings) -> Server:
        app = create_app(settings, watch=False)
        runtime(app).mark_tls_ready()
        server = Server(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def gatekeeper_bytes(port: int, body: bytes) -> bytes:
    """A request as Go's net/http client writes it for Gatekeeper's provider call."""
    return (
        b"POST /validate HTTP/1.1\r\n"
        b"Host: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"User-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Accept-Encoding: gzip\r\n"
        b"\r\n" + body
    )


def system_error(doc: dict[str, Any]) -> str:
    assert doc["apiVersion"] == wire.API_VERSION and doc["kind"] == wire.RESPONSE_KIND
    assert doc["response"]["items"] == []
    message: str = doc["response"]["systemError"]
    assert message
    return message


# -- over a real server ---------------------------------------------------------------


def test_request_byte_for_byte_as_gatekeeper_sends_it(
    serve: Callable[[Settings], Server], good: dict[str, Any]
) -> None:
    server = serve(settings_with("alice"))
    body = wire.encode_request([key_of(good), key_of(tampered(good))])
    response, data = server.raw(gatekeeper_bytes(server.port, body))
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    doc = orjson.loads(data)
    assert doc["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1"
    assert doc["kind"] == "ProviderResponse"
    assert doc["response"]["idempotent"] is True
    assert doc["response"]["systemError"] == ""
    items = doc["response"]["items"]
    assert [i["key"] for i in items] == [key_of(good), key_of(tampered(good))]
    assert [i["value"]["reason"] for i in items] == ["VERIFIED", "MANIFEST_MISMATCH"]
    assert all(i["value"]["schema"] == 1 and i["error"] == "" for i in items)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"", "application/json", "not valid JSON"),
        (wire.encode_request(["k"]), "text/plain", "Content-Type must be application/json"),
        (wire.encode_request(["k"]), None, "Content-Type must be application/json"),
        (wire.encode_request(["k"]), "application/x-www-form-urlencoded", "Content-Type"),
        (
            b'{"apiVersion":"externaldata.gatekeeper.sh/v1alpha1","kind":"ProviderRequest"}',
            "application/json",
            "apiVersion must be",
        ),
        (
            b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest",'
            b'"request":{"keys":["a",{"object":{}},3]}}',
            "application/json",
            "request.keys[1] must be a string",
        ),
    ],
)
def test_malformed_requests_get_json_system_errors(
    serve: Callable[[Settings], Server], body: bytes, content_type: str | None, expected: str
) -> None:
    server = serve(settings_with("alice"))
    status, doc = server.post(body, content_type=content_type)
    assert status == 200
    assert expected in system_error(doc)


def test_charset_parameter_is_accepted(serve: Callable[[Settings], Server], good: dict[str, Any]) -> None:
    server = serve(settings_with("alice"))
    _, doc = server.post(wire.encode_request([key_of(good)]), content_type="application/json; charset=utf-8")
    assert doc["response"]["items"][0]["value"]["verified"] is True


def test_duplicates_hostile_keys_and_a_10_mb_key_hide_no_answer(
    serve: Callable[[Settings], Server], good: dict[str, Any]
) -> None:
    server = serve(settings_with("alice", config={"server": {"maxBodyBytes": 32 * MiB}}))
    huge = key_of(configmap(data={"blob": "x" * (10 * MiB)}))
    deep = '{"object":' + '{"a":' * 200 + "1" + "}" * 201
    wide_object: dict[str, Any] = configmap()
    wide_object["data"] = {"list": [0] * 210_000}  # more nodes than limits.maxYamlNodes, under 1 MiB
    wide = key_of(wide_object)
    keys = [key_of(good), huge, key_of(good), deep, "[1,2]", wide, key_of(tampered(good)), deep]
    status, doc = server.post(wire.encode_request(keys))
    assert status == 200 and doc["response"]["systemError"] == ""
    items = doc["response"]["items"]
    assert [i["key"] for i in items] == list(dict.fromkeys(keys))
    by_key = {i["key"]: i for i in items}
    assert by_key[key_of(good)]["value"]["reason"] == "VERIFIED"
    assert by_key[key_of(tampered(good))]["value"]["reason"] == "MANIFEST_MISMATCH"
    assert "server.maxKeyBytes" in by_key[huge]["error"] and by_key[huge]["value"] is None
    assert "depth" in by_key[deep]["error"]
    assert "must be a JSON object" in by_key["[1,2]"]["error"]
    assert "nodes" in by_key[wide]["error"]


def test_oversized_body_is_refused_before_it_is_read(serve: Callable[[Settings], Server]) -> None:
    server = serve(settings_with("alice"))
    # Announce 9 MiB but send only the head: the answer must not wait for the body.
    head = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(9 * MiB).encode() + b"\r\n\r\n{"
    )
    response, data = server.raw(head, timeout=10)
    assert response.status == 200
    assert "more than the 8388608 allowed (server.maxBodyBytes)" in system_error(orjson.loads(data))


def test_oversized_chunked_body_is_cut_off(serve: Callable[[Settings], Server]) -> None:
    server = serve(settings_with("alice", config={"server": {"maxBodyBytes": 4096}}))
    chunk = b"x" * 3000
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    head = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    response, data = server.raw(head + body)
    assert response.status == 200
    assert "more than the 4096 allowed bytes" in system_error(orjson.loads(data))


def test_ten_thousand_keys(serve: Callable[[Settings], Server], good: dict[str, Any]) -> None:
    keys = [key_of(configmap(name=f"cm-{i}")) for i in range(10_000)]
    keys[5000] = key_of(good)
    body = wire.encode_request(keys)
    # Over the default per-request bound: one systemError, no partial answer.
    server = serve(settings_with("alice"))
    _, doc = server.post(body)
    assert "10000 keys, more than the 1000 allowed" in system_error(doc)
    # Raised bound: every key answered, in order.
    roomy = serve(
        settings_with("alice", config={"server": {"maxKeysPerRequest": 10_000, "providerTimeoutSeconds": 30}})
    )
    _, doc = roomy.post(body)
    items = doc["response"]["items"]
    assert len(items) == 10_000 and doc["response"]["systemError"] == ""
    assert items[5000]["key"] == key_of(good) and items[5000]["value"]["reason"] == "VERIFIED"
    assert items[0]["value"]["reason"] == "NO_SIGNATURE" and items[9999]["key"] == keys[9999]


def test_keep_alive_connection_serves_several_requests(
    serve: Callable[[Settings], Server], good: dict[str, Any]
) -> None:
    server = serve(settings_with("alice"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(3):
        conn.request(
            "POST",
            "/validate",
            body=wire.encode_request([key_of(good)]),
            headers={"Content-Type": "application/json"},
        )
        doc = orjson.loads(conn.getresponse().read())
        assert doc["response"]["items"][0]["value"]["verified"] is True
    conn.close()


# -- routing, errors, health and metrics (test client) ------------------------------


@pytest.fixture
def app() -> Flask:
    return create_app(settings_with("alice"), watch=False)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/validate", "HTTP 405 Method Not Allowed: GET /validate"),
        ("PUT", "/validate", "HTTP 405"),
        ("GET", "/", "HTTP 404 Not Found"),
        ("POST", "/nowhere", "HTTP 404 Not Found: POST /nowhere"),
        ("POST", "/healthz", "HTTP 405"),
    ],
)
def test_http_errors_are_json_never_html(app: Flask, method: str, path: str, expected: str) -> None:
    response = app.test_client().open(path, method=method)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert b"<html" not in response.data.lower()
    assert expected in system_error(orjson.loads(response.data))


def test_unexpected_exception_is_a_json_system_error(app: Flask) -> None:
    def explode(body: bytes, *, started: float | None = None) -> bytes:
        raise RuntimeError("bug")

    runtime(app).service.handle = explode  # type: ignore[method-assign]
    response = app.test_client().post("/validate", data=b"{}", content_type="application/json")
    assert response.status_code == 200
    assert system_error(orjson.loads(response.data)) == "internal error"


def test_health_and_readiness(app: Flask) -> None:
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and orjson.loads(health.data) == {"status": "ok"}
    before = client.get("/readyz")
    assert before.status_code == 503
    detail = orjson.loads(before.data)
    assert detail["ready"] is False and detail["checks"]["tls"]["ok"] is False
    runtime(app).mark_tls_ready()
    after = client.get("/readyz")
    assert after.status_code == 200
    detail = orjson.loads(after.data)
    assert detail["ready"] is True
    assert detail["generation"] == runtime(app).settings.generation
    assert detail["checks"]["keys"] == {"ok": True, "count": 1}
    assert detail["lastReload"]["ok"] is True
    runtime(app).mark_tls_unready("certificate file unreadable")
    assert client.get("/readyz").status_code == 503


def test_metrics_exposition(app: Flask, good: dict[str, Any]) -> None:
    client = app.test_client()
    body = wire.encode_request([key_of(good), key_of(good), "bad"])
    client.post("/validate", data=body, content_type="application/json")
    client.post("/validate", data=body, content_type="application/json")
    client.post("/validate", data=b"{", content_type="application/json")
    client.post("/validate", data=body, content_type="text/plain")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.data.decode()
    generation = runtime(app).settings.generation
    for line in (
        'manifest_provider_verdicts_total{reason="VERIFIED"} 2.0',
        "manifest_provider_cache_hits_total 1.0",
        "manifest_provider_cache_misses_total 1.0",
        "manifest_provider_key_errors_total 2.0",
        'manifest_provider_system_errors_total{kind="request"} 2.0',
        "manifest_provider_requests_total 4.0",
        "manifest_provider_in_flight_requests 0.0",
        "manifest_provider_keys_per_request_count 2.0",
        "manifest_provider_request_seconds_count 4.0",
        f'manifest_provider_config_generation_info{{generation="{generation}"}} 1.0',
        "manifest_provider_config_last_reload_success 1.0",
    ):
        assert line in text, line


def test_default_app_trusts_nobody(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="provider.app"):
        app = create_app(watch=False)
    start = [r for r in caplog.records if r.getMessage() == "provider configured"]
    assert len(start) == 1 and start[0].fields["keys"] == []  # type: ignore[attr-defined]
    obj = signed(configmap())
    response = app.test_client().post(
        "/validate", data=wire.encode_request([key_of(obj)]), content_type="application/json"
    )
    item = orjson.loads(response.data)["response"]["items"][0]
    assert item["value"]["verified"] is False


# -- a real registry behind the default resolver ----------------------------------------


@pytest.mark.registry
@pytest.mark.skipif(not have_registry(), reason="needs /usr/bin/docker-registry (Debian docker-registry)")
def test_referenced_bundle_from_a_real_registry_then_registry_down(
    serve: Callable[[Settings], Server], tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "registry")
    try:
        host = registry.host
        config = {"registries": {"allow": [f"{host}/bundles/*"], "insecure": [host]}}
        settings = settings_with("alice", config=config)
        assert settings.registries is not None
        key, _ = keypair("alice")

        def publish(name: str) -> dict[str, Any]:
            reference = f"{host}/bundles/{name}:v1"
            raw, out = bundle_ref_documents(yaml.safe_dump(configmap(name=name)).encode(), reference)
            push_signed_bundle(reference, raw, key, settings=settings.registries)  # type: ignore[arg-type]
            obj = yaml.safe_load(out)
            assert isinstance(obj, dict)
            return obj

        first, second = publish("first"), publish("second")
        server = serve(settings)
        _, doc = server.post(wire.encode_request([key_of(first)]))
        item = doc["response"]["items"][0]
        assert item["value"]["reason"] == "VERIFIED"
        assert item["value"]["bundle"]["source"] == "oci"
        resolved = item["value"]["bundle"]["resolved"]
        assert resolved.startswith(f"{host}/bundles/first") and "@sha256:" in resolved
    finally:
        registry.stop()
    # Registry gone: the cached verdict still answers, a new reference is a systemError
    # and the answer holds no item at all, not even the cached one.
    _, doc = server.post(wire.encode_request([key_of(first)]))
    assert doc["response"]["items"][0]["value"]["reason"] == "VERIFIED"
    _, doc = server.post(wire.encode_request([key_of(first), key_of(second)]))
    assert doc["response"]["items"] == []
    assert doc["response"]["systemError"].startswith("could not check a key: ")
    assert host in doc["response"]["systemError"]


def test_deadline_over_http_is_an_answer_not_a_dropped_connection(good: dict[str, Any]) -> None:
    settings = settings_with(
        "alice", config={"server": {"providerTimeoutSeconds": 1, "deadlineMilliseconds": 250}}
    )
    resolver = BlockingResolver(bundle_of(good))
    app = create_app(settings, watch=False, resolver_factory=lambda s: resolver)
    server = Server(app)
    try:
        started = time.monotonic()
        status, doc = server.post(wire.encode_request([key_of(referenced(good)), key_of(good)]))
        assert time.monotonic() - started < 1.0
        assert status == 200
        assert "250 ms deadline" in system_error(doc)
    finally:
        resolver.release.set()
        server.close()


def test_metrics_in_multi_process_mode(tmp_path: Path) -> None:
    """prometheus-client picks its value store at import, so this runs in a fresh interpreter."""
    script = """
import sys
from provider import wire
from provider.app import create_app
app = create_app(watch=False)
client = app.test_client()
body = wire.encode_request(['{"object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}}'])
client.post("/validate", data=body, content_type="application/json")
sys.stdout.write(client.get("/metrics").data.decode())
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert 'manifest_provider_verdicts_total{reason="NO_SIGNATURE"} 1.0' in done.stdout
    assert "manifest_provider_requests_total 1.0" in done.stdout
    assert list(tmp_path.glob("*.db")), "values were not written to the multi-process directory"


def test_transform_applies_to_the_first_and_every_reloaded_configuration(tmp_path: Path) -> None:
    """What serve uses for --key: a transform that must survive reloads, and may reject one."""
    import dataclasses

    from provider.app import WATCHER_EXTENSION
    from provider.errors import ConfigError
    from provider.reload import ConfigWatcher

    _, pem_a = keypair("transform-a")
    _, pem_b = keypair("transform-b")
    (tmp_path / "a.pub").write_bytes(pem_a)
    (tmp_path / "b.pub").write_bytes(pem_b)
    config = tmp_path / "config.yaml"
    config.write_text("keys: [{name: a, path: a.pub}]\n")
    seen: list[str] = []
    refuse = [False]

    def transform(settings: Settings) -> Settings:
        if refuse[0]:
            raise ConfigError(["--key b: a trusted key with this name is already configured"])
        seen.append(settings.generation)
        return dataclasses.replace(settings, generation=settings.generation + "-t")

    app = create_app(config_path=str(config), watch=False, transform=transform)
    rt = runtime(app)
    watcher: ConfigWatcher = app.extensions[WATCHER_EXTENSION]
    first = rt.service.generation
    assert first.endswith("-t") and len(seen) == 1

    config.write_text("keys: [{name: a, path: a.pub}, {name: b, path: b.pub}]\n")
    assert watcher.poll() is True
    assert rt.service.generation.endswith("-t") and rt.service.generation != first and len(seen) == 2
    assert [k.name for k in rt.settings.keys] == ["a", "b"]

    refuse[0] = True
    config.write_text("keys: [{name: b, path: b.pub}]\n")
    assert watcher.poll() is False
    assert rt.reload_status.ok is False and "already configured" in (rt.reload_status.error or "")
    assert [k.name for k in rt.settings.keys] == ["a", "b"]
