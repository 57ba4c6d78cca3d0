"""Offline keyless verification.

Two kinds of material: the real k8s-manifest-sigstore fixture signed keylessly
by two people against the public-good Sigstore (certificates expired in 2022,
judged at their Rekor integrated time), and material a private Sigstore
instance (:mod:`tests.sigstorekit`) signs freshly for each case.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import random
import re
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.core.annotations import bundle_from_annotations
from provider.core.bundle import SignatureSet
from provider.core.keyless import (
    FULCIO_EXTENSIONS,
    ISSUER_V1_OID,
    KeylessIdentity,
    canonical_json,
    identity_from_cli,
    parse_identities,
    verify_keyless,
)
from provider.core.limits import DEFAULT_LIMITS
from provider.core.message import encode_message
from provider.core.trustroot import TrustedRoot
from provider.core.verdict import SignerKind
from provider.errors import (
    ConfigError,
    FormatError,
    LimitExceededError,
    ManifestProviderError,
    SignatureError,
    UntrustedSignerError,
)
from tests.conftest import KMS, SHARED_FIXTURES
from tests.sigstorekit import DEFAULT_ISSUER, KeylessMaterial, SigstoreKit, pem

KEYLESS_FILE = KMS / "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml"
PGI = SHARED_FIXTURES / "sigstore" / "trusted_root_pgi.json"
DOMAIN = "cosign.sigstore.dev"

GOOGLE = "https://accounts.google.com"
GITHUB = "https://github.com/login/oauth"
SIGNER_0 = ("hkitahar@redhat.com", GOOGLE)
SIGNER_1 = ("hirokuni.kitahara1@ibm.com", GITHUB)
# Rekor integrated times of the two entries (2022-06-17, inside the ten-minute certificates).
INTEGRATED_0 = 1655452519
INTEGRATED_1 = 1655452509


# --------------------------------------------------------------------------
# The real fixture, read straight from its annotations
# --------------------------------------------------------------------------


def _annotation(annotations: dict[str, str], name: str) -> bytes:
    data = base64.b64decode(annotations[f"{DOMAIN}/{name}"])
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.fixture(scope="module")
def fixture_sets() -> tuple[SignatureSet, SignatureSet]:
    doc = yaml.safe_load(KEYLESS_FILE.read_bytes())
    annotations = doc["metadata"]["annotations"]
    raw = _annotation(annotations, "message")  # RAW = gunzip(base64(message))
    sets = []
    for index, suffix in ((0, ""), (1, "_1")):
        sets.append(
            SignatureSet(
                index=index,
                signature=base64.b64decode(annotations[f"{DOMAIN}/signature{suffix}"]),
                payload=raw,
                certificate=_annotation(annotations, f"certificate{suffix}"),
                rekor_bundle=_annotation(annotations, f"bundle{suffix}"),
            )
        )
    return sets[0], sets[1]


@pytest.fixture(scope="module")
def pgi_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(PGI.read_bytes())
    return doc


@pytest.fixture(scope="module")
def pgi(pgi_doc: dict[str, Any]) -> TrustedRoot:
    return TrustedRoot.from_json(json.dumps(pgi_doc).encode())


@pytest.fixture(scope="module")
def both_signers() -> tuple[KeylessIdentity, ...]:
    return parse_identities(
        [
            {"issuer": GOOGLE, "subject": SIGNER_0[0]},
            {"issuer": GITHUB, "subject": SIGNER_1[0]},
        ],
        where="keyless.identities",
    )


def test_fixture_verifies_and_names_both_signers(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi: TrustedRoot,
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    signers = [verify_keyless(s, root=pgi, identities=both_signers) for s in fixture_sets]
    assert [(s.name, s.issuer, s.index, s.kind) for s in signers] == [
        (*SIGNER_0, 0, SignerKind.KEYLESS),
        (*SIGNER_1, 1, SignerKind.KEYLESS),
    ]
    assert signers[0].to_json() == {"kind": "keyless", "name": SIGNER_0[0], "index": 0, "issuer": GOOGLE}


def test_fixture_with_regexp_identity(
    fixture_sets: tuple[SignatureSet, SignatureSet], pgi: TrustedRoot
) -> None:
    ids = parse_identities(
        [
            {
                "issuerRegExp": r"https://(accounts\.google|github)\.com(/login/oauth)?",
                "subjectRegExp": r".+@ibm\.com",
            }
        ],
        where="identities",
    )
    assert verify_keyless(fixture_sets[1], root=pgi, identities=ids).name == SIGNER_1[0]
    with pytest.raises(UntrustedSignerError):
        verify_keyless(fixture_sets[0], root=pgi, identities=ids)


def test_fixture_with_cli_identity(fixture_sets: tuple[SignatureSet, SignatureSet], pgi: TrustedRoot) -> None:
    identity = identity_from_cli(SIGNER_0[0], None, GOOGLE, None)
    assert verify_keyless(fixture_sets[0], root=pgi, identities=[identity]).name == SIGNER_0[0]
    by_regexp = identity_from_cli(None, r"hkitahar@redhat\.com", None, r"https://accounts\.google\.com")
    assert verify_keyless(fixture_sets[0], root=pgi, identities=[by_regexp]).issuer == GOOGLE


@pytest.mark.parametrize(
    ("subject", "issuer", "regexp"),
    [
        ("hirokuni.kitahara1@ibm.com", GOOGLE, False),  # the other signer
        ("hkitahar@redhat.com", GITHUB, False),  # right person, wrong issuer
        ("hkitahar@redhat.com", GOOGLE + "/", False),  # issuer compared exactly
        ("HKITAHAR@redhat.com", GOOGLE, False),  # subject compared exactly
        ("hkitahar", GOOGLE, True),  # regexps must match the whole value
        (r"hkitahar@redhat\.co", GOOGLE, True),
        (r".*@redhat\.com", "accounts.google.com", True),
        (r".*@redhat\.com", r"https://accounts\.google\.co", True),  # a prefix of the issuer
    ],
)
def test_fixture_wrong_identity_is_untrusted(
    fixture_sets: tuple[SignatureSet, SignatureSet], pgi: TrustedRoot, subject: str, issuer: str, regexp: bool
) -> None:
    entry = {
        "subjectRegExp" if regexp else "subject": subject,
        "issuerRegExp" if regexp else "issuer": issuer,
    }
    ids = parse_identities([entry], where="identities")
    with pytest.raises(UntrustedSignerError) as info:
        verify_keyless(fixture_sets[0], root=pgi, identities=ids)
    message = str(info.value)
    assert "certificate identity 'hkitahar@redhat.com'" in message
    assert "issuer 'https://accounts.google.com'" in message


def test_verification_never_touches_the_network(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi: TrustedRoot,
    both_signers: tuple[KeylessIdentity, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any attempt to resolve a name or open a socket fails the test."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("keyless verification tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert [verify_keyless(s, root=pgi, identities=both_signers).name for s in fixture_sets] == [
        SIGNER_0[0],
        SIGNER_1[0],
    ]


def test_empty_identity_list_denies(
    fixture_sets: tuple[SignatureSet, SignatureSet], pgi: TrustedRoot
) -> None:
    with pytest.raises(UntrustedSignerError, match="no keyless identity is configured"):
        verify_keyless(fixture_sets[0], root=pgi, identities=())


def _edit_bundle(field: str, value: Callable[[Any], Any]) -> Callable[[SignatureSet], SignatureSet]:
    def edit(sset: SignatureSet) -> SignatureSet:
        assert sset.rekor_bundle is not None
        doc = json.loads(sset.rekor_bundle)
        target = doc if field == "SignedEntryTimestamp" else doc["Payload"]
        target[field] = value(target[field])
        return replace(sset, rekor_bundle=json.dumps(doc).encode())

    return edit


def _flip_b64(text: str, at: int = 10) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _edit_body(edit: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    def body(text: str) -> str:
        doc = json.loads(base64.b64decode(text))
        edit(doc)
        return base64.b64encode(json.dumps(doc).encode()).decode()

    return body


def _corrupt_cert_signature(sset: SignatureSet) -> SignatureSet:
    assert sset.certificate is not None
    der = bytearray(x509.load_pem_x509_certificate(sset.certificate).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the issuer's signature at the end of the DER
    tampered = x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
    return replace(sset, certificate=tampered)


TAMPERING: list[tuple[str, Callable[[SignatureSet, SignatureSet], SignatureSet], type[Exception], str]] = [
    (
        "certificate swapped",
        lambda s, o: replace(s, certificate=o.certificate),
        SignatureError,
        "the logged certificate differs from the signing certificate",
    ),
    ("certificate signature", lambda s, o: _corrupt_cert_signature(s), SignatureError, "does not verify"),
    (
        "certificate not PEM",
        lambda s, o: replace(s, certificate=b"garbage"),
        FormatError,
        "no PEM CERTIFICATE",
    ),
    (
        "SET edited",
        lambda s, o: _edit_bundle("SignedEntryTimestamp", _flip_b64)(s),
        SignatureError,
        "SignedEntryTimestamp does not verify with the key of https://rekor.sigstore.dev",
    ),
    (
        "SET from the other entry",
        lambda s, o: _edit_bundle(
            "SignedEntryTimestamp", lambda _: json.loads(o.rekor_bundle or b"")["SignedEntryTimestamp"]
        )(s),
        SignatureError,
        "SignedEntryTimestamp does not verify",
    ),
    (
        "body from the other entry",
        lambda s, o: _edit_bundle("body", lambda _: json.loads(o.rekor_bundle or b"")["Payload"]["body"])(s),
        SignatureError,
        "SignedEntryTimestamp does not verify",
    ),
    (
        "body digest edited",
        lambda s, o: _edit_bundle(
            "body", _edit_body(lambda d: d["spec"]["data"]["hash"].update(value="0" * 64))
        )(s),
        SignatureError,
        "SignedEntryTimestamp does not verify",
    ),
    (
        "integratedTime +1s",
        lambda s, o: _edit_bundle("integratedTime", lambda t: t + 1)(s),
        SignatureError,
        "SignedEntryTimestamp does not verify",
    ),
    (
        "integratedTime +1h",
        lambda s, o: _edit_bundle("integratedTime", lambda t: t + 3600)(s),
        SignatureError,
        "not valid at the Rekor integrated time 2022-06-17T08:55:19Z",
    ),
    (
        "logIndex +1",
        lambda s, o: _edit_bundle("logIndex", lambda i: i + 1)(s),
        SignatureError,
        "Rekor entry 2690358: SignedEntryTimestamp does not verify",
    ),
    (
        "logID changed",
        lambda s, o: _edit_bundle("logID", lambda h: "00" + h[2:])(s),
        SignatureError,
        "is not a transparency log of the trusted root",
    ),
    (
        "integratedTime a string",
        lambda s, o: _edit_bundle("integratedTime", str)(s),
        FormatError,
        "Payload.integratedTime must be a non-negative integer, got str",
    ),
    (
        "signature swapped",
        lambda s, o: replace(s, signature=o.signature),
        SignatureError,
        "the logged signature differs from the signature set's signature",
    ),
    (
        "message edited",
        lambda s, o: replace(s, payload=s.payload.replace(b"val1", b"val2")),
        SignatureError,
        "logged digest sha256:7f1e3325c006df00... differs from the payload digest",
    ),
    ("bundle missing", lambda s, o: replace(s, rekor_bundle=None), SignatureError, "without a Rekor bundle"),
    ("bundle not JSON", lambda s, o: replace(s, rekor_bundle=b"{"), FormatError, "Rekor bundle is not JSON"),
]


@pytest.mark.parametrize(
    ("tamper", "error", "expected"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_fixture_tampering_fails_precisely(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi: TrustedRoot,
    both_signers: tuple[KeylessIdentity, ...],
    tamper: Callable[[SignatureSet, SignatureSet], SignatureSet],
    error: type[Exception],
    expected: str,
) -> None:
    tampered = tamper(*fixture_sets)
    assert tampered != fixture_sets[0]
    with pytest.raises(error) as info:
        verify_keyless(tampered, root=pgi, identities=both_signers)
    assert not isinstance(info.value, UntrustedSignerError)
    assert expected in str(info.value)


def test_random_corruption_only_raises_project_errors(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi: TrustedRoot,
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    """Seeded corruption of each piece of real material: never a crash, never a pass."""
    sset = fixture_sets[0]
    assert sset.certificate is not None and sset.rekor_bundle is not None
    der = x509.load_pem_x509_certificate(sset.certificate).public_bytes(serialization.Encoding.DER)
    rnd = random.Random(1655452519)

    def corrupt(data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(out))
            out[at : at + rnd.randint(1, 4)] = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 4)))
        return bytes(out)

    def as_pem(data: bytes) -> bytes:
        text = base64.b64encode(data).decode()
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        return ("-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n").encode()

    kinds: set[str] = set()
    for _ in range(300):
        choice = rnd.randrange(4)
        if choice == 0:
            tampered = replace(sset, certificate=as_pem(corrupt(der)))
        elif choice == 1:
            tampered = replace(sset, rekor_bundle=corrupt(sset.rekor_bundle))
        elif choice == 2:
            tampered = replace(sset, signature=corrupt(sset.signature))
        else:
            tampered = replace(sset, payload=corrupt(sset.payload))
        if tampered == sset:
            continue
        with pytest.raises(ManifestProviderError) as info:
            verify_keyless(tampered, root=pgi, identities=both_signers)
        kinds.add(type(info.value).__name__)
    assert {"FormatError", "SignatureError"} <= kinds


def test_fixture_fails_when_the_ca_had_expired(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi_doc: dict[str, Any],
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    doc = copy.deepcopy(pgi_doc)
    doc["certificateAuthorities"][1]["validFor"]["end"] = "2022-06-01T00:00:00Z"
    root = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(SignatureError) as info:
        verify_keyless(fixture_sets[0], root=root, identities=both_signers)
    message = str(info.value)
    assert (
        "CA[1] https://fulcio.sigstore.dev: issued the chain but is not valid at 2022-06-17T07:55:19Z"
        in message
    )
    assert "CA[0] https://fulcio.sigstore.dev: no issuer for" in message


def test_fixture_fails_with_another_rekor_key(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi_doc: dict[str, Any],
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    doc = copy.deepcopy(pgi_doc)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc["tlogs"][0]["publicKey"]["rawBytes"] = base64.b64encode(der).decode()  # same logId, other key
    root = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(SignatureError, match="SignedEntryTimestamp does not verify"):
        verify_keyless(fixture_sets[0], root=root, identities=both_signers)


def test_fixture_fails_when_the_log_key_was_not_yet_valid(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi_doc: dict[str, Any],
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    doc = copy.deepcopy(pgi_doc)
    doc["tlogs"][0]["publicKey"]["validFor"]["start"] = "2022-06-17T08:00:00Z"
    root = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(
        SignatureError, match=r"log key https://rekor.sigstore.dev not valid at 2022-06-17T07:55:19Z"
    ):
        verify_keyless(fixture_sets[0], root=root, identities=both_signers)


def test_fixture_scts_are_checked_against_the_ct_logs(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi_doc: dict[str, Any],
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    doc = copy.deepcopy(pgi_doc)
    doc["ctlogs"][0]["publicKey"]["validFor"]["end"] = "2022-06-01T00:00:00Z"
    expired = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(SignatureError) as info:
        verify_keyless(fixture_sets[0], root=expired, identities=both_signers)
    assert "no embedded SCT verifies" in str(info.value)
    assert "CT log https://ctfe.sigstore.dev/test not valid at 2022-06-17T07:55:18Z" in str(info.value)

    doc = copy.deepcopy(pgi_doc)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc["ctlogs"][0]["publicKey"]["rawBytes"] = base64.b64encode(der).decode()
    rekeyed = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(SignatureError, match="signature does not verify with the key of https://ctfe"):
        verify_keyless(fixture_sets[0], root=rekeyed, identities=both_signers)

    doc["ctlogs"] = doc["ctlogs"][1:]
    unknown = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(
        SignatureError, match=re.escape("SCT from log 086092f02852ff68...: not a CT log of the trusted root")
    ):
        verify_keyless(fixture_sets[0], root=unknown, identities=both_signers)

    # A trusted root without CT logs does not ask for SCTs.
    del doc["ctlogs"]
    no_ct = TrustedRoot.from_json(json.dumps(doc).encode())
    assert verify_keyless(fixture_sets[0], root=no_ct, identities=both_signers).name == SIGNER_0[0]


def test_fixture_intermediate_may_come_from_the_signature_chain(
    fixture_sets: tuple[SignatureSet, SignatureSet],
    pgi: TrustedRoot,
    both_signers: tuple[KeylessIdentity, ...],
) -> None:
    """A root pinning only the anchor accepts an intermediate supplied with the signature."""
    current = pgi.certificate_authorities[1]
    intermediate, anchor = current.certificates
    anchor_only = replace(pgi, certificate_authorities=(replace(current, certificates=(anchor,)),))
    with pytest.raises(SignatureError, match="no issuer for"):
        verify_keyless(fixture_sets[0], root=anchor_only, identities=both_signers)
    with_chain = replace(fixture_sets[0], chain=pem(intermediate) + pem(anchor))
    assert verify_keyless(with_chain, root=anchor_only, identities=both_signers).name == SIGNER_0[0]


# --------------------------------------------------------------------------
# A private Sigstore instance
# --------------------------------------------------------------------------

PAYLOAD = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fresh\ndata:\n  k: v\n"
ME = "dev@example.com"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create()


@pytest.fixture(scope="module")
def kit_root(kit: SigstoreKit) -> TrustedRoot:
    return TrustedRoot.from_json(kit.trusted_root_json())


def _me(**extensions: str) -> tuple[KeylessIdentity, ...]:
    return (KeylessIdentity(issuer=DEFAULT_ISSUER, subject=ME, extensions=extensions),)


@pytest.mark.parametrize(
    "identity", [ME, "https://github.com/o/r/.github/workflows/w.yml@refs/tags/v1", "svc-42"]
)
@pytest.mark.parametrize("with_chain", [False, True])
@pytest.mark.parametrize("entry_kind", ["hashedrekord", "rekord"])
def test_private_instance_signs_and_verifies(
    kit: SigstoreKit, kit_root: TrustedRoot, identity: str, with_chain: bool, entry_kind: str
) -> None:
    material = kit.sign(PAYLOAD, identity=identity, entry_kind=entry_kind)
    sset = material.signature_set(PAYLOAD, index=3, with_chain=with_chain)
    ids = (KeylessIdentity(issuer=DEFAULT_ISSUER, subject=identity),)
    signer = verify_keyless(sset, root=kit_root, identities=ids)
    assert (signer.name, signer.issuer, signer.index) == (identity, DEFAULT_ISSUER, 3)


@pytest.mark.parametrize(("ca_key_type", "key_type"), [("rsa-2048", "rsa-2048"), ("ec-p384", "ec-p384")])
def test_other_key_types(ca_key_type: str, key_type: str) -> None:
    kit = SigstoreKit.create(ca_key_type=ca_key_type)
    root = TrustedRoot.from_json(kit.trusted_root_json())
    material = kit.sign(PAYLOAD, identity=ME, key_type=key_type)
    assert verify_keyless(material.signature_set(PAYLOAD), root=root, identities=_me()).name == ME
    # A log entry for other bytes, signature reused: the key check itself must refuse it.
    other = PAYLOAD + b"#"
    body = SigstoreKit.hashedrekord_body(material.signature, material.certificate_pem, other)
    sset = replace(material.signature_set(other), rekor_bundle=_logged(kit, material, body))
    with pytest.raises(SignatureError, match="signature does not verify over the payload"):
        verify_keyless(sset, root=root, identities=_me())


def test_private_instance_is_not_trusted_by_another_root(kit: SigstoreKit, pgi: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME)
    with pytest.raises(SignatureError, match="does not chain to a trusted Fulcio CA"):
        verify_keyless(material.signature_set(PAYLOAD), root=pgi, identities=_me())


def test_log_of_another_instance_is_not_trusted(kit: SigstoreKit) -> None:
    other = SigstoreKit.create()
    # Same CAs as ``kit`` but the other instance's log: the log ID is unknown.
    doc = kit.trusted_root()
    doc["tlogs"] = other.trusted_root()["tlogs"]
    root = TrustedRoot.from_json(json.dumps(doc).encode())
    with pytest.raises(SignatureError, match="is not a transparency log of the trusted root"):
        verify_keyless(kit.sign(PAYLOAD, identity=ME).signature_set(PAYLOAD), root=root, identities=_me())


def test_annotations_round_trip_through_the_annotation_reader(
    kit: SigstoreKit, kit_root: TrustedRoot
) -> None:
    first = kit.sign(PAYLOAD, identity=ME)
    second = kit.sign(PAYLOAD, identity="ops@example.com", issuer="https://other-issuer.test")
    annotations = {
        f"{DOMAIN}/message": encode_message(PAYLOAD),
        **first.annotations(),
        **second.annotations(index=1),
    }
    bundle = bundle_from_annotations(annotations, domain=DOMAIN, limits=DEFAULT_LIMITS)
    assert bundle is not None
    ids = (*_me(), KeylessIdentity(issuer="https://other-issuer.test", subject="ops@example.com"))
    names = [verify_keyless(s, root=kit_root, identities=ids).name for s in bundle.signature_sets]
    assert names == [ME, "ops@example.com"]


def test_certificate_not_valid_at_integrated_time(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME, not_before=kit.now - timedelta(hours=1))
    with pytest.raises(
        SignatureError, match=r"certificate serial [0-9a-f]+ not valid at the Rekor integrated time"
    ):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


def test_integrated_before_the_certificate(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME, integrated_time=int(kit.now.timestamp()) - 120)
    with pytest.raises(SignatureError, match="not valid at the Rekor integrated time"):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


def test_expired_ca_fails() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    kit = SigstoreKit.create(now=now, ca_valid_until=now - timedelta(days=1))
    root = TrustedRoot.from_json(kit.trusted_root_json())
    with pytest.raises(SignatureError, match="issued the chain but is not valid at"):
        verify_keyless(kit.sign(PAYLOAD, identity=ME).signature_set(PAYLOAD), root=root, identities=_me())


def test_expired_ca_certificate_fails() -> None:
    kit = SigstoreKit.create(ca_cert_lifetime=timedelta(days=30))  # CA certificates expired 11 months ago
    root = TrustedRoot.from_json(kit.trusted_root_json())
    with pytest.raises(
        SignatureError, match=re.escape("CA certificate 'CN=sigstore-intermediate,O=sigstore.test' not valid")
    ):
        verify_keyless(kit.sign(PAYLOAD, identity=ME).signature_set(PAYLOAD), root=root, identities=_me())


def test_log_key_out_of_service_fails() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    kit = SigstoreKit.create(now=now, tlog_valid_until=now - timedelta(seconds=1))
    root = TrustedRoot.from_json(kit.trusted_root_json())
    with pytest.raises(SignatureError, match=re.escape("log key https://rekor.sigstore.test not valid at")):
        verify_keyless(kit.sign(PAYLOAD, identity=ME).signature_set(PAYLOAD), root=root, identities=_me())


def test_certificate_without_sct_fails_when_ct_logs_are_trusted(
    kit: SigstoreKit, kit_root: TrustedRoot
) -> None:
    material = kit.sign(PAYLOAD, identity=ME, embed_sct=False)
    with pytest.raises(
        SignatureError, match="certificate has no embedded SCT, but the trusted root lists CT logs"
    ):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())
    doc = kit.trusted_root()
    del doc["ctlogs"]
    without_ct = TrustedRoot.from_json(json.dumps(doc).encode())
    assert verify_keyless(material.signature_set(PAYLOAD), root=without_ct, identities=_me()).name == ME


def test_sct_by_another_ct_key_fails(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME, sct_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(
        SignatureError,
        match=re.escape("signature does not verify with the key of https://ctfe.sigstore.test"),
    ):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


def test_sct_before_the_ct_log_was_in_service(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME, sct_time=kit.now - timedelta(days=400))
    with pytest.raises(SignatureError, match=re.escape("CT log https://ctfe.sigstore.test not valid at")):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"code_signing": False}, "extended key usage lacks codeSigning"),
        ({"is_ca": True}, "is a CA certificate, not a signing certificate"),
    ],
)
def test_leaf_usage_is_checked(
    kit: SigstoreKit, kit_root: TrustedRoot, options: dict[str, Any], expected: str
) -> None:
    material = kit.sign(PAYLOAD, identity=ME, **options)
    with pytest.raises(SignatureError, match=expected):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


def test_chain_is_checked_before_the_log(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    stranger = SigstoreKit.create().sign(PAYLOAD, identity=ME)
    broken = replace(
        stranger.signature_set(PAYLOAD), rekor_bundle=kit.sign(PAYLOAD, identity=ME).rekor_bundle_json
    )
    with pytest.raises(SignatureError, match="does not chain"):
        verify_keyless(broken, root=kit_root, identities=_me())


def test_untrusted_chain_certificates_do_not_help(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    """A chain supplied with the signature only helps if it leads to a trusted anchor."""
    stranger = SigstoreKit.create()
    material = stranger.sign(PAYLOAD, identity=ME)
    with pytest.raises(SignatureError, match="does not chain"):
        verify_keyless(material.signature_set(PAYLOAD, with_chain=True), root=kit_root, identities=_me())


def _logged(kit: SigstoreKit, material: KeylessMaterial, body: dict[str, Any] | bytes) -> bytes:
    return kit.log_entry(body, integrated_time=material.integrated_time)


def _hashedrekord(material: KeylessMaterial, payload: bytes = PAYLOAD) -> dict[str, Any]:
    return SigstoreKit.hashedrekord_body(material.signature, material.certificate_pem, payload)


BODIES: list[tuple[str, Callable[[KeylessMaterial], dict[str, Any] | bytes], type[Exception], str]] = [
    ("not JSON", lambda m: b"not json", FormatError, "body is not JSON"),
    ("not base64 JSON object", lambda m: b"[]", FormatError, "body lacks kind"),
    (
        "intoto kind",
        lambda m: {**_hashedrekord(m), "kind": "intoto"},
        SignatureError,
        "entry kind 'intoto' version '0.0.1' cannot bind",
    ),
    (
        "other version",
        lambda m: {**_hashedrekord(m), "apiVersion": "0.0.2"},
        SignatureError,
        "expected hashedrekord or rekord 0.0.1",
    ),
    (
        "digest of other data",
        lambda m: _hashedrekord(m, b"other"),
        SignatureError,
        "logged digest sha256:",
    ),
    (
        "digest algorithm",
        lambda m: _set_in(_hashedrekord(m), ("spec", "data", "hash", "algorithm"), "md5"),
        SignatureError,
        "digest algorithm 'md5' is not supported",
    ),
    (
        "signature missing",
        lambda m: _set_in(_hashedrekord(m), ("spec", "signature", "content"), None),
        FormatError,
        "body spec.signature.content must be a str, got null",
    ),
    (
        "another signature",
        lambda m: _set_in(
            _hashedrekord(m), ("spec", "signature", "content"), base64.b64encode(b"x").decode()
        ),
        SignatureError,
        "the logged signature differs",
    ),
    (
        "another key",
        lambda m: _set_in(_hashedrekord(m), ("spec", "signature", "publicKey", "content"), _b64_pubkey()),
        SignatureError,
        "the logged public key is not the signing certificate's key",
    ),
    (
        "key not PEM",
        lambda m: _set_in(_hashedrekord(m), ("spec", "signature", "publicKey", "content"), "Zm9v"),
        FormatError,
        "neither a certificate nor a public key",
    ),
]


def _set_in(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _b64_pubkey() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return base64.b64encode(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()


@pytest.mark.parametrize(("body", "error", "expected"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_logged_entry_must_bind_this_signature(
    kit: SigstoreKit,
    kit_root: TrustedRoot,
    body: Callable[[KeylessMaterial], dict[str, Any] | bytes],
    error: type[Exception],
    expected: str,
) -> None:
    """The log vouches (valid SET) for an entry that is not about this signature."""
    material = kit.sign(PAYLOAD, identity=ME)
    sset = replace(material.signature_set(PAYLOAD), rekor_bundle=_logged(kit, material, body(material)))
    with pytest.raises(error) as info:
        verify_keyless(sset, root=kit_root, identities=_me())
    assert expected in str(info.value)


def _rekord_with_content(material: KeylessMaterial, content: bytes, fmt: str = "x509") -> dict[str, Any]:
    body = SigstoreKit.rekord_body(material.signature, material.certificate_pem, PAYLOAD)
    body["spec"]["data"] = {"content": base64.b64encode(content).decode()}
    body["spec"]["signature"]["format"] = fmt
    return body


def test_legacy_rekord_entry_with_content(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME)
    good = replace(
        material.signature_set(PAYLOAD),
        rekor_bundle=_logged(kit, material, _rekord_with_content(material, PAYLOAD)),
    )
    assert verify_keyless(good, root=kit_root, identities=_me()).name == ME
    other = replace(good, rekor_bundle=_logged(kit, material, _rekord_with_content(material, b"other")))
    with pytest.raises(SignatureError, match="logged content differs from the payload"):
        verify_keyless(other, root=kit_root, identities=_me())
    pgp = replace(good, rekor_bundle=_logged(kit, material, _rekord_with_content(material, PAYLOAD, "pgp")))
    with pytest.raises(SignatureError, match="rekord signature format 'pgp', expected x509"):
        verify_keyless(pgp, root=kit_root, identities=_me())
    body = _rekord_with_content(material, PAYLOAD)
    body["spec"]["data"] = {}
    empty = replace(good, rekor_bundle=_logged(kit, material, body))
    with pytest.raises(FormatError, match=r"neither spec\.data\.hash nor spec\.data\.content"):
        verify_keyless(empty, root=kit_root, identities=_me())


def test_bare_public_key_entry_is_accepted(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME)
    cert = x509.load_pem_x509_certificate(material.certificate_pem)
    key_pem = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = SigstoreKit.hashedrekord_body(material.signature, key_pem, PAYLOAD)
    sset = replace(material.signature_set(PAYLOAD), rekor_bundle=_logged(kit, material, body))
    assert verify_keyless(sset, root=kit_root, identities=_me()).name == ME


def test_signature_must_verify_over_the_payload(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    """Everything is logged consistently, but the signature is by another key."""
    material = kit.sign(PAYLOAD, identity=ME)
    forged = ec.generate_private_key(ec.SECP256R1()).sign(PAYLOAD, ec.ECDSA(hashes.SHA256()))
    body = SigstoreKit.hashedrekord_body(forged, material.certificate_pem, PAYLOAD)
    sset = replace(
        material.signature_set(PAYLOAD), signature=forged, rekor_bundle=_logged(kit, material, body)
    )
    with pytest.raises(
        SignatureError, match="signature does not verify over the payload with the certificate's key"
    ):
        verify_keyless(sset, root=kit_root, identities=_me())


# -- extensions and issuers ------------------------------------------------------

WORKFLOW = {
    "githubWorkflowRepository": "example/manifests",
    "githubWorkflowTrigger": "push",
    "githubWorkflowRef": "refs/heads/main",
    "buildSignerURI": "https://github.com/example/manifests/.github/workflows/sign.yml@refs/heads/main",
    "sourceRepositoryURI": "https://github.com/example/manifests",
    "runnerEnvironment": "github-hosted",
}
ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW_IDENTITY = WORKFLOW["buildSignerURI"]


@pytest.fixture(scope="module")
def workflow_material(kit: SigstoreKit) -> KeylessMaterial:
    return kit.sign(PAYLOAD, identity=WORKFLOW_IDENTITY, issuer=ACTIONS_ISSUER, extensions=WORKFLOW)


def _workflow_identity(**extensions: str) -> tuple[KeylessIdentity, ...]:
    return parse_identities(
        [
            {
                "issuer": ACTIONS_ISSUER,
                "subjectRegExp": r"https://github\.com/example/manifests/\.github/workflows/.+",
                "extensions": extensions,
            }
        ],
        where="identities",
    )


def test_required_extensions_match(workflow_material: KeylessMaterial, kit_root: TrustedRoot) -> None:
    required = {k: WORKFLOW[k] for k in ("githubWorkflowRepository", "githubWorkflowRef", "buildSignerURI")}
    signer = verify_keyless(
        workflow_material.signature_set(PAYLOAD), root=kit_root, identities=_workflow_identity(**required)
    )
    assert signer.name == WORKFLOW_IDENTITY
    assert signer.issuer == ACTIONS_ISSUER
    assert dict(signer.extensions) == required


@pytest.mark.parametrize(
    ("name", "value", "found"),
    [
        ("githubWorkflowRepository", "example/other", "'example/manifests'"),
        ("githubWorkflowTrigger", "pull_request", "'push'"),
        ("sourceRepositoryRef", "refs/heads/main", "None"),  # absent from the certificate
        ("runnerEnvironment", "self-hosted", "'github-hosted'"),
    ],
)
def test_extension_mismatch_is_untrusted(
    workflow_material: KeylessMaterial, kit_root: TrustedRoot, name: str, value: str, found: str
) -> None:
    with pytest.raises(UntrustedSignerError) as info:
        verify_keyless(
            workflow_material.signature_set(PAYLOAD),
            root=kit_root,
            identities=_workflow_identity(**{name: value}),
        )
    assert f"extension {name} is {found}, expected {value!r}" in str(info.value)


def test_first_matching_identity_wins(workflow_material: KeylessMaterial, kit_root: TrustedRoot) -> None:
    ids = (
        *_workflow_identity(githubWorkflowRef="refs/heads/release"),
        *_workflow_identity(githubWorkflowTrigger="push"),
    )
    signer = verify_keyless(workflow_material.signature_set(PAYLOAD), root=kit_root, identities=ids)
    assert dict(signer.extensions) == {"githubWorkflowTrigger": "push"}


@pytest.mark.parametrize(("v1", "v2"), [(True, False), (False, True)])
def test_issuer_from_either_extension(kit: SigstoreKit, kit_root: TrustedRoot, v1: bool, v2: bool) -> None:
    material = kit.sign(PAYLOAD, identity=ME, issuer_v1=v1, issuer_v2=v2)
    assert (
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me()).issuer
        == DEFAULT_ISSUER
    )


def test_no_issuer_is_untrusted(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(PAYLOAD, identity=ME, issuer=None)
    with pytest.raises(UntrustedSignerError, match="with issuer None"):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


def test_disagreeing_issuers_are_malformed(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    material = kit.sign(
        PAYLOAD,
        identity=ME,
        issuer_v1=False,
        raw_extensions={ISSUER_V1_OID.dotted_string: b"https://evil.test"},
    )
    with pytest.raises(FormatError, match="OIDC issuer extensions disagree"):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


def test_v2_extension_must_be_der(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    oid = FULCIO_EXTENSIONS["buildTrigger"].oid.dotted_string
    material = kit.sign(PAYLOAD, identity=ME, raw_extensions={oid: b"push"})
    with pytest.raises(
        FormatError, match=r"extension 1\.3\.6\.1\.4\.1\.57264\.1\.20 is not a DER UTF8String"
    ):
        verify_keyless(material.signature_set(PAYLOAD), root=kit_root, identities=_me())


# -- malformed material ------------------------------------------------------------


def _bundle_payload(edit: Callable[[dict[str, Any]], None]) -> Callable[[SignatureSet], SignatureSet]:
    def apply(sset: SignatureSet) -> SignatureSet:
        doc = json.loads(sset.rekor_bundle or b"")
        edit(doc)
        return replace(sset, rekor_bundle=json.dumps(doc).encode())

    return apply


MALFORMED: list[tuple[str, Callable[[SignatureSet], SignatureSet], type[Exception], str]] = [
    ("no certificate", lambda s: replace(s, certificate=None), FormatError, "no certificate"),
    (
        "two certificates",
        lambda s: replace(s, certificate=(s.certificate or b"") * 2),
        FormatError,
        "expected exactly one certificate, found 2",
    ),
    (
        "truncated certificate",
        lambda s: replace(s, certificate=(s.certificate or b"")[:200] + b"\n-----END CERTIFICATE-----\n"),
        FormatError,
        "not a usable PEM X.509 certificate",
    ),
    ("chain garbage", lambda s: replace(s, chain=b"nope"), FormatError, "chain: no PEM CERTIFICATE block"),
    (
        "chain too long",
        lambda s: replace(s, chain=(s.certificate or b"") * 11),
        LimitExceededError,
        "11 certificates, above the limit of 10",
    ),
    (
        "oversized bundle",
        lambda s: replace(s, rekor_bundle=b" " * (1024 * 1024 + 1)),
        LimitExceededError,
        "byte limit",
    ),
    (
        "bundle a list",
        lambda s: replace(s, rekor_bundle=b"[]"),
        FormatError,
        "expected a JSON object, got list",
    ),
    (
        "nesting bomb",
        lambda s: replace(s, rekor_bundle=b"[" * 50_000 + b"]" * 50_000),
        FormatError,
        "Rekor bundle is not JSON",
    ),
    (
        "SET not base64",
        _bundle_payload(lambda d: d.update(SignedEntryTimestamp="***")),
        FormatError,
        "SignedEntryTimestamp: not valid base64",
    ),
    (
        "Payload a list",
        _bundle_payload(lambda d: d.update(Payload=[])),
        FormatError,
        "Payload must be an object, got list",
    ),
    (
        "integratedTime bool",
        _bundle_payload(lambda d: d["Payload"].update(integratedTime=True)),
        FormatError,
        "integratedTime must be a non-negative integer, got bool",
    ),
    (
        "integratedTime negative",
        _bundle_payload(lambda d: d["Payload"].update(integratedTime=-1)),
        FormatError,
        "integratedTime must be a non-negative integer",
    ),
    (
        "integratedTime huge",
        _bundle_payload(lambda d: d["Payload"].update(integratedTime=10**30)),
        FormatError,
        "out of range",
    ),
    (
        "logIndex float",
        _bundle_payload(lambda d: d["Payload"].update(logIndex=1.5)),
        FormatError,
        "logIndex must be a non-negative integer, got float",
    ),
    (
        "logID not hex",
        _bundle_payload(lambda d: d["Payload"].update(logID="xyz")),
        FormatError,
        "logID must be hex",
    ),
    (
        "body with a lone surrogate",
        lambda s: replace(
            s, rekor_bundle=(s.rekor_bundle or b"").replace(b'"body": "', b'"body": "\\ud800', 1)
        ),
        FormatError,
        "Payload.body must be a base64 string",
    ),
]


@pytest.mark.parametrize(
    ("mangle", "error", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_material(
    kit: SigstoreKit,
    kit_root: TrustedRoot,
    mangle: Callable[[SignatureSet], SignatureSet],
    error: type[Exception],
    expected: str,
) -> None:
    sset = mangle(kit.sign(PAYLOAD, identity=ME).signature_set(PAYLOAD))
    with pytest.raises(error) as info:
        verify_keyless(sset, root=kit_root, identities=_me())
    assert expected in str(info.value)


def test_body_not_base64_fails_the_set_first(kit: SigstoreKit, kit_root: TrustedRoot) -> None:
    """An entry body is only decoded once the log's signature over it verified."""
    material = kit.sign(PAYLOAD, identity=ME)
    doc = json.loads(material.rekor_bundle_json)
    doc["Payload"]["body"] = "%%%"
    sset = replace(material.signature_set(PAYLOAD), rekor_bundle=json.dumps(doc).encode())
    with pytest.raises(SignatureError, match="SignedEntryTimestamp does not verify"):
        verify_keyless(sset, root=kit_root, identities=_me())
    # The same body with a valid SET is malformed material.
    doc["SignedEntryTimestamp"] = base64.b64encode(
        kit.rekor_key.sign(canonical_json(doc["Payload"]), ec.ECDSA(hashes.SHA256()))
    ).decode()
    sset = replace(sset, rekor_bundle=json.dumps(doc).encode())
    with pytest.raises(FormatError, match="body: not valid base64"):
        verify_keyless(sset, root=kit_root, identities=_me())


