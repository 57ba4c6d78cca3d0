"""OCI bundle source against the real ``docker-registry`` on loopback.

Most tests push with :func:`push_signed_bundle` and pull with
:class:`OciBundleResolver` through the real registry (anonymous, htpasswd,
bearer token, TLS). A registry never serves bytes that do not match their
digest, so the tampering, lying-``Content-Length``, redirect, 5xx and
slow-answer cases use :class:`FakeRegistry`, a small local HTTP server that
answers distribution API paths with whatever the test scripts.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.core.bundle import BundleSource, PayloadKind
from provider.core.cosignkey import PrivateKey
from provider.core.keyless import KeylessIdentity, verify_keyless
from provider.core.keys import load_public_key
from provider.core.limits import Limits
from provider.core.trustroot import TrustedRoot
from provider.errors import (
    ConfigError,
    FormatError,
    LimitExceededError,
    ReferenceNotAllowedError,
    SourceError,
)
from provider.sources.oci import (
    MEDIA_OCI_CONFIG,
    Credentials,
    OciBundleResolver,
    RegistrySettings,
    credentials_from_dockerconfigjson,
    parse_reference,
    push_signature,
    push_signed_bundle,
    signature_tag,
    simple_signing_payload,
)
from provider.sources.ocihttp import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    RegistryClient,
    Transport,
)
from tests.registry import RunningRegistry, have_registry, make_ca, registry_fixture
from tests.sigstorekit import SigstoreKit

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not have_registry(), reason="needs /usr/bin/docker-registry (Debian docker-registry)"),
]

MESSAGE = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"
PASSWORD = "s3cret-Pa55"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def signing_key() -> PrivateKey:
    return PrivateKey.generate()


plain = registry_fixture("plain")
tls = registry_fixture("tls", tls=True)
basic = registry_fixture("basic", htpasswd={"alice": PASSWORD})
token = registry_fixture("token", token=True)
token_with_users = registry_fixture("token_with_users", token=True, token_users={"bob": PASSWORD})


def settings_for(reg: RunningRegistry, **extra: Any) -> RegistrySettings:
    data: dict[str, Any] = {"allow": [reg.host]}
    insecure = [] if reg.scheme == "https" else [reg.host]
    if reg.token_server is not None:
        insecure.append(f"127.0.0.1:{reg.token_server.port}")
    data["insecure"] = insecure
    if reg.ca_file is not None:
        data["caFile"] = str(reg.ca_file)
    data.update(extra)
    return RegistrySettings.from_mapping(data)


_counter = iter(range(1_000_000))


def repo(name: str) -> str:
    """A repository no other test uses (the registry is shared within a session)."""
    return f"tests/{name}-{next(_counter)}"


# --- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("registry.example.com/app", "registry.example.com", "app", "latest", None),
        ("Registry.Example.com:5000/team/app:v1.2", "registry.example.com:5000", "team/app", "v1.2", None),
        ("127.0.0.1:5000/a/b/c@sha256:" + "a" * 64, "127.0.0.1:5000", "a/b/c", None, "sha256:" + "a" * 64),
        (
            "localhost/x_y__z-w.v:T_1@sha256:" + "0" * 64,
            "localhost",
            "x_y__z-w.v",
            "T_1",
            "sha256:" + "0" * 64,
        ),
    ],
)
def test_parse_reference_accepts_the_grammar(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "app",  # no registry
        "library/nginx",  # first component is not a host
        "registry.example.com",  # no repository
        "registry.example.com/",
        "registry.example.com/App",  # upper case repository
        "registry.example.com/a//b",
        "registry.example.com/a/",
        "registry.example.com/a:",
        "registry.example.com/a:-bad",
        "registry.example.com/a:" + "t" * 129,
        "registry.example.com/a@sha256:" + "A" * 64,
        "registry.example.com/a@sha512:" + "a" * 128,
        "registry.example.com/a@sha256:abc",
        "https://registry.example.com/a",
        "user:pw@registry.example.com/a",
        "registry.example.com/a b",
        "registry.example.com/a\n",
        "registry.example.com/é",
        "[::1]:5000/a",
        "registry.example.com:99999/a",
        "-bad.example.com/a",
        "registry.example.com/" + "a" * 300,
        "x" * 600,
    ],
)
def test_parse_reference_rejects_anything_odd(text: str) -> None:
    with pytest.raises(FormatError):
        parse_reference(text)


def test_parse_reference_rejects_non_strings() -> None:
    with pytest.raises(FormatError):
        parse_reference(123)  # type: ignore[arg-type]


# --- settings -----------------------------------------------------------------------------------


def test_settings_parse_every_key(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_ca().certificate_pem())
    s = RegistrySettings.from_mapping(
        {
            "allow": ["registry.example.com", "ghcr.io/team/*", "127.0.0.1:5000/one"],
            "insecure": ["127.0.0.1:5000"],
            "allowPrivateNetworks": False,
            "caFile": str(ca),
            "credentials": [
                {"registry": "registry.example.com", "username": "u", "password": "p"},
                {"registry": "ghcr.io", "username": "v", "passwordFile": str(pw)},
            ],
            "tagCacheTTLSeconds": 5,
            "contentCacheEntries": 10,
            "contentCacheBytes": 1000,
            "connectTimeoutSeconds": 1.5,
            "readTimeoutSeconds": 2,
            "maxManifestBytes": 4096,
            "maxLayerBytes": 8192,
        }
    )
    assert s.is_allowed(parse_reference("registry.example.com/any/thing:v1"))
    assert s.is_allowed(parse_reference("ghcr.io/team/app"))
    assert not s.is_allowed(parse_reference("ghcr.io/team"))
    assert not s.is_allowed(parse_reference("ghcr.io/other/app"))
    assert s.is_allowed(parse_reference("127.0.0.1:5000/one"))
    assert not s.is_allowed(parse_reference("127.0.0.1:5000/two"))
    assert not s.is_allowed(parse_reference("registry.example.com:443/app"))
    assert s.credentials_for("ghcr.io") == Credentials("v", "from-file")
    assert s.tag_cache_ttl_seconds == 5.0 and s.max_layer_bytes == 8192
    assert "from-file" not in repr(s) and "from-file" not in repr(s.credentials_for("ghcr.io"))


def test_settings_default_allows_nothing() -> None:
    s = RegistrySettings.from_mapping(None)
    assert not s.is_allowed(parse_reference("registry.example.com/app"))
    with pytest.raises(ReferenceNotAllowedError, match="no registry is allowed"):
        OciBundleResolver(s).resolve("registry.example.com/app:v1")


def test_settings_refuse_a_ca_file_without_certificates(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="no usable PEM certificate"):
        RegistrySettings.from_mapping({"caFile": str(tmp_path / "ca.pem")})


def test_settings_list_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RegistrySettings.from_mapping(
            {
                "allow": ["ok.example.com", "bad host/x", 3],
                "insecure": "127.0.0.1:5000",
                "allowPrivateNetworks": "yes",
                "caFile": str(tmp_path / "missing.pem"),
                "credentials": [
                    {"registry": "r.example.com", "username": "u"},
                    {"registry": "r.example.com", "username": "u", "password": "p", "passwordFile": "f"},
                    {"registry": "s.example.com", "username": "u", "passwordFile": str(tmp_path / "nope")},
                    "x",
                ],
                "tagCacheTTLSeconds": -1,
                "contentCacheEntries": 1.5,
                "connectTimeoutSeconds": 0,
                "readTimeoutSeconds": True,
                "maxManifestBytes": "big",
                "maxLayerBytes": float("inf"),
                "surprise": 1,
            }
        )
    problems = info.value.problems
    assert len(problems) >= 15, problems
    for fragment in (
        "allow[1]",
        "allow[2]",
        "insecure must be a list",
        "allowPrivateNetworks",
        "caFile",
        "credentials[0]",
        "credentials[1]",
        "credentials[2].passwordFile",
        "credentials[3]",
        "tagCacheTTLSeconds",
        "contentCacheEntries",
        "connectTimeoutSeconds",
        "readTimeoutSeconds",
        "maxManifestBytes",
        "maxLayerBytes",
        "surprise",
    ):
        assert any(fragment in p for p in problems), fragment
    with pytest.raises(ConfigError, match="must be a mapping"):
        RegistrySettings.from_mapping(["allow"], where="x.registries")


def test_legacy_dockercfg_and_docker_hub_names() -> None:
    legacy = {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode(), "email": "x"}}
    creds = credentials_from_dockerconfigjson(json.dumps(legacy).encode())
    s = RegistrySettings().with_credentials(creds)
    # docker.io references are served by registry-1.docker.io: both names find the credentials.
    assert (
        s.credentials_for("docker.io")
        == s.credentials_for("registry-1.docker.io")
        == Credentials("hub", "pw")
    )


def test_dockerconfigjson_credentials() -> None:
    doc = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw:with:colons").decode()},
            "Registry.Example.com:5000": {"username": "u", "password": "p"},
            "helper.example.com": {"identitytoken": "x"},
        }
    }
    creds = credentials_from_dockerconfigjson(json.dumps(doc).encode())
    assert creds == {
        "docker.io": Credentials("hub", "pw:with:colons"),
        "registry.example.com:5000": Credentials("u", "p"),
    }
    for bad in (b"not json", b"[]", b'{"auths": []}', b'{"auths": {"r": {"auth": "%%%"}}}'):
        with pytest.raises(FormatError) as info:
            credentials_from_dockerconfigjson(bad)
        assert "%%%" not in str(info.value)
    secret = base64.b64encode(b"nocolon-secret").decode()
    with pytest.raises(FormatError) as info:
        credentials_from_dockerconfigjson(json.dumps({"auths": {"r": {"auth": secret}}}).encode())
    assert "nocolon-secret" not in str(info.value) and secret not in str(info.value)


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw-from-file")
    (tmp_path / "ca.pem").write_bytes(make_ca().certificate_pem())
    data = {
        "caFile": "ca.pem",
        "credentials": [{"registry": "r.example.com", "username": "u", "passwordFile": "pw"}],
    }
    s = RegistrySettings.from_mapping(data, base_dir=tmp_path)
    assert s.ca_file == str(tmp_path / "ca.pem")
    assert s.credentials_for("r.example.com") == Credentials("u", "pw-from-file")
    with pytest.raises(TypeError):
        s.credentials["other"] = Credentials("x", "y")  # type: ignore[index]
    hash(s)


def test_with_credentials_merges_and_configured_win() -> None:
    s = RegistrySettings(credentials={"a.example.com": Credentials("cfg", "1")})
    merged = s.with_credentials(
        {"A.example.com": Credentials("sec", "2"), "b.example.com": Credentials("b", "3")}
    )
    assert merged.credentials_for("a.example.com") == Credentials("cfg", "1")
    assert merged.credentials_for("b.example.com") == Credentials("b", "3")


# --- pulling from the real registry -------------------------------------------------------------


def check_signature(bundle: Any, key: PrivateKey, digest: str) -> None:
    pub = load_public_key(key.public_pem(), name="test")
    assert bundle.signature_sets, "no signature sets"
    sset = bundle.signature_sets[0]
    assert sset.payload_kind is PayloadKind.SIMPLE_SIGNING
    assert pub.verify(sset.signature, sset.payload)
    payload = json.loads(sset.payload)
    assert payload["critical"]["image"]["docker-manifest-digest"] == digest == bundle.manifest_digest


def test_anonymous_pull_round_trip(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    ref = f"{plain.host}/{repo('anon')}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    bundle = OciBundleResolver(settings).resolve(ref)
    assert bundle.source is BundleSource.OCI
    assert bundle.message == MESSAGE
    assert bundle.reference == ref
    check_signature(bundle, signing_key, digest)
    payload = json.loads(bundle.signature_sets[0].payload)
    assert payload["critical"]["identity"]["docker-reference"] == ref.rsplit(":", 1)[0]


def test_gzip_tarball_layer_is_carried_as_is(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("manifest.yaml")
        info.size = len(MESSAGE)
        tar.addfile(info, io.BytesIO(MESSAGE))
    targz = gzip.compress(buf.getvalue(), mtime=0)
    settings = settings_for(plain)
    ref = f"{plain.host}/{repo('targz')}:v1"
    push_signed_bundle(ref, targz, signing_key, settings=settings)
    bundle = OciBundleResolver(settings).resolve(ref)
    assert bundle.message == targz
    manifest, _ = RegistryClient(settings).get_manifest(plain.host, parse_reference(ref).repository, "v1")
    doc = json.loads(manifest)
    assert doc["mediaType"] == MEDIA_OCI_MANIFEST
    assert doc["config"]["mediaType"] == MEDIA_OCI_CONFIG
    assert doc["layers"][0]["mediaType"] == "application/x-gzip"


def test_basic_auth(basic: RunningRegistry, signing_key: PrivateKey) -> None:
    creds = [{"registry": basic.host, "username": "alice", "password": PASSWORD}]
    settings = settings_for(basic, credentials=creds)
    ref = f"{basic.host}/{repo('basic')}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    check_signature(OciBundleResolver(settings).resolve(ref), signing_key, digest)

    with pytest.raises(SourceError, match="requires authentication"):
        OciBundleResolver(settings_for(basic)).resolve(ref)
    wrong = [{"registry": basic.host, "username": "alice", "password": "not-" + PASSWORD}]
    with pytest.raises(SourceError) as info:
        OciBundleResolver(settings_for(basic, credentials=wrong)).resolve(ref)
    assert "refused" in str(info.value)
    assert PASSWORD not in info.value.diagnostics() and "alice" not in info.value.diagnostics()


def test_bearer_token_auth(token: RunningRegistry, signing_key: PrivateKey) -> None:
    assert token.token_server is not None
    settings = settings_for(token)
    name = repo("token")
    ref = f"{token.host}/{name}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    before = len(token.token_server.requests)
    check_signature(OciBundleResolver(settings).resolve(ref), signing_key, digest)
    asked = token.token_server.requests[before:]
    assert asked, "the resolver never asked for a token"
    assert all(q["scope"] == [f"repository:{name}:pull"] for q in asked)
    assert all(q["service"] == ["manifest-provider-test-registry"] for q in asked)
    # One token serves the manifest, layer and signature requests.
    assert len(asked) == 1


def test_bearer_token_with_basic_credentials(
    token_with_users: RunningRegistry, signing_key: PrivateKey
) -> None:
    reg = token_with_users
    assert reg.token_server is not None
    creds = [{"registry": reg.host, "username": "bob", "password": PASSWORD}]
    settings = settings_for(reg, credentials=creds)
    ref = f"{reg.host}/{repo('tokenusers')}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    check_signature(OciBundleResolver(settings).resolve(ref), signing_key, digest)
    assert (
        reg.token_server.authorizations[-1]
        == "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    )
    with pytest.raises(SourceError) as info:
        OciBundleResolver(settings_for(reg)).resolve(ref)
    assert "401" in str(info.value)


def test_bearer_realm_over_plain_http_never_gets_credentials(
    token_with_users: RunningRegistry,
) -> None:
    reg = token_with_users
    assert reg.token_server is not None
    seen = len(reg.token_server.requests)
    settings = RegistrySettings.from_mapping(
        {
            "allow": [reg.host],
            "insecure": [reg.host],  # the registry, but not its token realm
            "credentials": [{"registry": reg.host, "username": "bob", "password": PASSWORD}],
        }
    )
    with pytest.raises(ReferenceNotAllowedError, match="plain HTTP"):
        OciBundleResolver(settings).resolve(f"{reg.host}/{repo('realm')}:v1")
    assert len(reg.token_server.requests) == seen


def test_tls_with_custom_ca(tls: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(tls)
    ref = f"{tls.host}/{repo('tls')}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    check_signature(OciBundleResolver(settings).resolve(ref), signing_key, digest)

    without_ca = RegistrySettings.from_mapping({"allow": [tls.host]})
    with pytest.raises(SourceError, match="TLS"):
        OciBundleResolver(without_ca).resolve(ref)


def test_plain_http_refused_unless_insecure(plain: RunningRegistry) -> None:
    settings = RegistrySettings.from_mapping({"allow": [plain.host]})
    before = plain.count("GET", "/v2/", settle_seconds=0)
    with pytest.raises(SourceError, match="TLS"):
        OciBundleResolver(settings).resolve(f"{plain.host}/{repo('nohttp')}:v1")
    # The only thing sent was a TLS ClientHello, which the registry does not log as a request.
    assert plain.count("GET", "/v2/") == before
    with pytest.raises(ReferenceNotAllowedError, match="plain HTTP"):
        Transport(settings).request("GET", f"http://{plain.host}/v2/", max_bytes=100, what="probe")


def test_digest_pinning(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    name = repo("pin")
    digest = push_signed_bundle(f"{plain.host}/{name}:v1", MESSAGE, signing_key, settings=settings)
    pinned = f"{plain.host}/{name}:v1@{digest}"
    bundle = OciBundleResolver(settings).resolve(pinned)
    assert bundle.manifest_digest == digest and bundle.message == MESSAGE
    # The tag moves; the pin still names the first image.
    push_signed_bundle(f"{plain.host}/{name}:v1", MESSAGE + b"# v2\n", signing_key, settings=settings)
    assert OciBundleResolver(settings).resolve(pinned).message == MESSAGE
    assert OciBundleResolver(settings).resolve(f"{plain.host}/{name}:v1").message == MESSAGE + b"# v2\n"
    # A pin that names no image there is a fetch failure, not a verdict.
    with pytest.raises(SourceError, match="not found"):
        OciBundleResolver(settings).resolve(f"{plain.host}/{name}@{sha(b'other')}")


def test_tag_cache_ttl_with_injected_clock(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    now = [1000.0]
    settings = settings_for(plain, tagCacheTTLSeconds=30)
    name = repo("ttl")
    ref = f"{plain.host}/{name}:v1"
    first = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    resolver = OciBundleResolver(settings, clock=lambda: now[0])
    assert resolver.resolve(ref).manifest_digest == first
    second = push_signed_bundle(ref, MESSAGE + b"# moved\n", signing_key, settings=settings)
    now[0] += 29
    assert resolver.resolve(ref).manifest_digest == first  # still cached
    assert plain.count("GET", f"/v2/{name}/manifests/v1") == 1
    now[0] += 2
    bundle = resolver.resolve(ref)
    assert bundle.manifest_digest == second and bundle.message == MESSAGE + b"# moved\n"
    assert plain.count("GET", f"/v2/{name}/manifests/v1") == 2


def test_single_flight_one_pull_for_many_objects(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    name = repo("flight")
    ref = f"{plain.host}/{name}:v1"
    push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    blobs_before = plain.count("GET", f"/v2/{name}/blobs/")
    sigs_before = plain.count("GET", f"/v2/{name}/manifests/sha256-", settle_seconds=0)  # the push looked
    resolver = OciBundleResolver(settings)
    barrier = threading.Barrier(50)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(resolver.resolve(ref))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 50
    assert all(r.message == MESSAGE for r in results)
    for _ in range(1000):  # 1,000 objects naming the bundle, within the tag TTL
        resolver.resolve(ref)
    assert plain.count("GET", f"/v2/{name}/manifests/v1") == 1
    assert plain.count("GET", f"/v2/{name}/manifests/sha256-") - sigs_before == 1
    # One layer and one signature payload: two blob downloads in all.
    assert plain.count("GET", f"/v2/{name}/blobs/") - blobs_before == 2


def test_layer_size_limit(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain, maxLayerBytes=64 * 1024)
    ref = f"{plain.host}/{repo('big')}:v1"
    push_signed_bundle(ref, b"# " + b"x" * (200 * 1024) + b"\n", signing_key, settings=settings)
    with pytest.raises(LimitExceededError, match="limit"):
        OciBundleResolver(settings).resolve(ref)
    # The project-wide message limit applies too.
    small = Limits(max_message_bytes=1024)
    with pytest.raises(LimitExceededError):
        OciBundleResolver(settings_for(plain), limits=small).resolve(ref)


def test_manifest_size_limit(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    ref = f"{plain.host}/{repo('bigmanifest')}:v1"
    push_signed_bundle(ref, MESSAGE, signing_key, settings=settings_for(plain))
    with pytest.raises(LimitExceededError, match="100"):
        OciBundleResolver(settings_for(plain, maxManifestBytes=100)).resolve(ref)


def test_missing_signature_gives_no_signature_sets(plain: RunningRegistry) -> None:
    settings = settings_for(plain)
    name = repo("unsigned")
    client = RegistryClient(settings)
    layer = client.upload_blob(plain.host, name, MESSAGE)
    config = b"{}"
    client.upload_blob(plain.host, name, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "size": len(config), "digest": sha(config)},
            "layers": [{"mediaType": "text/plain", "size": len(MESSAGE), "digest": layer}],
        }
    ).encode()
    digest = client.put_manifest(plain.host, name, "v1", manifest, MEDIA_OCI_MANIFEST)
    bundle = OciBundleResolver(settings).resolve(f"{plain.host}/{name}:v1")
    assert bundle.signature_sets == () and bundle.message == MESSAGE and bundle.manifest_digest == digest


def test_docker_v2_manifest(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    name = repo("dockerv2")
    client = RegistryClient(settings)
    layer = client.upload_blob(plain.host, name, MESSAGE)
    config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    client.upload_blob(plain.host, name, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": sha(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "size": len(MESSAGE),
                    "digest": layer,
                }
            ],
        },
        indent=3,
    ).encode()
    digest = client.put_manifest(plain.host, name, "v1", manifest, MEDIA_DOCKER_MANIFEST)
    ref = f"{plain.host}/{name}:v1"
    payload = simple_signing_payload(parse_reference(ref), digest)
    push_signature(ref, digest, payload, signing_key.sign(payload), settings=settings)
    bundle = OciBundleResolver(settings).resolve(ref)
    assert bundle.message == MESSAGE and bundle.manifest_digest == digest == sha(manifest)
    check_signature(bundle, signing_key, digest)


def test_missing_image_is_transient(plain: RunningRegistry) -> None:
    with pytest.raises(SourceError, match="404"):
        OciBundleResolver(settings_for(plain)).resolve(f"{plain.host}/{repo('absent')}:v1")


def test_image_index_is_refused(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    name = repo("index")
    digest = push_signed_bundle(f"{plain.host}/{name}:img", MESSAGE, signing_key, settings=settings)
    client = RegistryClient(settings)
    image, _ = client.get_manifest(plain.host, name, digest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [{"mediaType": MEDIA_OCI_MANIFEST, "size": len(image), "digest": digest}],
        }
    ).encode()
    client.put_manifest(plain.host, name, "idx", index, MEDIA_OCI_INDEX)
    with pytest.raises(FormatError, match="image index"):
        OciBundleResolver(settings).resolve(f"{plain.host}/{name}:idx")


def test_signature_layer_with_wrong_media_type(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    name = repo("badsig")
    digest = push_signed_bundle(f"{plain.host}/{name}:v1", MESSAGE, signing_key, settings=settings)
    client = RegistryClient(settings)
    sig_manifest, _ = client.get_manifest(plain.host, name, signature_tag(digest))
    doc = json.loads(sig_manifest)
    doc["layers"][0]["mediaType"] = "application/octet-stream"
    client.put_manifest(plain.host, name, signature_tag(digest), json.dumps(doc).encode(), MEDIA_OCI_MANIFEST)
    with pytest.raises(FormatError, match="simplesigning"):
        OciBundleResolver(settings).resolve(f"{plain.host}/{name}:v1")


def test_two_signers_are_two_signature_sets(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    ref = f"{plain.host}/{repo('twosigners')}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    other = PrivateKey.generate()
    payload = simple_signing_payload(parse_reference(ref), digest)
    push_signature(ref, digest, payload, other.sign(payload), settings=settings)
    push_signature(ref, digest, payload, other.sign(payload), settings=settings)
    sets = OciBundleResolver(settings).resolve(ref).signature_sets
    assert [s.index for s in sets] == [0, 1, 2]
    assert load_public_key(signing_key.public_pem(), name="a").verify(sets[0].signature, sets[0].payload)
    assert load_public_key(other.public_pem(), name="b").verify(sets[2].signature, sets[2].payload)


def test_keyless_material_is_carried_through(plain: RunningRegistry, signing_key: PrivateKey) -> None:
    settings = settings_for(plain)
    name = repo("keyless")
    ref = f"{plain.host}/{name}:v1"
    digest = push_signed_bundle(ref, MESSAGE, signing_key, settings=settings)
    kit = SigstoreKit.create()
    payload = simple_signing_payload(parse_reference(ref), digest)
    material = kit.sign(payload, identity="dev@example.com")
    client = RegistryClient(settings)
    # A second, keyless signature next to the keyed one, laid out as cosign does.
    push_signature(
        ref,
        digest,
        payload,
        material.signature,
        settings=settings,
        certificate=material.certificate_pem,
        chain=material.chain_pem,
        rekor_bundle=material.rekor_bundle_json,
    )
    sig_manifest, _ = client.get_manifest(plain.host, name, signature_tag(digest))
    annotations = json.loads(sig_manifest)["layers"][1]["annotations"]
    assert annotations == material.oci_annotations()
    sset = OciBundleResolver(settings).resolve(ref).signature_sets[1]
    assert sset.certificate == material.certificate_pem
    assert sset.chain == material.chain_pem
    assert sset.rekor_bundle == material.rekor_bundle_json
    assert sset.payload == payload and sset.signature == material.signature
    root = TrustedRoot.from_json(kit.trusted_root_json())
    identity = KeylessIdentity(issuer="https://oauth2.sigstore.test/auth", subject="dev@example.com")
    signer = verify_keyless(sset, root=root, identities=[identity])
    assert "dev@example.com" in str(signer)


# --- network policy -----------------------------------------------------------------------------


def test_disallowed_host_and_repository(plain: RunningRegistry) -> None:
    settings = RegistrySettings.from_mapping({"allow": [f"{plain.host}/team/*"], "insecure": [plain.host]})
    before = len(plain.access_log())
    for ref in (f"{plain.host}/other/app:v1", "registry.example.com/team/app:v1", f"{plain.host}/team:v1"):
        with pytest.raises(ReferenceNotAllowedError):
            OciBundleResolver(settings).resolve(ref)
    time.sleep(0.2)
    assert len(plain.access_log()) == before


def test_loopback_name_refused_unless_private_networks_allowed(
    plain: RunningRegistry, signing_key: PrivateKey
) -> None:
    name = repo("loopback")
    push_signed_bundle(f"{plain.host}/{name}:v1", MESSAGE, signing_key, settings=settings_for(plain))
    local = f"localhost:{plain.port}"
    refused = RegistrySettings.from_mapping({"allow": [local], "insecure": [local]})
    with pytest.raises(ReferenceNotAllowedError, match=r"local name|non-public"):
        OciBundleResolver(refused).resolve(f"{local}/{name}:v1")
    allowed = RegistrySettings.from_mapping(
        {"allow": [local], "insecure": [local], "allowPrivateNetworks": True}
    )
    assert OciBundleResolver(allowed).resolve(f"{local}/{name}:v1").message == MESSAGE


def test_private_address_checks() -> None:
    t = Transport(RegistrySettings.from_mapping({"allow": ["registry.example.com"]}))
    for url in (
        "https://10.1.2.3/v2/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/v2/",
        "https://[::ffff:127.0.0.1]/v2/",
        "https://100.64.0.1/v2/",
        "https://kubernetes.default.svc/v2/",
        "https://registry.ns.svc.cluster.local/v2/",
        "https://registry/v2/",
    ):
        with pytest.raises(ReferenceNotAllowedError):
            t.request("GET", url, max_bytes=10, what="probe")
    with pytest.raises(ReferenceNotAllowedError, match="user-info"):
        t.request("GET", "https://u:p@registry.example.com/v2/", max_bytes=10, what="probe")
    svc = RegistrySettings.from_mapping({"allow": ["registry.ns.svc.cluster.local"]})
    assert svc.private_target_allowed("registry.ns.svc.cluster.local")
    assert not svc.private_target_allowed("other.ns.svc.cluster.local")


# --- hostile registries (local fake server) -----------------------------------------------------

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class FakeRegistry:
    """A local HTTP server answering scripted distribution API paths (no real registry can lie)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.hits.append(self.path)
                route = fake.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(
        self, path: str, body: bytes, *, status: int = 200, content_type: str = MEDIA_OCI_MANIFEST
    ) -> None:
        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        self.routes[path] = route

    def settings(self, **extra: Any) -> RegistrySettings:
        return RegistrySettings.from_mapping({"allow": [self.host], "insecure": [self.host], **extra})


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    yield server
    server.close()


