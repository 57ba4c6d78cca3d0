"""The verifier end to end: real signed fixtures, freshly signed objects, hostile material.

Every case goes through ``Verifier.verify`` exactly as the CLI and the provider
call it. Bundles "from a registry" are served by a small in-memory resolver
holding bytes signed in the test, which is what the registry source returns
after its own digest checks (the registry itself is exercised in test_oci.py).
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.core.bundle import BundleSource, PayloadKind, SignatureSet, SignedBundle
from provider.core.ignore import parse_ignore_fields
from provider.core.keyless import identity_from_cli
from provider.core.keys import PublicKey, load_public_key
from provider.core.signing import build_message, sign_documents
from provider.core.trustroot import TrustedRoot
from provider.core.verdict import DiffOp, Reason, SignerKind
from provider.core.verifier import TrustPolicy, Verifier
from provider.errors import InputError, ReferenceNotAllowedError, SourceError
from tests import keyutil
from tests.conftest import KMS, SHARED_FIXTURES, b64_pem
from tests.sigstorekit import SigstoreKit

MSG = "cosign.sigstore.dev/message"
SIG = "cosign.sigstore.dev/signature"
REF = "cosign.sigstore.dev/resourceBundleRef"

KEYS = {
    "A": lambda: b64_pem(KMS / "pkg/k8smanifest/testdata/testpub"),
    "B": lambda: b64_pem(KMS / "pkg/cosign/testdata/testpub"),
    "C": lambda: (KMS / "example/verify-resource/cosign.pub").read_bytes(),
}


def key(name: str) -> PublicKey:
    return load_public_key(KEYS[name](), name=f"key-{name}")


def verifier(*names: str, **kw: Any) -> Verifier:
    return Verifier(TrustPolicy(keys=tuple(key(n) for n in names)), **kw)


def objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def annotations(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {}).setdefault("annotations", {})


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example.com/shop/web:1.4.2
        ports:
        - containerPort: 8080
        env:
        - name: MODE
          value: production
"""


def signed(text: str, label: str = "release") -> list[dict[str, Any]]:
    private, _ = keyutil.keypair(label)
    return [d for d in yaml.safe_load_all(sign_documents(text.encode(), private)) if d]


# -- the real k8s-manifest-sigstore fixtures ----------------------------------

FIXTURES = [
    ("pkg/k8smanifest/testdata/sample-configmap-signed.yaml", "A"),
    ("pkg/k8smanifest/testdata/sample-deployment-signed.yaml", "A"),
    ("pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml", "A"),
    ("pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml", "C"),
]


@pytest.mark.parametrize(("path", "signer"), FIXTURES)
def test_fixture_verifies_with_the_key_its_readme_names(path: str, signer: str) -> None:
    for obj in objects(KMS / path):
        verdict = verifier(signer).verify(obj)
        assert verdict.reason is Reason.VERIFIED, verdict.message
        assert verdict.verified
        assert [s.name for s in verdict.signers] == [f"key-{signer}"]
        assert verdict.signers[0].fingerprint == key(signer).fingerprint
        assert verdict.bundle is not None and verdict.bundle.source == "annotation"
        raw = gzip.decompress(base64.b64decode(obj["metadata"]["annotations"][MSG]))
        assert verdict.bundle.digest == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_verify_resource_example_is_signed_by_c_but_was_changed_after_signing() -> None:
    # The upstream verify-resource example edits the object after signing
    # (data.changable and an extra label) to show what a change looks like.
    (obj,) = objects(KMS / "example/verify-resource/sample-configmap.yaml.signed")
    verdict = verifier("C").verify(obj)
    assert verdict.reason is Reason.MANIFEST_MISMATCH
    assert [s.name for s in verdict.signers] == ["key-C"]
    assert {(d.path, d.op) for d in verdict.diff} == {
        ("data.changable", DiffOp.CHANGED),
        ("metadata.labels", DiffOp.ADDED),
    }
    changed = next(d for d in verdict.diff if d.path == "data.changable")
    assert (changed.signed, changed.actual) == ("original value", "CHANGED")
    assert verifier("A", "B").verify(obj).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(("path", "signer"), FIXTURES)
def test_fixture_fails_with_any_other_key(path: str, signer: str) -> None:
    others = [k for k in KEYS if k != signer and not (path.endswith("multi-signed.yaml") and k in "AC")]
    for obj in objects(KMS / path):
        verdict = verifier(*others).verify(obj)
        assert verdict.reason is Reason.BAD_SIGNATURE
        assert not verdict.signers
        assert "does not verify with any trusted key" in verdict.message


