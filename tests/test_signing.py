"""Signing: what this project signs verifies, and reads back as the tool's raw-YAML message."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from provider.core.annotations import DEFAULT_DOMAIN, bundle_from_annotations
from provider.core.cosignkey import PrivateKey, load_private_key
from provider.core.keys import PublicKey, load_public_key
from provider.core.limits import Limits
from provider.core.message import decode_message, manifests_from_message
from provider.core.safeyaml import load_documents
from provider.core.signing import (
    build_message,
    bundle_ref_documents,
    sign_documents,
    strip_signature_annotations,
)
from provider.errors import FormatError, LimitExceededError
from tests.conftest import KMS
from tests.keyutil import keypair, public_key

LIMITS = Limits()
D = DEFAULT_DOMAIN
MESSAGE = f"{D}/message"
SIGNATURE = f"{D}/signature"

DEPLOYMENT_AND_CM = b"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  annotations:
    team: storefront
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.25
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  enabled: "yes"
  started: 2021-06-01
"""


def signed_docs(text: bytes) -> list[dict[str, Any]]:
    return load_documents(text, limits=LIMITS)


def sets_verifying(doc: dict[str, Any], keys: dict[str, PublicKey]) -> dict[int, list[str]]:
    bundle = bundle_from_annotations(doc["metadata"]["annotations"], domain=D, limits=LIMITS)
    assert bundle is not None
    return {
        s.index: sorted(name for name, key in keys.items() if key.verify(s.signature, s.payload))
        for s in bundle.signature_sets
    }


@pytest.fixture(scope="module")
def key_a() -> PrivateKey:
    return load_private_key((KMS / "pkg/k8smanifest/testdata/testkey").read_bytes(), password=b"")


@pytest.fixture(scope="module")
def fixture_keys(key_a_pub: bytes, key_b_pub: bytes, key_c_pub: bytes) -> dict[str, PublicKey]:
    return {
        "A": load_public_key(key_a_pub, name="A"),
        "B": load_public_key(key_b_pub, name="B"),
        "C": load_public_key(key_c_pub, name="C"),
    }


def test_every_resource_carries_same_message_and_signature() -> None:
    key, _ = keypair("signer")
    out = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key))
    assert len(out) == 2
    messages = {d["metadata"]["annotations"][MESSAGE] for d in out}
    signatures = {d["metadata"]["annotations"][SIGNATURE] for d in out}
    assert len(messages) == 1 and len(signatures) == 1
    for doc in out:
        assert sets_verifying(doc, {"signer": public_key("signer"), "other": public_key("other")}) == {
            0: ["signer"]
        }


def test_message_is_raw_yaml_of_all_documents_without_signature_annotations() -> None:
    key, _ = keypair("signer")
    out = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key))
    raw = decode_message(out[0]["metadata"]["annotations"][MESSAGE], limits=LIMITS)
    assert raw[:2] != b"\x1f\x8b"  # raw-YAML form, not the legacy tarball
    parts = raw.split(b"\n---\n")
    assert len(parts) == 2 and all(p.startswith(b"apiVersion: ") for p in parts)  # sorted keys
    manifests = manifests_from_message(raw, limits=LIMITS)
    originals = load_documents(DEPLOYMENT_AND_CM, limits=LIMITS)
    assert manifests == originals
    # The signed object equals its manifest once the signature annotations are removed.
    for doc, manifest in zip(out, manifests, strict=True):
        assert strip_signature_annotations(doc, domain=D) == manifest
    assert out[0]["metadata"]["annotations"]["team"] == "storefront"
    assert out[1]["data"] == {"enabled": "yes", "started": "2021-06-01"}