def image_manifest(layer: bytes, *, layer_digest: str | None = None) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "size": 2, "digest": sha(b"{}")},
            "layers": [{"mediaType": "text/plain", "size": len(layer), "digest": layer_digest or sha(layer)}],
        }
    ).encode()


def test_tampered_layer_is_refused(fake: FakeRegistry) -> None:
    manifest = image_manifest(MESSAGE)
    fake.serve("/v2/app/manifests/v1", manifest)
    tampered = MESSAGE.replace(b"a: b", b"a: c")
    fake.serve(f"/v2/app/blobs/{sha(MESSAGE)}", tampered, content_type="application/octet-stream")
    with pytest.raises(FormatError, match="hashes to"):
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app:v1")


def test_manifest_not_matching_pin_is_refused(fake: FakeRegistry) -> None:
    manifest = image_manifest(MESSAGE)
    pin = sha(b"what the signer meant")
    fake.serve(f"/v2/app/manifests/{pin}", manifest)
    with pytest.raises(FormatError, match="pinned digest"):
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app@{pin}")


BAD_HEX = "sha256:-" + "a" * 63  # int(..., 16) would take it
UPPER_HEX = "sha256:" + "A" * 64


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"[" * 100_000,
        json.dumps({"schemaVersion": 1, "layers": []}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST, "layers": "x"}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.evil+json", "layers": []}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST, "layers": []}).encode(),
        json.dumps(
            {"schemaVersion": 2, "layers": [{"mediaType": "t", "size": -1, "digest": sha(b"")}]}
        ).encode(),
        json.dumps(
            {"schemaVersion": 2, "layers": [{"mediaType": "t", "size": 1, "digest": "md5:00"}]}
        ).encode(),
        json.dumps(
            {"schemaVersion": 2, "layers": [{"mediaType": "t", "size": True, "digest": sha(b"")}]}
        ).encode(),
        json.dumps(
            {"schemaVersion": 2, "layers": [{"mediaType": "t", "size": 0, "digest": BAD_HEX}]}
        ).encode(),
        json.dumps(
            {"schemaVersion": 2, "layers": [{"mediaType": "t", "size": 0, "digest": UPPER_HEX}]}
        ).encode(),
        b'{"schemaVersion": 2, "layers": [], "layers": [{"mediaType": "t", "size": 0, "digest": "'
        + sha(b"").encode()
        + b'"}]}',
    ],
)
def test_malformed_manifests(fake: FakeRegistry, body: bytes) -> None:
    fake.serve("/v2/app/manifests/v1", body)
    with pytest.raises(FormatError):
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app:v1")


