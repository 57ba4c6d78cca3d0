"""``manifest-provider serve`` as a user runs it: real subprocesses on loopback ports.

The development mode (no ``--config``) must leave a working set-up behind:
certificates in ``./dev-certs/``, a ``curl`` command that gets a verdict for
the shipped signed sample, and a Gatekeeper ``Provider`` resource. Invalid
configurations must list every problem and exit 2 before anything listens.
"""

from __future__ import annotations

import base64
import http.client
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from provider.core.cosignkey import PrivateKey
from provider.core.limits import DEFAULT_LIMITS
from provider.core.safeyaml import load_documents
from provider.core.signing import sign_documents
from provider.wire import encode_key, encode_request
from tests.providerproc import client_context, run_provider, serve_command, serve_env, stop, wait_for_banner

ROOT = Path(__file__).resolve().parent.parent


def _start(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    with (cwd / "serve.out").open("wb") as out, (cwd / "serve.err").open("wb") as err:
        return subprocess.Popen(
            serve_command("serve", *args), cwd=cwd, env=serve_env(), stdout=out, stderr=err
        )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for p in processes:
        stop(p)


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run serve expecting it to stop by itself (a configuration error)."""
    return subprocess.run(
        serve_command("serve", *args), cwd=cwd, env=serve_env(), capture_output=True, text=True, timeout=60
    )


def _curl_line(stdout: str) -> list[str]:
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("curl ")]
    assert len(lines) == 1, stdout
    return shlex.split(lines[0])


def _replay_with_python(argv: list[str], cwd: Path) -> bytes:
    """Do what the printed curl command does, with Python's ssl (when curl is not installed)."""
    opts: dict[str, str] = {}
    i = 1
    while i < len(argv) - 1:
        if argv[i] in ("--cacert", "--cert", "--key", "-d", "-H"):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            i += 1
    url = urllib.parse.urlsplit(argv[-1])
    ctx = client_context(cwd / opts["--cacert"], cert=cwd / opts["--cert"], key=cwd / opts["--key"])
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=30)
    body = (cwd / opts["-d"].removeprefix("@")).read_bytes()
    conn.request("POST", url.path, body=body, headers={"Content-Type": "application/json"})
    return conn.getresponse().read()


def test_development_mode_prints_a_curl_command_that_gets_a_verdict(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start(tmp_path, "--listen", "127.0.0.1:0", "--workers", "1", "--threads", "2")
    started.append(proc)
    url = wait_for_banner(tmp_path / "serve.out", proc, tmp_path / "serve.err", 60)
    assert url.startswith("https://127.0.0.1:") and url.endswith("/validate")
    stdout = (tmp_path / "serve.out").read_text()

    dev = tmp_path / "dev-certs"
    for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key", "request.json"):
        assert (dev / name).is_file(), name
    assert (dev / "server.key").stat().st_mode & 0o777 == 0o600
    assert (dev / "client.key").stat().st_mode & 0o777 == 0o600

    argv = _curl_line(stdout)
    assert argv[-1] == url and "-d" in argv and argv[argv.index("-d") + 1] == "@dev-certs/request.json"
    request = orjson.loads((dev / "request.json").read_bytes())
    assert request["kind"] == "ProviderRequest"
    envelope = orjson.loads(request["request"]["keys"][0])
    sample = load_documents(
        (ROOT / "provider/data/sample-deployment.signed.yaml").read_bytes(), limits=DEFAULT_LIMITS
    )
    assert envelope == {"object": sample[0]}

    body = b""
    for _ in range(100):  # the worker may still be booting
        if shutil.which("curl"):
            done = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=30)
            body = done.stdout
        else:
            try:
                body = _replay_with_python(argv, tmp_path)
            except OSError:
                body = b""
        if body:
            break
        assert proc.poll() is None, (tmp_path / "serve.err").read_text()
        time.sleep(0.1)
    answer = orjson.loads(body)
    item = answer["response"]["items"][0]
    assert item["error"] == ""
    assert item["value"]["reason"] == "VERIFIED", item
    assert item["value"]["signers"][0]["name"] == "demo"

    provider_yaml = stdout[stdout.index("apiVersion: externaldata.gatekeeper.sh/v1beta1") :]
    resource: dict[str, Any] = yaml.safe_load(provider_yaml)
    assert resource["kind"] == "Provider"
    assert resource["spec"]["url"] == url
    assert isinstance(resource["spec"]["timeout"], int) and resource["spec"]["timeout"] > 0
    assert base64.b64decode(resource["spec"]["caBundle"]) == (dev / "ca.crt").read_bytes()

    # SIGTERM is gunicorn's graceful shutdown: a clean exit.
    assert stop(proc) == 0
    assert "Shutting down" in (tmp_path / "serve.err").read_text()

    # A second start reuses the certificates (and says so).
    before = (dev / "server.crt").read_bytes()
    again = _start(tmp_path, "--listen", "127.0.0.1:0", "--workers", "1", "--threads", "1")
    started.append(again)
    wait_for_banner(tmp_path / "serve.out", again, tmp_path / "serve.err", 60)
    assert "reused" in (tmp_path / "serve.out").read_text()
    assert (dev / "server.crt").read_bytes() == before


