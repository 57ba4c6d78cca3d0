"""The configuration file: defaults, every section, every problem at once, the generation digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.config import (
    ServerSettings,
    Settings,
    build_verifier,
    default_deadline_milliseconds,
    load_settings,
    parse_settings,
    settings_from_bytes,
)
from provider.core.ignore import default_ignore_rules
from provider.core.limits import MiB
from provider.core.verifier import Verifier
from provider.errors import ConfigError, SourceError
from tests.conftest import SHARED_FIXTURES
from tests.keyutil import keypair

TRUSTED_ROOT = SHARED_FIXTURES / "sigstore" / "trusted_root_pgi.json"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return "\n".join(exc.value.problems)


def test_empty_configuration_has_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.keys == ()
    assert settings.trust.is_empty
    server = settings.server
    assert server.provider_timeout_seconds == 3
    assert server.deadline_milliseconds == 2500
    assert server.max_body_bytes == 8 * MiB
    assert server.max_keys_per_request == 1000
    assert server.max_key_bytes == 1 * MiB
    assert settings.cache.entries == 10_000
    assert settings.cache.ttl_seconds == 300
    assert settings.registries is None
    assert settings.rules == default_ignore_rules()
    assert settings.generation and len(settings.generation) == 32
    assert settings.watched_files == (str(tmp_path / "config.yaml"),)
    default = Settings.default()
    assert (default.server, default.cache, default.limits) == (
        settings.server,
        settings.cache,
        settings.limits,
    )
    assert default.generation == settings.generation


def test_deadline_follows_the_provider_timeout() -> None:
    assert default_deadline_milliseconds(3) == 2500
    assert default_deadline_milliseconds(1) < 1000
    assert default_deadline_milliseconds(10) == 9500
    settings = parse_settings({"server": {"providerTimeoutSeconds": 1}})
    assert 0 < settings.server.deadline_milliseconds < 1000
    assert ServerSettings().deadline_milliseconds == default_deadline_milliseconds(3)


def test_deadline_at_or_above_timeout_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_settings({"server": {"providerTimeoutSeconds": 2, "deadlineMilliseconds": 2000}})
    assert "deadlineMilliseconds (2000) must be below" in problems_of(exc)


def test_full_configuration(tmp_path: Path) -> None:
    _, pem_a = keypair("config-a")
    _, pem_b = keypair("config-b")
    _, pem_c = keypair("config-c")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "a.pub").write_bytes(pem_a)
    (tmp_path / "root.json").write_bytes(TRUSTED_ROOT.read_bytes())
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("placeholder")
    loaded: list[str] = []

    def secrets(ref: str) -> bytes:
        loaded.append(ref)
        return pem_c

    pem_block = pem_b.decode().replace("\n", "\n      ")
    config = write(
        tmp_path,
        f"""
keys:
  - name: team-a
    path: keys/a.pub
  - name: team-b
    pem: |
      {pem_block}
  - name: team-c
    secret: k8s://security/cosign-key
keyless:
  trustedRoot: root.json
  identities:
    - issuer: https://accounts.google.com
      subject: someone@example.com
ignoreFields:
  - objects: [{{kind: Deployment, group: apps}}]
    fields: [spec.replicas]
builtinIgnoreFields: false
annotationDomain: example.org
limits:
  maxDepth: 32
  maxMessageBytes: 1048576