def test_content_length_lie_and_chunked_overflow(fake: FakeRegistry) -> None:
    big = b"x" * 5000

    def lying(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", MEDIA_OCI_MANIFEST)
        h.send_header("Content-Length", "10")
        h.end_headers()
        h.wfile.write(big)

    def chunked(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", MEDIA_OCI_MANIFEST)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(50):
            h.wfile.write(b"400\r\n" + b"y" * 0x400 + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    fake.routes["/v2/lie/manifests/v1"] = lying
    fake.routes["/v2/chunk/manifests/v1"] = chunked
    settings = fake.settings(maxManifestBytes=4096)
    # A short Content-Length truncates the body: what is read is not a manifest.
    with pytest.raises(FormatError):
        OciBundleResolver(settings).resolve(f"{fake.host}/lie:v1")
    with pytest.raises(LimitExceededError, match="more than 4096"):
        OciBundleResolver(settings).resolve(f"{fake.host}/chunk:v1")
    fake.serve("/v2/announced/manifests/v1", big)
    with pytest.raises(LimitExceededError, match="announced 5000"):
        OciBundleResolver(settings).resolve(f"{fake.host}/announced:v1")


def test_redirect_to_another_host_is_not_followed(fake: FakeRegistry) -> None:
    other = FakeRegistry()
    try:
        manifest = image_manifest(MESSAGE)
        other.serve("/v2/app/manifests/v1", manifest)

        def away(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(307)
            h.send_header("Location", f"http://{other.host}/v2/app/manifests/v1")
            h.send_header("Content-Length", "0")
            h.end_headers()

        fake.routes["/v2/app/manifests/v1"] = away
        settings = RegistrySettings.from_mapping(
            {"allow": [fake.host, other.host], "insecure": [fake.host, other.host]}
        )
        with pytest.raises(ReferenceNotAllowedError, match="redirected to another host"):
            OciBundleResolver(settings).resolve(f"{fake.host}/app:v1")
        assert other.hits == []
    finally:
        other.close()


def test_same_host_redirects_are_followed_a_few_times(fake: FakeRegistry) -> None:
    manifest = image_manifest(MESSAGE)
    fake.serve("/v2/app/manifests/real", manifest)
    fake.serve(f"/v2/app/blobs/{sha(MESSAGE)}", MESSAGE, content_type="application/octet-stream")

    def hop(target: str) -> Route:
        def route(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(302)
            h.send_header("Location", target)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return route

    fake.routes["/v2/app/manifests/v1"] = hop("/v2/app/manifests/real")
    assert OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app:v1").message == MESSAGE
    fake.routes["/v2/loop/manifests/v1"] = hop("/v2/loop/manifests/v1")
    with pytest.raises(SourceError, match="redirects"):
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/loop:v1")
    assert fake.hits.count("/v2/loop/manifests/v1") == 4


def test_server_errors_and_timeouts_are_transient(fake: FakeRegistry) -> None:
    fake.serve("/v2/app/manifests/v1", b'{"errors":[{"code":"UNAVAILABLE"}]}', status=503)
    with pytest.raises(SourceError, match="503"):
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app:v1")

    def slow(h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)

    fake.routes["/v2/slow/manifests/v1"] = slow
    started = time.monotonic()
    with pytest.raises(SourceError, match="failed"):
        OciBundleResolver(fake.settings(readTimeoutSeconds=0.3)).resolve(f"{fake.host}/slow:v1")
    assert time.monotonic() - started < 1.4


def test_trickling_server_meets_the_request_deadline(fake: FakeRegistry) -> None:
    def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", MEDIA_OCI_MANIFEST)
        h.send_header("Content-Length", "100")
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.1)  # every byte well within the read timeout
        except OSError:
            return

    fake.routes["/v2/app/manifests/v1"] = trickle
    settings = fake.settings(connectTimeoutSeconds=0.2, readTimeoutSeconds=0.4)  # deadline 1.4 s
    started = time.monotonic()
    with pytest.raises(SourceError, match="in time"):
        OciBundleResolver(settings).resolve(f"{fake.host}/app:v1")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("token_body", "message"),
    [
        (b"not json", "invalid JSON"),
        (b'{"token": "has spaces and\\r\\nheaders"}', "no usable token"),
        (b'{"expires_in": 60}', "no usable token"),
        (b'{"token": "' + b"a" * 70_000 + b'"}', "65536"),
    ],
)
def test_bad_token_answers_are_transient(fake: FakeRegistry, token_body: bytes, message: str) -> None:
    def challenge(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(401)
        h.send_header("WWW-Authenticate", f'Bearer realm="http://{fake.host}/token",service="fake"')
        h.send_header("Content-Length", "0")
        h.end_headers()

    fake.routes["/v2/app/manifests/v1"] = challenge
    fake.serve(
        "/token?service=fake&scope=repository%3Aapp%3Apull", token_body, content_type="application/json"
    )
    with pytest.raises(SourceError, match=message) as info:
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app:v1")
    assert not isinstance(info.value, FormatError)
    assert "has spaces" not in str(info.value)


def test_large_error_bodies_are_cut_not_limit_errors(fake: FakeRegistry) -> None:
    fake.serve("/v2/app/manifests/v1", b'{"errors":[{"code":"DENIED"}]}' + b" " * 100_000, status=403)
    with pytest.raises(SourceError, match="403") as info:
        OciBundleResolver(fake.settings()).resolve(f"{fake.host}/app:v1")
    assert not isinstance(info.value, FormatError)


def test_failures_are_not_cached(fake: FakeRegistry) -> None:
    resolver = OciBundleResolver(fake.settings())
    with pytest.raises(SourceError):
        resolver.resolve(f"{fake.host}/app:v1")
    fake.serve("/v2/app/manifests/v1", image_manifest(MESSAGE))
    fake.serve(f"/v2/app/blobs/{sha(MESSAGE)}", MESSAGE, content_type="application/octet-stream")
    assert resolver.resolve(f"{fake.host}/app:v1").message == MESSAGE


def test_connection_refused_is_transient() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"127.0.0.1:{port}"
    settings = RegistrySettings.from_mapping({"allow": [host], "insecure": [host]})
    with pytest.raises(SourceError, match="failed"):
        OciBundleResolver(settings).resolve(f"{host}/app:v1")