def test_insecure_plain_http_with_an_extra_key(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    key = PrivateKey.generate()
    (tmp_path / "extra.pub").write_bytes(key.public_pem())
    signed = sign_documents(
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: a\ndata:\n  k: v\n", key
    )
    obj = load_documents(signed, limits=DEFAULT_LIMITS)[0]
    proc = _start(
        tmp_path,
        "--insecure-plain-http",
        "--key",
        "extra=extra.pub",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--threads",
        "2",
        "--dev-certs",
        "unused-certs",
    )
    started.append(proc)
    url = wait_for_banner(tmp_path / "serve.out", proc, tmp_path / "serve.err", 60)
    assert url.startswith("http://127.0.0.1:")
    parts = urllib.parse.urlsplit(url)
    body = _post_plain(parts, encode_request([encode_key(obj)]), proc, tmp_path / "serve.err")
    answer = orjson.loads(body)
    verdict = answer["response"]["items"][0]["value"]
    assert verdict["reason"] == "VERIFIED" and verdict["signers"][0]["name"] == "extra"
    assert "INSECURE" in (tmp_path / "serve.err").read_text()
    # No certificates with plain HTTP; the sample request still goes where they would be.
    assert sorted(p.name for p in (tmp_path / "unused-certs").iterdir()) == ["request.json"]

    # SIGTERM while a batch is being checked: the answer is still complete, then a clean exit.
    many = [encode_key(o) for o in _signed_configmaps(key, 300)]
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", "/validate", body=encode_request([]), headers={"Content-Type": "application/json"})
    conn.getresponse().read()  # the connection is accepted and kept alive
    conn.request("POST", "/validate", body=encode_request(many), headers={"Content-Type": "application/json"})
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    response = conn.getresponse()
    answer = orjson.loads(response.read())
    assert response.status == 200 and answer["response"]["systemError"] == ""
    assert len(answer["response"]["items"]) == 300
    assert proc.wait(timeout=30) == 0


def _signed_configmaps(key: PrivateKey, count: int) -> list[dict[str, Any]]:
    text = b"\n---\n".join(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  namespace: a\ndata:\n  k: v\n".encode()
        for i in range(count)
    )
    # One signature per object, as separately signed files would carry.
    return [
        load_documents(sign_documents(doc, key), limits=DEFAULT_LIMITS)[0] for doc in text.split(b"\n---\n")
    ]


def test_configuration_errors_are_all_listed(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "keys": [{"name": "a", "path": "missing.pub"}],
                "server": {"workers": 0, "bogus": True, "tls": {"certFile": "nope.crt"}},
            }
        )
    )
    done = _run(
        tmp_path, "--config", "config.yaml", "--key", "broken", "--threads", "0", "--listen", "127.0.0.1:0"
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr
    for expected in (
        "missing.pub",
        "server.workers",
        "server.bogus",
        "nope.crt",
        "keyFile",
        "--key 'broken'",
        "--threads",
    ):
        assert expected in err, (expected, err)
    assert "Listening" not in err and done.stdout == ""


def test_tls_files_are_required_unless_plain_http_is_chosen(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("keys: []\n")
    done = _run(tmp_path, "--config", "config.yaml", "--listen", "127.0.0.1:0")
    assert done.returncode == 2
    assert "certFile" in done.stderr and "clientCAFile" in done.stderr and "insecurePlainHTTP" in done.stderr


def test_unusable_tls_files_are_a_configuration_error(tmp_path: Path) -> None:
    for name in ("s.crt", "s.key", "ca.crt"):
        (tmp_path / name).write_text("not PEM\n")
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {"server": {"tls": {"certFile": "s.crt", "keyFile": "s.key", "clientCAFile": "ca.crt"}}}
        )
    )
    done = _run(tmp_path, "--config", "config.yaml", "--listen", "127.0.0.1:0")
    assert done.returncode == 2
    assert "server.tls" in done.stderr and "s.crt" in done.stderr


@pytest.mark.parametrize("listen", ["nohost", "127.0.0.1:99999", ":8443", "127.0.0.1:http"])
def test_bad_listen_address(tmp_path: Path, listen: str) -> None:
    done = _run(tmp_path, "--insecure-plain-http", "--listen", listen)
    assert done.returncode == 2
    assert "--listen" in done.stderr


