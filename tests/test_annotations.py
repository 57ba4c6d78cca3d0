"""Signature sets from annotations: real fixtures verified with the keys their README names."""

from __future__ import annotations

import base64
import gzip

import pytest

from provider.core.annotations import (
    DEFAULT_DOMAIN,
    bundle_from_annotations,
    bundle_refs,
    is_signature_annotation,
    signature_indexes,
)
from provider.core.bundle import BundleSource, PayloadKind
from provider.core.keys import PublicKey, load_public_key
from provider.core.limits import Limits, MiB
from provider.core.message import encode_message
from provider.core.safeyaml import load_documents
from provider.errors import FormatError, LimitExceededError
from tests.conftest import KMS

LIMITS = Limits()
D = DEFAULT_DOMAIN


@pytest.fixture(scope="module")
def keys(key_a_pub: bytes, key_b_pub: bytes, key_c_pub: bytes) -> dict[str, PublicKey]:
    return {
        "A": load_public_key(key_a_pub, name="A"),
        "B": load_public_key(key_b_pub, name="B"),
        "C": load_public_key(key_c_pub, name="C"),
    }


def fixture_annotations(relative: str) -> list[dict[str, str]]:
    return [
        doc["metadata"]["annotations"] for doc in load_documents((KMS / relative).read_bytes(), limits=LIMITS)
    ]


# Each keyed fixture with, per signature set index, the key its README names.
KEYED = [
    ("pkg/k8smanifest/testdata/sample-configmap-signed.yaml", {0: "A"}),
    ("pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml", {0: "C", 1: "A"}),
    ("pkg/k8smanifest/testdata/sample-deployment-signed.yaml", {0: "A"}),
    ("example/verify-resource/sample-configmap.yaml.signed", {0: "C"}),
]


@pytest.mark.parametrize(("relative", "expected"), KEYED)
def test_fixture_sets_verify_with_named_key_only(
    relative: str, expected: dict[int, str], keys: dict[str, PublicKey]
) -> None:
    for notes in fixture_annotations(relative):
        bundle = bundle_from_annotations(notes, domain=D, limits=LIMITS)
        assert bundle is not None
        assert bundle.source is BundleSource.ANNOTATION
        assert {s.index for s in bundle.signature_sets} == set(expected)
        for sset in bundle.signature_sets:
            assert sset.payload == bundle.message
            assert sset.payload_kind is PayloadKind.MESSAGE
            for name, key in keys.items():
                assert key.verify(sset.signature, sset.payload) is (name == expected[sset.index]), (
                    sset.index,
                    name,
                )


def test_keyless_fixture_material_is_ungzipped(keys: dict[str, PublicKey]) -> None:
    (annotations,) = fixture_annotations(
        "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml"
    )
    bundle = bundle_from_annotations(annotations, domain=D, limits=LIMITS)
    assert bundle is not None
    assert [s.index for s in bundle.signature_sets] == [0, 1]
    for sset in bundle.signature_sets:
        assert sset.certificate is not None and sset.certificate.startswith(b"-----BEGIN CERTIFICATE-----")
        assert sset.rekor_bundle is not None and sset.rekor_bundle.startswith(b'{"SignedEntryTimestamp"')
        assert not any(key.verify(sset.signature, sset.payload) for key in keys.values())


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
@pytest.mark.parametrize(
    "relative",
    [
        "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml",
        "pkg/k8smanifest/testdata/sample-deployment-signed.yaml",
    ],
)
def test_flipping_any_byte_breaks_verification(
    relative: str, fraction: float, keys: dict[str, PublicKey]
) -> None:
    annotations = fixture_annotations(relative)[0]
    bundle = bundle_from_annotations(annotations, domain=D, limits=LIMITS)
    assert bundle is not None
    sset = bundle.signature_sets[-1]
    key = keys["A"]
    assert key.verify(sset.signature, sset.payload)
    message_pos = min(int(len(sset.payload) * fraction), len(sset.payload) - 1)
    signature_pos = min(int(len(sset.signature) * fraction), len(sset.signature) - 1)
    assert not key.verify(sset.signature, _flip(sset.payload, message_pos))
    assert not key.verify(_flip(sset.signature, signature_pos), sset.payload)


def test_testsig_over_testblob_with_key_b(keys: dict[str, PublicKey]) -> None:
    blob = base64.b64decode((KMS / "pkg/cosign/testdata/testblob").read_bytes())
    signature = base64.b64decode((KMS / "pkg/cosign/testdata/testsig").read_bytes())
    assert keys["B"].verify(signature, blob)
    assert not keys["A"].verify(signature, blob)
    assert not keys["C"].verify(signature, blob)
    assert not keys["B"].verify(signature, blob + b"\n")


# --- synthetic annotations ----------------------------------------------------------------------


def sig(text: bytes = b"sig") -> str:
    return base64.b64encode(text).decode()


def test_no_signature_material_is_none() -> None:
    assert bundle_from_annotations({}, domain=D, limits=LIMITS) is None
    assert (
        bundle_from_annotations({"other.io/message": "x", f"{D}/note": "y"}, domain=D, limits=LIMITS) is None
    )


def test_configurable_domain() -> None:
    annotations = {"example.com/message": encode_message(b"a: 1\n"), "example.com/signature": sig()}
    assert bundle_from_annotations(annotations, domain=D, limits=LIMITS) is None
    bundle = bundle_from_annotations(annotations, domain="example.com", limits=LIMITS)
    assert bundle is not None and bundle.message == b"a: 1\n"