# --------------------------------------------------------------------------
# Canonical JSON and identity parsing
# --------------------------------------------------------------------------


def test_canonical_json() -> None:
    assert canonical_json({"logIndex": 5, "body": "eyJ9", "logID": "c0", "integratedTime": 1}) == (
        b'{"body":"eyJ9","integratedTime":1,"logID":"c0","logIndex":5}'
    )
    assert canonical_json({"b": 'q"\\\n\t\x01\u00e9\u20ac', "a": -0}) == (
        b'{"a":0,"b":"q\\"\\\\\\n\\t\\u0001' + "\u00e9\u20ac".encode() + b'"}'
    )
    # Keys sort by UTF-16 code units: U+20AC (0x20AC) before U+1F600 (surrogate 0xD83D).
    assert canonical_json({"\U0001f600": 1, "\u20ac": 2}).decode() == '{"\u20ac":2,"\U0001f600":1}'
    with pytest.raises(TypeError):
        canonical_json({"a": True})
    with pytest.raises(TypeError):
        canonical_json({"a": 1.5})  # type: ignore[dict-item]


def test_canonical_json_matches_a_real_set(
    fixture_sets: tuple[SignatureSet, SignatureSet], pgi: TrustedRoot
) -> None:
    doc = json.loads(fixture_sets[0].rekor_bundle or b"")
    payload = doc["Payload"]
    expected = json.dumps(dict(sorted(payload.items())), separators=(",", ":")).encode()
    assert canonical_json(payload) == expected
    key = pgi.tlogs[0].public_key
    assert key.verify(base64.b64decode(doc["SignedEntryTimestamp"]), canonical_json(payload))


