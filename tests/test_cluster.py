"""The cluster source against tests/fakeapi.py.

There is no Kubernetes API server on these machines: every test here talks,
through the real ``kubernetes`` client, to the SMALL LOCAL FAKE API server of
``tests/fakeapi.py`` on 127.0.0.1 (see its docstring for what it does and
does not imitate). Signature material is real: the shared k8s-manifest-sigstore
fixtures and bundles signed freshly in the test with a generated key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client as k8s_client

from provider.core.bundle import BundleSource
from provider.core.limits import Limits
from provider.core.message import encode_message
from provider.errors import (
    ConfigError,
    FormatError,
    KeyMaterialError,
    LimitExceededError,
    ReferenceNotAllowedError,
    SourceError,
)
from provider.sources.cluster import (
    ClusterClient,
    ClusterSettings,
    ConfigMapBundleResolver,
    Discovery,
    api_client,
    list_objects,
    load_pull_secret,
    load_secret_key,
    namespace_labels,
    parse_configmap_ref,
)
from tests.conftest import KMS, b64_pem
from tests.fakeapi import FakeApiServer

TOKEN = "test-token-not-secret"
DOMAIN = "cosign.sigstore.dev"


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with FakeApiServer(token=TOKEN) as server:
        yield server


def make_cluster(fake: FakeApiServer, **kwargs: Any) -> ClusterClient:
    """The real client, configured by hand to point at the fake on loopback."""
    configuration = k8s_client.Configuration()
    configuration.host = fake.url
    configuration.api_key = {"authorization": TOKEN}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return ClusterClient(k8s_client.ApiClient(configuration), **kwargs)


def configmap(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": namespace, "name": name},
        "data": data,
    }


def fresh_bundle(raw: bytes) -> tuple[dict[str, str], ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = key.sign(raw, ec.ECDSA(hashes.SHA256()))
    data = {"message": encode_message(raw), "signature": base64.b64encode(signature).decode()}
    return data, key.public_key()


RAW = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\ndata:\n  k: v\n"


# -- ConfigMap bundles ---------------------------------------------------------


def test_resolves_freshly_signed_configmap_bundle_and_caches_it(fake: FakeApiServer) -> None:
    data, public = fresh_bundle(RAW)
    fake.add(configmap("sigs", "app-sig", data))
    now = [0.0]
    resolver = ConfigMapBundleResolver(
        make_cluster(fake), allowed_namespaces={"sigs"}, cache_ttl_seconds=30, clock=lambda: now[0]
    )
    bundle = resolver.resolve("k8s://ConfigMap/sigs/app-sig")
    assert bundle.source is BundleSource.CONFIGMAP
    assert bundle.reference == "k8s://ConfigMap/sigs/app-sig"
    assert bundle.message == RAW
    (sset,) = bundle.signature_sets
    public.verify(sset.signature, sset.payload, ec.ECDSA(hashes.SHA256()))
    assert sset.payload == RAW

    assert resolver.resolve("k8s://ConfigMap/sigs/app-sig") is bundle
    assert fake.paths().count("/api/v1/namespaces/sigs/configmaps/app-sig") == 1
    now[0] = 31.0
    resolver.resolve("k8s://ConfigMap/sigs/app-sig")
    assert fake.paths().count("/api/v1/namespaces/sigs/configmaps/app-sig") == 2
    assert all(r.authorized for r in fake.requests)


def test_real_multi_signed_fixture_in_a_configmap(fake: FakeApiServer) -> None:
    doc = yaml.safe_load((KMS / "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml").read_text())
    annotations = doc["metadata"]["annotations"]
    data = {k.split("/", 1)[1]: v for k, v in annotations.items() if k.startswith(DOMAIN + "/")}
    assert {"message", "signature", "signature_1"} <= set(data)
    fake.add(configmap("sigs", "multi", data))
    resolver = ConfigMapBundleResolver(make_cluster(fake), allowed_namespaces=["sigs"])
    bundle = resolver.resolve("k8s://ConfigMap/sigs/multi")
    assert [s.index for s in bundle.signature_sets] == [0, 1]
    key_a = serialization.load_pem_public_key(b64_pem(KMS / "pkg/k8smanifest/testdata/testpub"))
    assert isinstance(key_a, ec.EllipticCurvePublicKey)
    by_index = {s.index: s for s in bundle.signature_sets}
    key_a.verify(by_index[1].signature, bundle.message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):  # signature 0 is key C's
        key_a.verify(by_index[0].signature, bundle.message, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    "reference",
    [
        "k8s://ConfigMap/other/app-sig",  # namespace not on the allowlist
        "k8s://ConfigMap/sigs",  # no name
        "k8s://ConfigMap/sigs/a/b",  # too many parts
        "k8s://ConfigMap/../etc",  # not a namespace name
        "k8s://Secret/sigs/app-sig",  # wrong kind
        "k8s://ConfigMap/SIGS/app-sig",  # namespaces are lower case
        "registry.example/bundle:1",  # not a cluster reference
        "k8s://ConfigMap/sigs/" + "a" * 300,  # name too long
    ],
)
def test_references_outside_the_allowlist_or_malformed_are_not_allowed(
    fake: FakeApiServer, reference: str
) -> None:
    fake.add(configmap("other", "app-sig", fresh_bundle(RAW)[0]))
    resolver = ConfigMapBundleResolver(make_cluster(fake), allowed_namespaces={"sigs"})
    with pytest.raises(ReferenceNotAllowedError):
        resolver.resolve(reference)
    assert fake.requests == []  # refused before any API call


def test_default_allowlist_is_empty(fake: FakeApiServer) -> None:
    fake.add(configmap("sigs", "app-sig", fresh_bundle(RAW)[0]))
    resolver = ConfigMapBundleResolver(make_cluster(fake))
    with pytest.raises(ReferenceNotAllowedError, match="allowed: none"):
        resolver.resolve("k8s://ConfigMap/sigs/app-sig")


def test_missing_and_forbidden_configmaps_are_source_errors_and_not_cached(fake: FakeApiServer) -> None:
    resolver = ConfigMapBundleResolver(make_cluster(fake), allowed_namespaces={"sigs"})
    with pytest.raises(SourceError, match="not found"):
        resolver.resolve("k8s://ConfigMap/sigs/later")
    fake.add(configmap("sigs", "later", fresh_bundle(RAW)[0]))
    assert resolver.resolve("k8s://ConfigMap/sigs/later").message == RAW

    fake.forbid("/api/v1/namespaces/sigs/configmaps/locked")
    with pytest.raises(SourceError, match="may not read ConfigMaps"):
        resolver.resolve("k8s://ConfigMap/sigs/locked")


def test_unreachable_api_server_is_a_source_error() -> None:
    with FakeApiServer() as gone:
        cluster = make_cluster(gone, timeout_seconds=2)
    resolver = ConfigMapBundleResolver(cluster, allowed_namespaces={"sigs"})
    with pytest.raises(SourceError, match="cannot reach"):
        resolver.resolve("k8s://ConfigMap/sigs/app-sig")


def test_wrong_token_is_a_source_error(fake: FakeApiServer) -> None:
    configuration = k8s_client.Configuration()
    configuration.host = fake.url
    configuration.api_key = {"authorization": "Bearer wrong"}
    resolver = ConfigMapBundleResolver(
        ClusterClient(k8s_client.ApiClient(configuration)), allowed_namespaces={"sigs"}
    )
    with pytest.raises(SourceError, match="401"):
        resolver.resolve("k8s://ConfigMap/sigs/app-sig")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "needs the keys message and signature"),
        ({"signature": "AAAA"}, "needs the keys message and signature"),
        ({"message": "!!!not base64", "signature": "AAAA"}, None),
        ({"message": encode_message(RAW), "signature": "%%%"}, None),
        ({"message": encode_message(RAW), "signature": "AAAA", "certificate": "%%%"}, None),
    ],
)
def test_malformed_bundles_are_format_errors(
    fake: FakeApiServer, data: dict[str, str], error: str | None
) -> None:
    fake.add(configmap("sigs", "bad", data))
    resolver = ConfigMapBundleResolver(make_cluster(fake), allowed_namespaces={"sigs"})
    with pytest.raises(FormatError, match=error):
        resolver.resolve("k8s://ConfigMap/sigs/bad")


def test_oversized_message_is_a_limit_error(fake: FakeApiServer) -> None:
    data, _ = fresh_bundle(b"x" * 50_000)
    fake.add(configmap("sigs", "big", data))
    resolver = ConfigMapBundleResolver(
        make_cluster(fake), allowed_namespaces={"sigs"}, limits=Limits(max_message_bytes=10_000)
    )
    with pytest.raises(LimitExceededError):
        resolver.resolve("k8s://ConfigMap/sigs/big")


def test_non_json_and_oversized_answers_are_source_errors(fake: FakeApiServer) -> None:
    fake.add(configmap("sigs", "app-sig", fresh_bundle(RAW)[0]))
    resolver = ConfigMapBundleResolver(
        make_cluster(fake, max_response_bytes=100), allowed_namespaces={"sigs"}
    )
    with pytest.raises(SourceError, match="exceeds 100"):
        resolver.resolve("k8s://ConfigMap/sigs/app-sig")


def test_parse_configmap_ref() -> None:
    assert parse_configmap_ref("k8s://ConfigMap/ns-1/my.sig") == ("ns-1", "my.sig")


# -- Secrets ---------------------------------------------------------------------


def secret(namespace: str, name: str, data: dict[str, bytes], type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"namespace": namespace, "name": name},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def test_load_secret_key_reads_cosign_pub(fake: FakeApiServer) -> None:
    pem = b64_pem(KMS / "pkg/k8smanifest/testdata/testpub")
    fake.add(secret("keys", "signer", {"cosign.pub": pem, "cosign.key": b"never read"}))
    assert load_secret_key("k8s://keys/signer", cluster=make_cluster(fake)) == pem


@pytest.mark.parametrize(
    "reference", ["keys/signer", "k8s://keys", "k8s://keys/a/b", "k8s://Keys/signer", ""]
)
def test_load_secret_key_rejects_malformed_references(fake: FakeApiServer, reference: str) -> None:
    with pytest.raises(ConfigError):
        load_secret_key(reference, cluster=make_cluster(fake))


def test_load_secret_key_failures(fake: FakeApiServer) -> None:
    cluster = make_cluster(fake)
    with pytest.raises(SourceError, match="not found"):
        load_secret_key("k8s://keys/missing", cluster=cluster)
    fake.add(secret("keys", "nopub", {"cosign.key": b"x"}))
    with pytest.raises(KeyMaterialError, match=r"no entry 'cosign.pub' \(entries: cosign.key\)"):
        load_secret_key("k8s://keys/nopub", cluster=cluster)
    fake.forbid("/api/v1/namespaces/keys/secrets/locked")
    with pytest.raises(SourceError, match="grant get"):
        load_secret_key("k8s://keys/locked", cluster=cluster)
    bad = secret("keys", "badb64", {})
    bad["data"] = {"cosign.pub": "@@@"}
    fake.add(bad)
    with pytest.raises(KeyMaterialError, match="not valid base64"):
        load_secret_key("k8s://keys/badb64", cluster=cluster)


def test_pull_secrets(fake: FakeApiServer) -> None:
    cfg = {"auths": {"registry.example": {"auth": base64.b64encode(b"u:p").decode()}}}
    fake.add(
        secret(
            "ops", "pull", {".dockerconfigjson": json.dumps(cfg).encode()}, "kubernetes.io/dockerconfigjson"
        )
    )
    fake.add(
        secret("ops", "legacy", {".dockercfg": json.dumps(cfg["auths"]).encode()}, "kubernetes.io/dockercfg")
    )
    fake.add(secret("ops", "junk", {".dockerconfigjson": b"[1,2]"}))
    cluster = make_cluster(fake)
    assert json.loads(load_pull_secret("ops", "pull", cluster=cluster)) == cfg
    assert json.loads(load_pull_secret("ops", "legacy", cluster=cluster)) == cfg
    with pytest.raises(KeyMaterialError):
        load_pull_secret("ops", "junk", cluster=cluster)
    with pytest.raises(ConfigError):
        load_pull_secret("Ops", "pull", cluster=cluster)


# -- discovery and listing -------------------------------------------------------


def test_discovery_finds_kinds_by_kind_plural_short_name_and_group(fake: FakeApiServer) -> None:
    discovery = Discovery(make_cluster(fake))
    for name in ("Deployment", "deployments", "deploy", "Deployment.apps"):
        (found,) = discovery.find(name)
        assert (found.group, found.version, found.plural, found.namespaced) == (
            "apps",
            "v1",
            "deployments",
            True,
        )
    assert discovery.find("cm")[0].kind == "ConfigMap"
    assert discovery.find("Deployment.core") == []
    assert discovery.find("nosuchkind") == []
    # subresources are never listed as kinds
    assert all("/" not in t.plural for t in discovery.resource_types())
    assert {t.kind for t in discovery.matching(["apps"], ["*"])} == {"Deployment", "DaemonSet"}
    assert {t.kind for t in discovery.matching(["*"], ["Secret"])} == {"Secret"}
    discovery.resource_types()
    assert fake.paths().count("/apis") == 1  # discovery is read once


def test_list_objects_pages_through_everything(fake: FakeApiServer) -> None:
    for i in range(7):
        fake.add(configmap("a" if i % 2 else "b", f"cm-{i}", {"i": str(i)}))
    (cm_type,) = Discovery(make_cluster(fake)).find("ConfigMap")
    names = [o["metadata"]["name"] for o in list_objects(make_cluster(fake), cm_type, page_size=2)]
    assert sorted(names) == [f"cm-{i}" for i in range(7)]
    pages = [r for r in fake.requests if r.path == "/api/v1/configmaps"]
    assert len(pages) == 4
    assert [p.query.get("limit") for p in pages] == ["2"] * 4
    assert "continue" not in pages[0].query and all("continue" in p.query for p in pages[1:])
    first = next(list_objects(make_cluster(fake), cm_type, namespace="a"))
    assert first["apiVersion"] == "v1" and first["kind"] == "ConfigMap"  # filled in from the type
    assert [o["metadata"]["namespace"] for o in list_objects(make_cluster(fake), cm_type, namespace="a")] == [
        "a"
    ] * 3


def test_list_objects_passes_label_selectors(fake: FakeApiServer) -> None:
    for i, team in enumerate(["x", "y", "x"]):
        obj = configmap("a", f"cm-{i}", {})
        obj["metadata"]["labels"] = {"team": team}
        fake.add(obj)
    (cm_type,) = Discovery(make_cluster(fake)).find("ConfigMap")
    got = [o["metadata"]["name"] for o in list_objects(make_cluster(fake), cm_type, label_selector="team=x")]
    assert got == ["cm-0", "cm-2"]


def test_list_objects_surfaces_forbidden_lists(fake: FakeApiServer) -> None:
    fake.forbid("/api/v1/secrets")
    (secret_type,) = Discovery(make_cluster(fake)).find("Secret")
    with pytest.raises(SourceError, match="403"):
        list(list_objects(make_cluster(fake), secret_type))


def test_namespace_labels(fake: FakeApiServer) -> None:
    fake.add(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "labels": {"env": "prod"}}}
    )
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}})
    assert namespace_labels(make_cluster(fake)) == {"prod": {"env": "prod"}, "dev": {}}


# -- configuration ---------------------------------------------------------------


def test_settings_parse_and_list_every_problem() -> None:
    s = ClusterSettings.from_mapping({"configMapNamespaces": ["sigs"], "cacheTtlSeconds": 0})
    assert s.configmap_namespaces == ("sigs",) and s.cache_ttl_seconds == 0
    assert ClusterSettings.from_mapping(None) == ClusterSettings()
    with pytest.raises(ConfigError) as err:
        ClusterSettings.from_mapping(
            {
                "configMapNamespaces": ["Bad NS", 3],
                "cacheTtlSeconds": -1,
                "requestTimeoutSeconds": "5",
                "x": 1,
            }
        )
    assert len(err.value.problems) == 5
    with pytest.raises(ConfigError):
        ClusterSettings.from_mapping(["sigs"])


def test_api_client_uses_kubeconfig_outside_a_cluster(
    fake: FakeApiServer, tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    cluster = ClusterClient(api_client())
    assert cluster.get_json("/api")["versions"] == ["v1"]
    assert fake.requests[-1].authorized
    with pytest.raises(ConfigError, match="no Kubernetes credentials"):
        api_client(kubeconfig=str(tmp_path / "missing"))


def test_api_client_prefers_in_cluster_credentials(tmp_path: Any, monkeypatch: Any) -> None:
    """In a pod (service host set, token and CA mounted) the kubeconfig is not read.

    The mounted files are written under tmp_path; the loader's file names are pointed there.
    """
    from kubernetes.config import incluster_config

    token = tmp_path / "token"
    token.write_text("in-cluster-token")
    ca = tmp_path / "ca.crt"
    from provider.certs import generate_ca

    ca.write_bytes(generate_ca().certificate_pem())
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "does-not-exist"))
    api = api_client()
    assert api.configuration.host == "https://10.0.0.1:443"
    assert api.configuration.ssl_ca_cert == str(ca)
    # An explicit kubeconfig still wins over the pod's credentials.
    with pytest.raises(ConfigError, match="kubeconfig unusable"):
        api_client(kubeconfig=str(tmp_path / "does-not-exist"))