def test_indexed_sets_sorted_with_matching_material() -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"
    annotations = {
        f"{D}/message": encode_message(b"a: 1\n"),
        f"{D}/signature_2": sig(b"two"),
        f"{D}/signature": sig(b"zero"),
        f"{D}/certificate_2": base64.b64encode(gzip.compress(cert)).decode(),
        f"{D}/bundle_2": base64.b64encode(b'{"plain": "json"}').decode(),  # not gzip: taken as-is
        f"{D}/signature_01": sig(b"ignored: not a set name"),
        f"{D}/certificate_7": sig(b"orphan material is ignored"),
    }
    bundle = bundle_from_annotations(annotations, domain=D, limits=LIMITS)
    assert bundle is not None
    assert [(s.index, s.signature) for s in bundle.signature_sets] == [(0, b"zero"), (2, b"two")]
    assert bundle.signature_sets[0].certificate is None
    assert bundle.signature_sets[1].certificate == cert
    assert bundle.signature_sets[1].rekor_bundle == b'{"plain": "json"}'


def test_signature_without_message_and_message_without_signature() -> None:
    with pytest.raises(FormatError, match="message"):
        bundle_from_annotations({f"{D}/signature": sig()}, domain=D, limits=LIMITS)
    with pytest.raises(FormatError, match="signature"):
        bundle_from_annotations({f"{D}/message": encode_message(b"a: 1")}, domain=D, limits=LIMITS)


def test_signature_set_limit() -> None:
    annotations = {f"{D}/message": encode_message(b"a: 1\n"), f"{D}/signature": sig()}
    annotations.update({f"{D}/signature_{i}": sig() for i in range(1, 40)})
    with pytest.raises(LimitExceededError, match="max_signature_sets"):
        bundle_from_annotations(annotations, domain=D, limits=LIMITS)
    assert bundle_from_annotations(annotations, domain=D, limits=Limits(max_signature_sets=40)) is not None


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("signature", "%%%bad%%%", FormatError),
        ("signature", "", FormatError),
        ("message", "not-base64*", FormatError),
        ("certificate", "@@@@", FormatError),
        ("bundle", base64.b64encode(gzip.compress(b"x", mtime=0)[:-6]).decode(), FormatError),
        ("signature", "A" * (2 * MiB), LimitExceededError),
        ("certificate", "A" * (2 * MiB), LimitExceededError),
    ],
)
def test_malformed_material(key: str, value: str, error: type[Exception]) -> None:
    annotations = {f"{D}/message": encode_message(b"a: 1\n"), f"{D}/signature": sig()}
    annotations[f"{D}/{key}"] = value
    with pytest.raises(error):
        bundle_from_annotations(annotations, domain=D, limits=LIMITS)


def test_gzipped_certificate_bomb_bounded() -> None:
    bomb = base64.b64encode(gzip.compress(bytes(16 * MiB))).decode()
    annotations = {
        f"{D}/message": encode_message(b"a: 1\n"),
        f"{D}/signature": sig(),
        f"{D}/certificate": bomb,
    }
    with pytest.raises(LimitExceededError):
        bundle_from_annotations(annotations, domain=D, limits=LIMITS)


def test_non_string_annotation_value() -> None:
    annotations: dict[str, object] = {f"{D}/message": 12, f"{D}/signature": sig()}
    with pytest.raises(FormatError, match="expected a string"):
        bundle_from_annotations(annotations, domain=D, limits=LIMITS)  # type: ignore[arg-type]


def test_bundle_refs() -> None:
    assert bundle_refs({}, domain=D) == []
    refs = {f"{D}/resourceBundleRef": " reg.example/a:1 , k8s://ConfigMap/ns/cm,, "}
    assert bundle_refs(refs, domain=D) == ["reg.example/a:1", "k8s://ConfigMap/ns/cm"]
    assert bundle_refs(refs, domain="other.io") == []


def test_signature_annotation_names() -> None:
    for base in ("message", "signature", "signature_3", "certificate_1", "bundle", "resourceBundleRef"):
        assert is_signature_annotation(f"{D}/{base}", domain=D)
    assert not is_signature_annotation(f"{D}/note", domain=D)
    assert not is_signature_annotation("other.io/signature", domain=D)
    assert signature_indexes(
        {f"{D}/signature": "", f"{D}/signature_3": "", f"{D}/signature_x": ""}, domain=D
    ) == [0, 3]


def test_non_string_annotation_keys_are_ignored() -> None:
    annotations: dict[object, object] = {1: "x", None: "y", f"{D}/message": encode_message(b"a: 1\n")}
    annotations[f"{D}/signature"] = sig()
    bundle = bundle_from_annotations(annotations, domain=D, limits=LIMITS)  # type: ignore[arg-type]
    assert bundle is not None and [s.index for s in bundle.signature_sets] == [0]


def test_bundle_refs_bounded() -> None:
    many = {f"{D}/resourceBundleRef": ",".join(f"reg.example/r:{i}" for i in range(17))}
    with pytest.raises(LimitExceededError, match="max_signature_sets"):
        bundle_refs(many, domain=D)
    assert len(bundle_refs(many, domain=D, limits=Limits(max_signature_sets=17))) == 17
    with pytest.raises(LimitExceededError, match="max_annotation_bytes"):
        bundle_refs({f"{D}/resourceBundleRef": "," * (2 * MiB)}, domain=D)
    with pytest.raises(FormatError, match="expected a string"):
        bundle_refs({f"{D}/resourceBundleRef": ["a"]}, domain=D)  # type: ignore[dict-item]