def test_multi_signed_fixture_names_every_valid_signer_with_its_index() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml")
    verdict = verifier("A", "C").verify(obj)
    assert verdict.verified
    assert {(s.index, s.name) for s in verdict.signers} == {(0, "key-C"), (1, "key-A")}


def _keyless_trust(*identities: tuple[str, str]) -> TrustPolicy:
    root = TrustedRoot.from_json((SHARED_FIXTURES / "sigstore/trusted_root_pgi.json").read_bytes())
    ids = tuple(identity_from_cli(subject, None, issuer, None) for subject, issuer in identities)
    return TrustPolicy(identities=ids, trusted_root=root)


KEYLESS_SIGNERS = [
    ("hkitahar@redhat.com", "https://accounts.google.com"),
    ("hirokuni.kitahara1@ibm.com", "https://github.com/login/oauth"),
]


def test_keyless_fixture_names_both_signers() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml")
    verdict = Verifier(_keyless_trust(*KEYLESS_SIGNERS)).verify(obj)
    assert verdict.verified, verdict.message
    assert {(s.kind, s.name, s.issuer) for s in verdict.signers} == {
        (SignerKind.KEYLESS, subject, issuer) for subject, issuer in KEYLESS_SIGNERS
    }


def test_keyless_fixture_with_one_trusted_identity_names_only_that_signer() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml")
    verdict = Verifier(_keyless_trust(KEYLESS_SIGNERS[1])).verify(obj)
    assert verdict.verified
    assert [s.name for s in verdict.signers] == [KEYLESS_SIGNERS[1][0]]


def test_keyless_fixture_with_other_identity_is_untrusted_signer() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml")
    verdict = Verifier(_keyless_trust(("someone@example.com", "https://accounts.google.com"))).verify(obj)
    assert verdict.reason is Reason.UNTRUSTED_SIGNER
    assert "hkitahar@redhat.com" in verdict.message


def test_keyless_without_trusted_root_is_untrusted_signer() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml")
    verdict = verifier("A").verify(obj)
    assert verdict.reason is Reason.UNTRUSTED_SIGNER
    assert "trusted root" in verdict.message


def test_freshly_signed_keyless_object_from_a_private_instance() -> None:
    kit = SigstoreKit.create()
    doc = yaml.safe_load(DEPLOYMENT)
    raw = build_message([doc])
    material = kit.sign(raw, identity="ci@example.com", issuer="https://issuer.example.com")
    obj = copy.deepcopy(doc)
    annotations(obj).update({MSG: base64.b64encode(gzip.compress(raw)).decode(), **material.annotations()})
    root = TrustedRoot.from_json(kit.trusted_root_json())
    trust = TrustPolicy(
        identities=(identity_from_cli("ci@example.com", None, "https://issuer.example.com", None),),
        trusted_root=root,
    )
    verdict = Verifier(trust).verify(obj)
    assert verdict.verified, verdict.message
    assert verdict.signers[0].name == "ci@example.com"


# -- outcomes -----------------------------------------------------------------


def test_unsigned_object_has_no_signature() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap.yaml")
    verdict = verifier("A").verify(obj)
    assert verdict.reason is Reason.NO_SIGNATURE
    assert verdict.bundle is None and not verdict.signers


def test_changed_value_is_a_mismatch_naming_the_path() -> None:
    (obj,) = objects(KMS / "pkg/k8smanifest/testdata/sample-configmap-signed.yaml")
    key1 = next(iter(obj["data"]))
    obj["data"][key1] = "tampered"
    verdict = verifier("A").verify(obj)
    assert verdict.reason is Reason.MANIFEST_MISMATCH
    assert verdict.signers, "the signature itself is still valid and its signer is reported"
    entry = next(d for d in verdict.diff if d.path == f"data.{key1}")
    assert entry.op is DiffOp.CHANGED and entry.actual == "tampered"


@pytest.mark.parametrize("position", [0, 7, 40, -1])
def test_any_changed_byte_of_the_message_breaks_the_signature(position: int) -> None:
    obj = signed(DEPLOYMENT)[0]
    raw = bytearray(gzip.decompress(base64.b64decode(annotations(obj)[MSG])))
    raw[position] ^= 0x01
    annotations(obj)[MSG] = base64.b64encode(gzip.compress(bytes(raw))).decode()
    assert verifier_for("release").verify(obj).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("position", [4, 20, -2])