def test_signing_the_fixture_input_reproduces_the_tools_message(
    key_a: PrivateKey, fixture_keys: dict[str, PublicKey]
) -> None:
    """Byte-for-byte: the tool signed sample-configmap.yaml into the multi-signed fixture."""
    text = (KMS / "pkg/k8smanifest/testdata/sample-configmap.yaml").read_bytes()
    (ours,) = signed_docs(sign_documents(text, key_a))
    (theirs,) = signed_docs(
        (KMS / "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml").read_bytes()
    )
    our_raw = decode_message(ours["metadata"]["annotations"][MESSAGE], limits=LIMITS)
    their_raw = decode_message(theirs["metadata"]["annotations"][MESSAGE], limits=LIMITS)
    assert our_raw == their_raw
    # The tool's own signature (set 1, key A) verifies over the bytes we produce.
    their_sig = base64.b64decode(theirs["metadata"]["annotations"][f"{D}/signature_1"])
    assert fixture_keys["A"].verify(their_sig, our_raw)
    assert sets_verifying(ours, fixture_keys) == {0: ["A"]}


def test_resigning_a_signed_file_replaces_old_sets(
    key_a: PrivateKey, fixture_keys: dict[str, PublicKey]
) -> None:
    text = (KMS / "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml").read_bytes()
    (doc,) = signed_docs(sign_documents(text, keypair("fresh")[0]))
    annotations = doc["metadata"]["annotations"]
    assert f"{D}/signature_1" not in annotations
    assert sets_verifying(doc, {**fixture_keys, "fresh": public_key("fresh")}) == {0: ["fresh"]}


def test_append_keeps_message_and_adds_next_set(
    key_a: PrivateKey, fixture_keys: dict[str, PublicKey]
) -> None:
    text = (KMS / "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml").read_bytes()
    (before,) = signed_docs(text)
    (after,) = signed_docs(sign_documents(text, keypair("third")[0], append=True))
    assert after["metadata"]["annotations"][MESSAGE] == before["metadata"]["annotations"][MESSAGE]
    keys = {**fixture_keys, "third": public_key("third")}
    assert sets_verifying(after, keys) == {0: ["C"], 1: ["A"], 2: ["third"]}


def test_append_to_legacy_tarball_fixture(key_a: PrivateKey, fixture_keys: dict[str, PublicKey]) -> None:
    text = (KMS / "pkg/k8smanifest/testdata/sample-deployment-signed.yaml").read_bytes()
    (before,) = signed_docs(text)
    (after,) = signed_docs(sign_documents(text, key_a, append=True))
    assert after["metadata"]["annotations"][MESSAGE] == before["metadata"]["annotations"][MESSAGE]
    assert sets_verifying(after, fixture_keys) == {0: ["A"], 1: ["A"]}


def test_append_fills_lowest_free_index() -> None:
    key, _ = keypair("signer")
    signed = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key))
    for doc in signed:
        doc["metadata"]["annotations"][f"{D}/signature_2"] = doc["metadata"]["annotations"][SIGNATURE]
    again = signed_docs(sign_documents(build_message(signed), keypair("second")[0], append=True))
    assert sets_verifying(again[0], {"signer": public_key("signer"), "second": public_key("second")}) == {
        0: ["signer"],
        1: ["second"],
        2: ["signer"],
    }


def test_append_without_existing_signature_signs_as_set_zero() -> None:
    key, _ = keypair("signer")
    out = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key, append=True))
    assert sets_verifying(out[1], {"signer": public_key("signer")}) == {0: ["signer"]}


def test_append_refuses_changed_documents() -> None:
    key, _ = keypair("signer")
    signed = sign_documents(DEPLOYMENT_AND_CM, key)
    tampered = signed.replace(b"replicas: 2", b"replicas: 3")
    with pytest.raises(FormatError, match="differ from the existing signed message"):
        sign_documents(tampered, key, append=True)


def test_append_refuses_mixed_messages() -> None:
    key, _ = keypair("signer")
    first = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key))
    other = signed_docs(sign_documents(DEPLOYMENT_AND_CM.replace(b"replicas: 2", b"replicas: 5"), key))
    mixed = build_message([first[0], other[1]])
    with pytest.raises(FormatError, match="same"):
        sign_documents(mixed, key, append=True)
    del first[1]["metadata"]["annotations"][MESSAGE]
    with pytest.raises(FormatError, match="same"):
        sign_documents(build_message(first), key, append=True)