def test_parse_identities_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_identities(
            [
                {"issuer": GOOGLE, "issuerRegExp": "x", "subject": "a"},
                {"issuer": GOOGLE},
                {"issuer": GOOGLE, "subjectRegExp": "([unclosed"},
                {
                    "issuer": GOOGLE,
                    "subject": "a",
                    "extensions": {"githubWorkflowRepo": "x", "buildTrigger": 3},
                },
                {"issuer": GOOGLE, "subject": "a", "identity": "b"},
                "not a mapping",
                {"issuer": "", "subject": "a"},
                {"issuer": GOOGLE, "subject": "a", "extensions": ["x"]},
            ],
            where="keyless.identities",
        )
    problems = info.value.problems
    expected = [
        "keyless.identities[0]: exactly one of issuer and issuerRegExp must be given",
        "keyless.identities[1]: exactly one of subject and subjectRegExp must be given",
        "keyless.identities[2].subjectRegExp: invalid regular expression",
        "keyless.identities[3].extensions: unknown Fulcio extension 'githubWorkflowRepo'",
        "keyless.identities[3].extensions.buildTrigger: expected a non-empty string, got int",
        "keyless.identities[4]: unknown key 'identity'",
        "keyless.identities[5]: expected a mapping, got str",
        "keyless.identities[6].issuer: expected a non-empty string, got an empty string",
        "keyless.identities[7].extensions: expected a mapping of extension name to value, got list",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), text
    assert len(problems) == len(expected)