def test_any_changed_byte_of_the_signature_breaks_it(position: int) -> None:
    obj = signed(DEPLOYMENT)[0]
    sig = bytearray(base64.b64decode(annotations(obj)[SIG]))
    sig[position] ^= 0x01
    annotations(obj)[SIG] = base64.b64encode(bytes(sig)).decode()
    assert verifier_for("release").verify(obj).reason in {Reason.BAD_SIGNATURE, Reason.MALFORMED_SIGNATURE}


def verifier_for(*labels: str, **kw: Any) -> Verifier:
    return Verifier(TrustPolicy(keys=tuple(keyutil.public_key(label) for label in labels)), **kw)


def test_signed_by_an_unknown_key_is_a_bad_signature() -> None:
    obj = signed(DEPLOYMENT, label="stranger")[0]
    assert verifier_for("release").verify(obj).reason is Reason.BAD_SIGNATURE


def test_no_trusted_keys_at_all_is_untrusted_signer() -> None:
    obj = signed(DEPLOYMENT)[0]
    verdict = Verifier(TrustPolicy()).verify(obj)
    assert verdict.reason is Reason.UNTRUSTED_SIGNER


def test_live_object_with_api_server_defaults_verifies() -> None:
    obj = signed(DEPLOYMENT)[0]
    spec = obj["spec"]
    spec.update(
        revisionHistoryLimit=10,
        progressDeadlineSeconds=600,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
    )
    pod = spec["template"]["spec"]
    pod.update(
        dnsPolicy="ClusterFirst",
        restartPolicy="Always",
        schedulerName="default-scheduler",
        securityContext={},
        terminationGracePeriodSeconds=30,
    )
    container = pod["containers"][0]
    container.update(
        imagePullPolicy="IfNotPresent",
        terminationMessagePath="/dev/termination-log",
        terminationMessagePolicy="File",
        resources={},
    )
    container["ports"][0]["protocol"] = "TCP"
    obj["metadata"].update(
        uid="5d7c", resourceVersion="811", generation=1, creationTimestamp="2026-11-24T10:00:00Z"
    )
    obj["status"] = {"replicas": 2}
    verdict = verifier_for("release").verify(obj)
    assert verdict.verified, [d.to_json() for d in verdict.diff]
    assert verdict.namespace_bound is True


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda o: o["spec"]["template"]["spec"].update(hostNetwork=True), "spec.template.spec.hostNetwork"),
        (lambda o: o["spec"]["template"]["spec"].update(hostPID=True), "spec.template.spec.hostPID"),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(
                securityContext={"privileged": True}
            ),
            "spec.template.spec.containers.0.securityContext",
        ),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil.example.com/miner:1"),
            "spec.template.spec.containers.0.image",
        ),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "X", "value": "1"}
            ),
            "spec.template.spec.containers.0.env.1",
        ),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"].append(
                {"name": "side", "image": "busybox"}
            ),
            "spec.template.spec.containers.1",
        ),
        (
            lambda o: o["spec"]["template"]["spec"].update(
                volumes=[{"name": "h", "hostPath": {"path": "/"}}]
            ),
            "spec.template.spec.volumes",
        ),
        (lambda o: o["spec"].update(replicas=50), "spec.replicas"),
    ],
)
def test_unsigned_change_that_is_not_a_default_is_named_in_the_diff(edit: Any, path: str) -> None:
    obj = signed(DEPLOYMENT)[0]
    edit(obj)
    verdict = verifier_for("release").verify(obj)
    assert verdict.reason is Reason.MANIFEST_MISMATCH
    assert any(d.path == path or d.path.startswith(path + ".") for d in verdict.diff), [
        d.path for d in verdict.diff
    ]
    assert path.split(".")[-1] in verdict.message or verdict.diff[0].path in verdict.message


def test_object_missing_from_bundle_is_not_in_bundle() -> None:
    obj = signed(DEPLOYMENT)[0]
    obj["metadata"]["name"] = "other"
    verdict = verifier_for("release").verify(obj)
    assert verdict.reason is Reason.NOT_IN_BUNDLE
    assert verdict.signers


def test_namespace_less_manifest_matches_anywhere_but_says_so() -> None:
    text = DEPLOYMENT.replace("  namespace: shop\n", "")
    obj = signed(text)[0]
    obj["metadata"]["namespace"] = "elsewhere"
    verdict = verifier_for("release").verify(obj)
    assert verdict.verified
    assert verdict.namespace_bound is False
    assert "names no namespace" in verdict.message


def test_signed_namespace_must_equal_the_objects() -> None:
    obj = signed(DEPLOYMENT)[0]
    obj["metadata"]["namespace"] = "elsewhere"
    assert verifier_for("release").verify(obj).reason is Reason.NOT_IN_BUNDLE