def test_append_respects_signature_set_limit() -> None:
    key, _ = keypair("signer")
    text = sign_documents(DEPLOYMENT_AND_CM, key)
    text = sign_documents(text, key, append=True)
    with pytest.raises(LimitExceededError, match="max_signature_sets"):
        sign_documents(text, key, append=True, limits=Limits(max_signature_sets=2))


def test_custom_domain() -> None:
    key, _ = keypair("signer")
    (doc, _) = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key, domain="signing.example.com"))
    annotations = doc["metadata"]["annotations"]
    assert "signing.example.com/message" in annotations and MESSAGE not in annotations
    assert bundle_from_annotations(annotations, domain="signing.example.com", limits=LIMITS) is not None


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"# nothing\n",
        b"- a\n- b\n",
        b"kind: X\nmetadata: [1]\n",
        b"kind: X\nmetadata:\n  annotations: [1]\n",
        b"kind: X\ndata:\n  1: one\n  b: two\n",
        b"kind: X\nspec:\n  list:\n  - {true: 1}\n",
    ],
)
def test_unsignable_input(text: bytes) -> None:
    with pytest.raises(FormatError):
        sign_documents(text, keypair("signer")[0])


def test_signature_annotations_are_stripped_even_when_null() -> None:
    doc = {"kind": "X", "metadata": {"name": "x", "annotations": None}}
    assert strip_signature_annotations(doc, domain=D) == {"kind": "X", "metadata": {"name": "x"}}


def test_anchors_are_written_out_in_full() -> None:
    text = b"kind: X\nmetadata: {name: x}\na: &v {k: 1}\nb: *v\n"
    out = sign_documents(text, keypair("signer")[0])
    assert b"&" not in out and b"*" not in out.replace(b"*v", b"")
    (doc,) = signed_docs(out)
    raw = decode_message(doc["metadata"]["annotations"][MESSAGE], limits=LIMITS)
    assert b"&" not in raw


def test_signed_file_verifies_with_the_project_verifier() -> None:
    """The project's own Verifier admits every resource of a file it signed."""
    verifier_module = pytest.importorskip("provider.core.verifier")
    key, _ = keypair("signer")
    out = signed_docs(sign_documents(DEPLOYMENT_AND_CM, key))
    trusted = verifier_module.Verifier(verifier_module.TrustPolicy(keys=(public_key("signer"),)))
    for doc in out:
        verdict = trusted.verify(doc)
        assert verdict.verified, verdict.message
    untrusted = verifier_module.Verifier(verifier_module.TrustPolicy(keys=(public_key("other"),)))
    assert not untrusted.verify(out[0]).verified
    tampered = signed_docs(build_message(out).replace(b"replicas: 2", b"replicas: 9"))
    assert not trusted.verify(tampered[0]).verified


def test_message_size_limit_applies_when_signing() -> None:
    key, _ = keypair("signer")
    with pytest.raises(LimitExceededError, match="max_message_bytes"):
        sign_documents(DEPLOYMENT_AND_CM, key, limits=Limits(max_message_bytes=200))
    with pytest.raises(LimitExceededError, match="max_message_bytes"):
        bundle_ref_documents(DEPLOYMENT_AND_CM, "reg.example/b:1", limits=Limits(max_message_bytes=200))


def test_bundle_ref_documents() -> None:
    key, _ = keypair("signer")
    signed = sign_documents(DEPLOYMENT_AND_CM, key)
    raw, out = bundle_ref_documents(signed, "reg.example/b:1")
    assert raw == build_message(load_documents(DEPLOYMENT_AND_CM, limits=LIMITS))
    docs = signed_docs(out)
    assert docs[0]["metadata"]["annotations"] == {
        "team": "storefront",
        f"{D}/resourceBundleRef": "reg.example/b:1",
    }
    assert docs[1]["metadata"]["annotations"] == {f"{D}/resourceBundleRef": "reg.example/b:1"}