registries:
  allow: [registry.example.com/bundles/*]
cluster:
  configMapNamespaces: [signatures]
cache:
  entries: 5
  ttlSeconds: 2.5
server:
  listen: "[::]:9443"
  providerTimeoutSeconds: 5
  deadlineMilliseconds: 4000
  maxBodyBytes: 1024
  maxKeysPerRequest: 7
  maxKeyBytes: 512
  workers: 3
  threads: 6
  keepAliveSeconds: 9
  reloadIntervalSeconds: 0
  tls:
    certFile: tls.crt
    keyFile: tls.key
    clientCAFile: ca.crt
    clientDNSNames: [gatekeeper-webhook-service.gatekeeper-system.svc]
""",
    )
    settings = load_settings(config, secret_loader=secrets)
    assert [k.name for k in settings.keys] == ["team-a", "team-b", "team-c"]
    assert [s.source for s in settings.key_specs] == ["path", "pem", "secret"]
    assert settings.key_specs[0].location == str(tmp_path / "keys" / "a.pub")
    assert loaded == ["k8s://security/cosign-key"]
    assert settings.trusted_root is not None
    assert len(settings.identities) == 1
    assert not settings.trust.is_empty
    # builtinIgnoreFields: false leaves only the configured rule.
    assert len(settings.rules) == 1 and settings.rules[0].fields == ("spec.replicas",)
    assert settings.annotation_domain == "example.org"
    assert settings.limits.max_depth == 32
    assert settings.limits.max_message_bytes == 1048576
    assert settings.registries is not None
    assert settings.cluster is not None and settings.cluster.configmap_namespaces == ("signatures",)
    assert (settings.cache.entries, settings.cache.ttl_seconds) == (5, 2.5)
    s = settings.server
    assert (s.listen, s.provider_timeout_seconds, s.deadline_milliseconds) == ("[::]:9443", 5, 4000)
    assert (s.max_body_bytes, s.max_keys_per_request, s.max_key_bytes) == (1024, 7, 512)
    assert (s.workers, s.threads, s.keep_alive_seconds, s.reload_interval_seconds) == (3, 6, 9, 0.0)
    assert s.tls.cert_file == str(tmp_path / "tls.crt")
    assert s.tls.client_dns_names == ("gatekeeper-webhook-service.gatekeeper-system.svc",)
    assert s.tls.serving_problems() == []
    # Every named file is watched for reloads.
    for name in ("config.yaml", "keys/a.pub", "root.json", "tls.crt", "tls.key", "ca.crt"):
        assert str(tmp_path / name) in settings.watched_files
    verifier = build_verifier(settings)
    assert isinstance(verifier, Verifier)
    assert verifier.domain == "example.org"
    assert verifier.limits.max_depth == 32
    assert verifier.trust.keys == settings.keys


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
keys:
  - name: one
    path: missing.pub
  - name: one
    pem: not a key
  - name: three
    secret: not-a-reference
  - path: x.pub
  - name: both
    pem: a
    path: b
  - just a string
keyless:
  identities: []
ignoreFields: "spec"
builtinIgnoreFields: "yes"
annotationDomain: "Not A Domain"
limits:
  maxDepth: 0
  maxWidth: 3
registries: 12
cluster:
  configMapNamespaces: "all"
cache:
  entries: -1
  ttlSeconds: .inf
server:
  listen: nowhere
  providerTimeoutSeconds: 0
  maxBodyBytes: 1.5
  workers: true
  colour: blue
  tls:
    certFile: missing.crt
    insecurePlainHTTP: sometimes
unknownSection: {}
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(config)
    text = problems_of(exc)
    expected = [
        "keys[0].path: cannot read",
        "keys[1].name: duplicate key name 'one'",
        "keys[1]: cannot load public key 'one'",
        "keys[2].secret must look like k8s://NAMESPACE/SECRET",
        "keys[3].name is required",
        "keys[4]: needs exactly one of path, pem, secret",
        "keys[5] must be a mapping",
        "keyless.trustedRoot is required",
        "keyless.identities must list at least one",
        "ignoreFields",
        "builtinIgnoreFields must be true or false",
        "annotationDomain must be a lower-case DNS name",
        "limits.maxDepth must be an integer >= 1",
        "limits.maxWidth: unknown key",
        "registries",
        "cluster.configMapNamespaces",
        "cache.entries must be an integer >= 0",
        "cache.ttlSeconds must be a number > 0, got inf",
        "server.listen must be HOST:PORT",
        "server.providerTimeoutSeconds must be an integer >= 1",
        "server.maxBodyBytes must be an integer >= 1",
        "server.workers must be an integer >= 1",
        "server.colour: unknown key",
        "server.tls.certFile: " + str(tmp_path / "missing.crt") + " is not a readable file",
        "server.tls.certFile and server.tls.keyFile must be given together",
        "server.tls.insecurePlainHTTP must be true or false",
        "configuration.unknownSection: unknown key",
    ]
    missing = [e for e in expected if e not in text]
    assert not missing, f"problems not reported: {missing}\nreported:\n{text}"
    assert len(exc.value.problems) >= len(expected)
    # Messages never carry key material.
    assert "not a key" not in text


def test_secret_keys_need_a_loader_and_loader_failures_are_problems(tmp_path: Path) -> None:
    config = write(tmp_path, "keys: [{name: c, secret: k8s://ns/key}]\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config)
    assert "need cluster access" in problems_of(exc)

    def broken(ref: str) -> bytes:
        raise SourceError("API server unreachable")

    with pytest.raises(ConfigError) as exc:
        load_settings(config, secret_loader=broken)
    assert "cannot load k8s://ns/key: API server unreachable" in problems_of(exc)

    def buggy(ref: str) -> bytes:
        raise RuntimeError("token=abc")

    with pytest.raises(ConfigError) as exc:
        load_settings(config, secret_loader=buggy)
    assert problems_of(exc).endswith("cannot load k8s://ns/key: RuntimeError")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "configuration must be a mapping"),
        ("a: [\n", "YAML is not well formed"),
        ("keys: []\n---\nkeys: []\n", "expected one YAML document, found 2"),
        ("a: &x [*x]\n", "recursive structure"),
        # An alias bomb is refused before it expands.
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)
            ),
            "nodes",
        ),
        ("keys: {name: a}\n", "keys must be a list"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text))
    assert expected in problems_of(exc)


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(tmp_path / "absent.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (4 * MiB + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_settings(big)


def test_tls_serving_problems(tmp_path: Path) -> None:
    assert len(parse_settings({}).server.tls.serving_problems()) == 3
    plain = parse_settings({"server": {"tls": {"insecurePlainHTTP": True}}})
    assert plain.server.tls.serving_problems() == []


def test_generation_tracks_verdict_inputs_only(tmp_path: Path) -> None:
    _, pem_a = keypair("gen-a")
    _, pem_b = keypair("gen-b")
    key_file = tmp_path / "k.pub"
    key_file.write_bytes(pem_a)

    def gen(extra: str = "") -> str:
        return load_settings(write(tmp_path, "keys: [{name: k, path: k.pub}]\n" + extra)).generation

    base = gen()
    assert gen() == base
    # Server and cache settings do not change what a verdict says.
    assert gen("server: {workers: 7, maxKeysPerRequest: 3}\ncache: {entries: 1}\n") == base
    # Everything a verdict depends on does.
    changed = {
        gen("ignoreFields: [{fields: [spec.replicas]}]\n"),
        gen("builtinIgnoreFields: false\n"),
        gen("annotationDomain: example.org\n"),
        gen("limits: {maxDepth: 10}\n"),
        gen("registries: {allow: [r.example.com]}\n"),
    }
    assert base not in changed and len(changed) == 5
    # Same name and path, new key material.
    key_file.write_bytes(pem_b)
    assert gen() != base


def test_config_from_bytes_resolves_paths_against_base_dir(tmp_path: Path) -> None:
    _, pem = keypair("bytes")
    (tmp_path / "k.pub").write_bytes(pem)
    settings = settings_from_bytes(b"keys: [{name: k, path: k.pub}]\n", base_dir=tmp_path)
    assert settings.keys[0].name == "k"
    assert settings.source_path is None


def test_real_fixture_keys_load(tmp_path: Path, key_a_pub: bytes, key_c_pub: bytes) -> None:
    (tmp_path / "a.pub").write_bytes(key_a_pub)
    settings = parse_settings(
        {"keys": [{"name": "a", "path": "a.pub"}, {"name": "c", "pem": key_c_pub.decode()}]},
        base_dir=tmp_path,
    )
    assert [k.name for k in settings.keys] == ["a", "c"]
    assert settings.keys[0].fingerprint != settings.keys[1].fingerprint


def test_health_listen_is_off_by_default_and_validated_like_listen() -> None:
    assert parse_settings({}).server.health_listen is None
    s = parse_settings({"server": {"listen": "0.0.0.0:8443", "healthListen": "0.0.0.0:8081"}}).server
    assert (s.listen, s.health_listen) == ("0.0.0.0:8443", "0.0.0.0:8081")
    assert parse_settings({"server": {"healthListen": "[::]:8081"}}).server.health_listen == "[::]:8081"
    for bad, expected in (
        ("nowhere", "server.healthListen must be HOST:PORT"),
        ("0.0.0.0:0", "server.healthListen must be HOST:PORT"),
        ("0.0.0.0:70000", "server.healthListen must be HOST:PORT"),
        (8081, "server.healthListen must be a non-empty string"),
        ("", "server.healthListen must be a non-empty string"),
        ("127.0.0.1:8443", "server.healthListen (127.0.0.1:8443) must use another port than server.listen"),
    ):
        with pytest.raises(ConfigError) as exc:
            parse_settings({"server": {"listen": "0.0.0.0:8443", "healthListen": bad}})
        assert expected in problems_of(exc), (bad, problems_of(exc))