def test_busy_port_is_reported(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = _run(tmp_path, "--insecure-plain-http", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_keys_held_in_cluster_secrets(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    """``secret: k8s://NS/NAME`` keys are read from the cluster at start-up.

    The cluster is the SMALL LOCAL FAKE API server of ``tests/fakeapi.py`` (plain HTTP on loopback),
    reached through a kubeconfig, as the provider would reach a real API server.
    """
    from tests.fakeapi import FakeApiServer

    key = PrivateKey.generate()
    obj = _signed_configmaps(key, 1)[0]
    with FakeApiServer(token="t0ken") as api:
        api.add(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "release-key", "namespace": "keys"},
                "data": {"cosign.pub": base64.b64encode(key.public_pem()).decode()},
            }
        )
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
            "users": [{"name": "provider", "user": {"token": "t0ken"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "provider"}}],
            "current-context": "fake",
        }
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        config = {
            "keys": [{"name": "release", "secret": "k8s://keys/release-key"}],
            "server": {"reloadIntervalSeconds": 0, "tls": {"insecurePlainHTTP": True}},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        env = serve_env()
        env["KUBECONFIG"] = str(tmp_path / "kubeconfig")
        env.pop("KUBERNETES_SERVICE_HOST", None)
        args = ["--config", "config.yaml", "--listen", "127.0.0.1:0", "--workers", "1", "--threads", "2"]
        with (tmp_path / "serve.out").open("wb") as out, (tmp_path / "serve.err").open("wb") as err:
            proc = subprocess.Popen(
                serve_command("serve", *args), cwd=tmp_path, env=env, stdout=out, stderr=err
            )
        started.append(proc)
        url = urllib.parse.urlsplit(wait_for_banner(tmp_path / "serve.out", proc, tmp_path / "serve.err", 60))
        body = _post_plain(url, encode_request([encode_key(obj)]), proc, tmp_path / "serve.err")
        assert any(r.path.endswith("/namespaces/keys/secrets/release-key") for r in api.requests)
    verdict = orjson.loads(body)["response"]["items"][0]["value"]
    assert verdict["reason"] == "VERIFIED" and verdict["signers"][0]["name"] == "release"


def test_keys_added_with_key_survive_a_configuration_reload(
    tmp_path: Path, key_a_pub: bytes, key_b_pub: bytes
) -> None:
    """--key keys are applied to every reloaded configuration, and the generation covers them."""
    key = PrivateKey.generate()
    extra = tmp_path / "extra.pub"
    extra.write_bytes(key.public_pem())
    signed = sign_documents(
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: r\n  namespace: a\ndata:\n  k: v\n", key
    )
    key_text = encode_key(load_documents(signed, limits=DEFAULT_LIMITS)[0])
    with run_provider(
        tmp_path / "p",
        keys={"file-key": key_a_pub},
        config={"server": {"reloadIntervalSeconds": 0.2}},
        extra_args=("--key", f"extra={extra}"),
    ) as proc:
        first = orjson.loads(proc.get("/readyz")[1])
        verdict = proc.ask([key_text])["response"]["items"][0]["value"]
        assert verdict["reason"] == "VERIFIED" and verdict["signers"][0]["name"] == "extra"

        # A real change to the file: one more trusted key, so a new generation is built.
        (proc.directory / "second.pub").write_bytes(key_b_pub)
        doc = yaml.safe_load(proc.config_path.read_text())
        doc["keys"].append({"name": "second", "path": "second.pub"})
        proc.config_path.write_text(yaml.safe_dump(doc))
        deadline = time.monotonic() + 30
        now = first
        while time.monotonic() < deadline and now["generation"] == first["generation"]:
            time.sleep(0.1)
            now = orjson.loads(proc.get("/readyz")[1])
        assert now["lastReload"]["ok"] is True, now
        assert now["generation"] != first["generation"], now
        # The two keys of the file and the --key key, after the reload.
        assert now["checks"]["keys"]["count"] == 3, now
        verdict = proc.ask([key_text])["response"]["items"][0]["value"]
        assert verdict["reason"] == "VERIFIED" and verdict["signers"][0]["name"] == "extra"
        assert "configuration reloaded" in proc.logs()
        assert "reload is off" not in proc.logs()


def _post_plain(
    url: urllib.parse.SplitResult, body: bytes, proc: subprocess.Popen[bytes], err: Path
) -> bytes:
    """POST a ProviderRequest over plain HTTP, retrying while the workers start."""
    for _ in range(200):
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            conn.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
            return conn.getresponse().read()
        except OSError:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
    raise AssertionError("the provider never answered on its plain-HTTP port")