def test_admission_namespace_fills_an_object_without_one() -> None:
    obj = signed(DEPLOYMENT)[0]
    del obj["metadata"]["namespace"]
    assert verifier_for("release").verify(obj, namespace="shop").verified
    assert verifier_for("release").verify(obj, namespace="other").reason is Reason.NOT_IN_BUNDLE


def test_extra_ignore_rules_from_the_request_apply_to_that_call_only() -> None:
    obj = signed(DEPLOYMENT)[0]
    obj["spec"]["replicas"] = 7
    rules = parse_ignore_fields(
        [{"objects": [{"kind": "Deployment"}], "fields": ["spec.replicas"]}], where="t"
    )
    v = verifier_for("release")
    relaxed = v.verify(obj, extra_rules=rules)
    assert relaxed.verified
    assert "spec.replicas" in relaxed.ignored_fields
    assert v.verify(obj).reason is Reason.MANIFEST_MISMATCH


def test_every_resource_of_a_signed_file_verifies_and_the_signature_is_checked_once() -> None:
    text = (
        DEPLOYMENT
        + "---\n"
        + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: shop}\ndata: {a: '1'}\n"
    )
    docs = signed(text)
    v = verifier_for("release")
    assert all(v.verify(d).verified for d in docs)
    # Signature outcomes and parsed messages are cached by the bytes they depend on.
    assert v.cache_info() == {"signatures": 1, "messages": 1}


# -- referenced bundles ---------------------------------------------------------


class InMemoryBundles:
    """A BundleResolver serving bundles built in the test (see module docstring)."""

    def __init__(self, bundles: dict[str, SignedBundle]) -> None:
        self.bundles = bundles

    def resolve(self, reference: str) -> SignedBundle:
        if reference not in self.bundles:
            raise ReferenceNotAllowedError(f"{reference} not allowed")
        return self.bundles[reference]


def _oci_bundle(reference: str, raw: bytes, *, named_digest: str, manifest_digest: str) -> SignedBundle:
    private, _ = keyutil.keypair("release")
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference.split(":")[0]},
                "image": {"docker-manifest-digest": named_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()
    sset = SignatureSet(0, private.sign(payload), payload, PayloadKind.SIMPLE_SIGNING)
    return SignedBundle(BundleSource.OCI, reference, raw, (sset,), manifest_digest=manifest_digest)


def test_referenced_bundle_verifies_and_reports_the_resolved_digest() -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    raw = build_message([doc])
    ref = "registry.example.com/bundles/shop:v1"
    digest = "sha256:" + "ab" * 32
    v = verifier_for(
        "release",
        resolver=InMemoryBundles({ref: _oci_bundle(ref, raw, named_digest=digest, manifest_digest=digest)}),
    )
    annotations(doc)[REF] = ref
    verdict = v.verify(doc)
    assert verdict.verified, verdict.message
    assert verdict.bundle is not None
    assert verdict.bundle.source == "oci"
    assert verdict.bundle.resolved == f"registry.example.com/bundles/shop@{digest}"


@pytest.mark.parametrize(
    "reference",
    [
        "localhost:5000/bundles/shop:v1",
        "localhost:5000/bundles/shop",
        "localhost:5000/bundles/shop@sha256:" + "ab" * 32,
        "localhost:5000/bundles/shop:v1@sha256:" + "ab" * 32,
    ],
)
def test_resolved_reference_is_the_repository_at_the_pulled_digest(reference: str) -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    digest = "sha256:" + "ab" * 32
    bundle = _oci_bundle(reference, build_message([doc]), named_digest=digest, manifest_digest=digest)
    annotations(doc)[REF] = reference
    verdict = verifier_for("release", resolver=InMemoryBundles({reference: bundle})).verify(doc)
    assert verdict.bundle is not None
    assert verdict.bundle.resolved == f"localhost:5000/bundles/shop@{digest}"


def test_signature_of_another_image_is_not_accepted() -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    ref = "registry.example.com/bundles/shop:v1"
    bundle = _oci_bundle(
        ref, build_message([doc]), named_digest="sha256:" + "00" * 32, manifest_digest="sha256:" + "ab" * 32
    )
    annotations(doc)[REF] = ref
    verdict = verifier_for("release", resolver=InMemoryBundles({ref: bundle})).verify(doc)
    assert verdict.reason is Reason.BAD_SIGNATURE
    assert "another image" in verdict.message


def test_reference_without_a_resolver_is_not_allowed() -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    annotations(doc)[REF] = "registry.example.com/bundles/shop:v1"
    assert verifier_for("release").verify(doc).reason is Reason.REFERENCE_NOT_ALLOWED


def test_first_matching_bundle_of_a_list_wins() -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    digest = "sha256:" + "cd" * 32
    good = _oci_bundle("r.example.com/b:2", build_message([doc]), named_digest=digest, manifest_digest=digest)
    annotations(doc)[REF] = "r.example.com/b:1, r.example.com/b:2"
    verdict = verifier_for("release", resolver=InMemoryBundles({"r.example.com/b:2": good})).verify(doc)
    assert verdict.verified


# -- hostile material -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("%%% not base64 %%%", Reason.MALFORMED_SIGNATURE),
        ("", Reason.MALFORMED_SIGNATURE),
        ("A" * (2 * 1024 * 1024), Reason.LIMIT_EXCEEDED),
    ],
)
def test_malformed_signature_annotation_is_a_verdict(value: str, reason: Reason) -> None:
    obj = signed(DEPLOYMENT)[0]
    annotations(obj)[SIG] = value
    assert verifier_for("release").verify(obj).reason is reason