@pytest.mark.parametrize("data", [None, {"issuer": GOOGLE}, "x"])
def test_parse_identities_wants_a_list(data: Any) -> None:
    with pytest.raises(ConfigError, match=r"keyless\.identities: expected a list"):
        parse_identities(data, where="keyless.identities")


def test_parse_identities_compiles_regexps() -> None:
    (identity,) = parse_identities(
        [
            {
                "issuerRegExp": "https://.*",
                "subjectRegExp": ".*@example\\.com",
                "extensions": {"buildTrigger": "push"},
            }
        ],
        where="ids",
    )
    assert isinstance(identity.subject_regexp, re.Pattern)
    assert identity.matching_subject(["x@example.com"]) == "x@example.com"
    assert identity.matching_subject(["x@example.com.evil"]) is None
    assert parse_identities([], where="ids") == ()


def test_identity_is_frozen_and_hashable() -> None:
    extensions = {"buildTrigger": "push"}
    identity = KeylessIdentity(issuer=GOOGLE, subject="a", extensions=extensions)
    extensions["buildTrigger"] = "pull_request"
    assert identity.extensions == {"buildTrigger": "push"}
    with pytest.raises(TypeError):
        identity.extensions["buildTrigger"] = "x"  # type: ignore[index]
    assert hash(identity) == hash(
        KeylessIdentity(issuer=GOOGLE, subject="a", extensions={"buildTrigger": "push"})
    )
    with pytest.raises(ConfigError, match="exactly one of issuer"):
        KeylessIdentity(subject="a")
    with pytest.raises(ConfigError, match="unknown Fulcio extension"):
        KeylessIdentity(issuer=GOOGLE, subject="a", extensions={"nope": "x"})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((None, None, GOOGLE, None), "--certificate-identity or --certificate-identity-regexp is required"),
        (
            ("a", None, None, None),
            "--certificate-oidc-issuer or --certificate-oidc-issuer-regexp is required",
        ),
        (("a", "b", GOOGLE, None), "mutually exclusive"),
        (("a", None, GOOGLE, "x"), "mutually exclusive"),
        ((None, "(", GOOGLE, None), "--certificate-identity-regexp: invalid regular expression"),
        (("a", None, None, "["), "--certificate-oidc-issuer-regexp: invalid regular expression"),
        (("", None, GOOGLE, None), "--certificate-identity must not be empty"),
        ((None, "", GOOGLE, None), "--certificate-identity-regexp: empty regular expression"),
    ],
)
def test_identity_from_cli_rejects(args: tuple[str | None, ...], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        identity_from_cli(*args)
