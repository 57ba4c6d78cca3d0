"""``manifest-provider audit`` against tests/fakeapi.py.

There is no Kubernetes API server on these machines: the audit talks, through
the real ``kubernetes`` client and a real kubeconfig file, to the SMALL LOCAL
FAKE API server of ``tests/fakeapi.py`` on 127.0.0.1. The objects it serves
are real signed manifests (the k8s-manifest-sigstore fixtures signed with key
A, and bundles signed freshly here), stored the way an API server returns
them (uid, resourceVersion, creationTimestamp, managedFields added).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.audit import Selection, selector_matches
from provider.cli import main
from provider.core.message import encode_message
from provider.errors import ConfigError
from tests.conftest import KMS, b64_pem
from tests.fakeapi import FakeApiServer

TOKEN = "audit-test-token"
CM_SIGNED = KMS / "pkg/k8smanifest/testdata/sample-configmap-signed.yaml"
DEPLOY_SIGNED = KMS / "pkg/k8smanifest/testdata/sample-deployment-signed.yaml"
UNSIGNED = KMS / "pkg/k8smanifest/testdata/sample-configmap.yaml"


def live(path: Path, namespace: str, **labels: str) -> dict[str, Any]:
    """A signed fixture as the API server would return it after `kubectl apply`."""
    obj = yaml.safe_load(path.read_text())
    meta = obj["metadata"]
    meta["namespace"] = namespace
    if labels:
        meta.setdefault("labels", {}).update(labels)
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
    meta["generation"] = 1
    meta["managedFields"] = [{"manager": "kubectl", "operation": "Update", "apiVersion": obj["apiVersion"]}]
    return obj


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    with FakeApiServer(token=TOKEN) as server:
        server.add_type(
            "constraints.gatekeeper.sh",
            "v1beta1",
            "K8sSignedManifests",
            "k8ssignedmanifests",
            namespaced=False,
        )
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                    "users": [{"name": "auditor", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "auditor"}}],
                    "current-context": "fake",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield server


@pytest.fixture
def key_a(tmp_path: Path) -> str:
    path = tmp_path / "key-a.pub"
    path.write_bytes(b64_pem(KMS / "pkg/k8smanifest/testdata/testpub"))
    return f"release={path}"


def audit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def populate(fake: FakeApiServer) -> None:
    fake.add(live(CM_SIGNED, "demo"))
    fake.add(live(DEPLOY_SIGNED, "demo"))  # carries app=nginx as signed
    tampered = live(CM_SIGNED, "demo")
    tampered["metadata"]["name"] = "sample-cm-signed"  # same name, other namespace below
    tampered["metadata"]["namespace"] = "tampered"
    tampered["data"]["key1"] = "changed"
    fake.add(tampered)
    unsigned = live(UNSIGNED, "demo")
    unsigned["metadata"]["name"] = "plain"
    fake.add(unsigned)


def test_audit_by_kind_reports_every_object_and_fails(
    fake: FakeApiServer, key_a: str, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(fake)
    code, out, err = audit(
        capsys, "--key", key_a, "--kind", "cm", "--kind", "Deployment", "-o", "json", "--page-size", "1"
    )
    assert code == 1, err
    doc = json.loads(out)
    results = {
        (r["object"]["namespace"], r["object"]["kind"], r["object"]["name"]): r for r in doc["results"]
    }
    assert results[("demo", "ConfigMap", "sample-cm-signed")]["outcome"] == "verified"
    assert results[("demo", "Deployment", "sample-deployment")]["outcome"] == "verified"
    assert results[("demo", "ConfigMap", "sample-cm-signed")]["verdict"]["signers"][0]["name"] == "release"
    tampered = results[("tampered", "ConfigMap", "sample-cm-signed")]
    assert tampered["verdict"]["reason"] == "MANIFEST_MISMATCH"
    assert any(d["path"].endswith("key1") for d in tampered["verdict"]["diff"])
    assert results[("demo", "ConfigMap", "plain")]["verdict"]["reason"] == "NO_SIGNATURE"
    assert doc["summary"] == {
        "total": 4,
        "verified": 2,
        "failed": 2,
        "errors": 0,
        "failedByReason": {"MANIFEST_MISMATCH": 1, "NO_SIGNATURE": 1},
    }
    assert "2 of 4 object(s) not verified" in err
    # One object per page: the ConfigMap list took three pages plus one for the end.
    cm_pages = [r for r in fake.requests if r.path == "/api/v1/configmaps"]
    assert len(cm_pages) == 3 and all(r.query["limit"] == "1" for r in cm_pages)
    assert all(r.authorized for r in fake.requests)


def test_audit_table_namespace_and_selector(
    fake: FakeApiServer, key_a: str, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(fake)
    code, out, err = audit(capsys, "--key", key_a, "--kind", "Deployment", "-n", "demo", "-l", "app=nginx")
    assert code == 0, err
    assert "Deployment demo/sample-deployment" in out and "verified" in out and "release" in out
    assert "1 object(s): 1 verified, 0 failed, 0 error(s)" in out
    calls = [r for r in fake.requests if "deployments" in r.path]
    assert [c.path for c in calls] == ["/apis/apps/v1/namespaces/demo/deployments"]
    assert calls[0].query["labelSelector"] == "app=nginx"
    assert err == ""  # no progress output when stderr is not a terminal


def test_audit_by_constraints(fake: FakeApiServer, key_a: str, capsys: pytest.CaptureFixture[str]) -> None:
    populate(fake)
    fake.add(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo", "labels": {"enforce": "yes"}}}
    )
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tampered"}})
    fake.add(
        {
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": "K8sSignedManifests",
            "metadata": {"name": "signed-config"},
            "spec": {
                "match": {
                    "kinds": [{"apiGroups": [""], "kinds": ["ConfigMap"]}],
                    "namespaceSelector": {"matchLabels": {"enforce": "yes"}},
                    "labelSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
                },
                "parameters": {
                    "ignoreFields": [{"fields": ["data.key4"], "objects": [{"kind": "ConfigMap"}]}]
                },
            },
        }
    )
    code, out, err = audit(capsys, "--key", key_a, "-o", "json")
    doc = json.loads(out)
    audited = {(r["object"]["namespace"], r["object"]["name"]): r for r in doc["results"]}
    # The tampered namespace lacks the label, the Deployment is not a matched kind.
    assert set(audited) == {("demo", "sample-cm-signed"), ("demo", "plain")}
    assert all(r["constraint"] == "signed-config" for r in doc["results"])
    assert audited[("demo", "sample-cm-signed")]["outcome"] == "verified"
    assert "data.key4" in audited[("demo", "sample-cm-signed")]["verdict"]["ignoredFields"]
    assert code == 1 and "1 of 2" in err


def test_audit_without_constraints_kind_is_a_usage_error(
    fake: FakeApiServer, key_a: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.types.pop(("constraints.gatekeeper.sh", "k8ssignedmanifests"))
    code, _, err = audit(capsys, "--key", key_a)
    assert code == 2 and "ConstraintTemplate installed" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kind", "cm"], "no trust given"),
        (["--key", "x=/nonexistent.pub", "--kind", "cm"], "nonexistent"),
        (["--kind", "NoSuchKind", "--key", "KEY"], "not served by this cluster"),
        (["-n", "demo", "--key", "KEY"], "give --kind too"),
        (["--kind", "cm", "--key", "KEY", "--concurrency", "0"], "--concurrency"),
    ],
)
def test_usage_errors(
    fake: FakeApiServer, key_a: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = audit(capsys, *[key_a if a == "KEY" else a for a in argv])
    assert code == 2 and message in err


def test_forbidden_list_is_reported(
    fake: FakeApiServer, key_a: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.forbid("/api/v1/secrets")
    code, _, err = audit(capsys, "--key", key_a, "--kind", "Secret")
    assert code == 2 and "403" in err


def test_configmap_held_bundle_through_the_configuration(
    fake: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object naming k8s://ConfigMap/sigs/web-sig verifies with the provider's config file."""
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "fresh.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": "demo"},
        "data": {"color": "blue"},
    }
    raw = yaml.safe_dump(manifest).encode()
    signature = base64.b64encode(key.sign(raw, ec.ECDSA(hashes.SHA256()))).decode()
    fake.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-sig", "namespace": "sigs"},
            "data": {"message": encode_message(raw), "signature": signature},
        }
    )
    good = copy.deepcopy(manifest)
    good["metadata"]["annotations"] = {
        "cosign.sigstore.dev/resourceBundleRef": "k8s://ConfigMap/sigs/web-sig"
    }
    fake.add(good)
    elsewhere = copy.deepcopy(good)
    elsewhere["metadata"]["namespace"] = "other"
    elsewhere["metadata"]["annotations"]["cosign.sigstore.dev/resourceBundleRef"] = "k8s://ConfigMap/other/x"
    fake.add(elsewhere)
    config = tmp_path / "config.yaml"
    config.write_text(
        "keys:\n  - name: fresh\n    path: fresh.pub\ncluster:\n  configMapNamespaces: [sigs]\n"
    )
    code, out, _err = audit(capsys, "--config", str(config), "--kind", "ConfigMap", "-o", "json")
    results = {(r["object"]["namespace"], r["object"]["name"]): r for r in json.loads(out)["results"]}
    assert results[("demo", "web-config")]["outcome"] == "verified", results[("demo", "web-config")]
    assert results[("demo", "web-config")]["verdict"]["bundle"]["source"] == "configmap"
    assert results[("other", "web-config")]["verdict"]["reason"] == "REFERENCE_NOT_ALLOWED"
    assert code == 1