def test_non_string_signature_annotation_is_malformed() -> None:
    obj = signed(DEPLOYMENT)[0]
    annotations(obj)[SIG] = {"nested": ["x"]}
    assert verifier_for("release").verify(obj).reason is Reason.MALFORMED_SIGNATURE


def test_signed_message_that_is_not_yaml_is_malformed_even_when_signed() -> None:
    private, _ = keyutil.keypair("release")
    raw = b"key: [unclosed\n"
    obj = yaml.safe_load(DEPLOYMENT)
    annotations(obj).update(
        {
            MSG: base64.b64encode(gzip.compress(raw)).decode(),
            SIG: base64.b64encode(private.sign(raw)).decode(),
        }
    )
    verdict = verifier_for("release").verify(obj)
    assert verdict.reason is Reason.MALFORMED_SIGNATURE
    assert verdict.signers, "the signer is known even though the message cannot be read"


def test_signed_alias_bomb_is_limited() -> None:
    private, _ = keyutil.keypair("release")
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    raw = ("\n".join(lines) + "\n").encode()
    obj = yaml.safe_load(DEPLOYMENT)
    annotations(obj).update(
        {
            MSG: base64.b64encode(gzip.compress(raw)).decode(),
            SIG: base64.b64encode(private.sign(raw)).decode(),
        }
    )
    assert verifier_for("release").verify(obj).reason is Reason.LIMIT_EXCEEDED


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"kind": "Deployment", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": "x"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "annotations": ["a"]}},
    ],
)
def test_something_that_is_not_an_object_is_an_input_error(obj: Any) -> None:
    with pytest.raises(InputError):
        verifier_for("release").verify(obj)


def test_deeply_nested_signed_object_is_an_input_error_not_a_crash() -> None:
    obj = signed(DEPLOYMENT)[0]
    node = obj["spec"]
    for _ in range(500):
        node["d"] = {}
        node = node["d"]
    with pytest.raises(InputError, match="deep"):
        verifier_for("release").verify(obj)


class FlakyBundles(InMemoryBundles):
    """Serves its bundles; every other reference fails the way an unreachable registry does."""

    def resolve(self, reference: str) -> SignedBundle:
        if reference not in self.bundles:
            raise SourceError(f"{reference}: connection refused")
        return self.bundles[reference]


def test_unreachable_reference_does_not_hide_one_that_verifies() -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    digest = "sha256:" + "ef" * 32
    good = _oci_bundle("r.example.com/b:2", build_message([doc]), named_digest=digest, manifest_digest=digest)
    annotations(doc)[REF] = "r.example.com/b:1,r.example.com/b:2"
    assert verifier_for("release", resolver=FlakyBundles({"r.example.com/b:2": good})).verify(doc).verified


def test_unreachable_reference_is_could_not_check_when_nothing_verifies() -> None:
    doc = yaml.safe_load(DEPLOYMENT)
    annotations(doc)[REF] = "r.example.com/b:1"
    with pytest.raises(SourceError):
        verifier_for("release", resolver=FlakyBundles({})).verify(doc)


def test_custom_annotation_domain_ignores_its_own_signature_annotations() -> None:
    private, _ = keyutil.keypair("release")
    (obj,) = [
        d
        for d in yaml.safe_load_all(sign_documents(DEPLOYMENT.encode(), private, domain="sigs.example.com"))
        if d
    ]
    assert "sigs.example.com/message" in annotations(obj)
    verdict = verifier_for("release", domain="sigs.example.com").verify(obj)
    assert verdict.verified, [d.to_json() for d in verdict.diff]
    assert verifier_for("release").verify(obj).reason is Reason.NO_SIGNATURE