def test_bundle_fetch_failure_is_an_error_not_a_verdict(
    fake: FakeApiServer, tmp_path: Path, key_a: str, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = live(UNSIGNED, "demo")
    obj["metadata"]["annotations"] = {"cosign.sigstore.dev/resourceBundleRef": "k8s://ConfigMap/sigs/missing"}
    fake.add(obj)
    (tmp_path / "a.pub").write_bytes(b64_pem(KMS / "pkg/k8smanifest/testdata/testpub"))
    config = tmp_path / "config.yaml"
    config.write_text("keys:\n  - name: a\n    path: a.pub\ncluster:\n  configMapNamespaces: [sigs]\n")
    code, out, err = audit(capsys, "--config", str(config), "--kind", "cm", "-o", "json")
    (result,) = json.loads(out)["results"]
    assert result["outcome"] == "error" and "not found" in result["error"]
    assert code == 1 and "1 could not be checked" in err


# -- selection semantics -----------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_selector_matches(selector: Any, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_constraint_namespaces_wildcards_and_scope() -> None:
    sel = Selection.from_constraint(
        {
            "metadata": {"name": "c"},
            "spec": {"match": {"namespaces": ["team-*", "prod"], "excludedNamespaces": ["team-x*"]}},
        }
    )

    def obj(ns: str) -> dict[str, Any]:
        return {"metadata": {"name": "o", "namespace": ns}}

    assert sel.admits(obj("team-a"), {}) and sel.admits(obj("prod"), {})
    assert not sel.admits(obj("team-xyz"), {}) and not sel.admits(obj("dev"), {})
    assert not sel.admits({"metadata": {"name": "cluster-wide"}}, {})
    cluster_only = Selection.from_constraint(
        {"metadata": {"name": "c"}, "spec": {"match": {"scope": "Cluster"}}}
    )
    assert cluster_only.admits({"metadata": {"name": "x"}}, {}) and not cluster_only.admits(obj("a"), {})
    assert Selection.from_constraint({"metadata": {"name": "c"}, "spec": {}}).kinds == ((("*",), ("*",)),)


@pytest.mark.parametrize(
    "match",
    [
        {"kinds": [{"apiGroups": "apps"}]},
        {"namespaces": "prod"},
        {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
        {"scope": "Everywhere"},
        "not a mapping",
    ],
)
def test_malformed_constraints_are_config_errors(match: Any) -> None:
    with pytest.raises(ConfigError):
        Selection.from_constraint({"metadata": {"name": "bad"}, "spec": {"match": match}})


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    import io
    import os

    from provider.cli.audit import _progress_printer

    assert _progress_printer(io.StringIO()) is None
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        show = _progress_printer(tty)
        assert show is not None
        show(3, None)
        show(5, 5)
    # A pty hands over what has arrived so far: one read can return the first
    # write only. Read until the closed slave end reports EIO.
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    shown = b"".join(chunks).decode()
    assert "audit: 3 checked" in shown and "5 checked of 5" in shown


def test_secret_held_keys_in_the_configuration(
    fake: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config key `secret: k8s://keys/release` is read from the cluster with the auditor's credentials."""
    pem = b64_pem(KMS / "pkg/k8smanifest/testdata/testpub")
    fake.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"namespace": "keys", "name": "release"},
            "data": {"cosign.pub": base64.b64encode(pem).decode()},
        }
    )
    fake.add(live(CM_SIGNED, "demo"))
    config = tmp_path / "config.yaml"
    config.write_text("keys:\n  - name: release\n    secret: k8s://keys/release\n")
    code, out, err = audit(capsys, "--config", str(config), "--kind", "ConfigMap", "-n", "demo")
    assert code == 0, err
    assert "verified" in out and "release" in out
    assert "/api/v1/namespaces/keys/secrets/release" in fake.paths()
