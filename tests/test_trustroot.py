"""Trusted root parsing: the real public-good file, a private instance's file, and broken ones."""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from provider.core.trustroot import HashAlgorithm, TrustedRoot, ValidityPeriod
from provider.errors import ConfigError
from tests.conftest import SHARED_FIXTURES
from tests.sigstorekit import SigstoreKit

PGI = SHARED_FIXTURES / "sigstore" / "trusted_root_pgi.json"
REKOR_LOG_ID = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"


@pytest.fixture(scope="module")
def pgi_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(PGI.read_bytes())
    return doc


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create()


def test_public_good_root_parses() -> None:
    root = TrustedRoot.from_json(PGI.read_bytes())
    assert root.media_type.startswith("application/vnd.dev.sigstore.trustedroot+json")
    assert [len(ca.certificates) for ca in root.certificate_authorities] == [1, 2]
    old, current = root.certificate_authorities
    assert old.uri == "https://fulcio.sigstore.dev"
    assert old.valid_for.end == datetime(2022, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert current.valid_for.end is None
    assert current.certificates[0].subject.rfc4514_string() == "CN=sigstore-intermediate,O=sigstore.dev"
    assert current.anchor.subject == current.anchor.issuer
    (rekor,) = root.tlogs
    assert rekor.log_id.hex() == REKOR_LOG_ID
    assert rekor.hash_algorithm is HashAlgorithm.SHA2_256
    assert rekor.public_key.key_details == "PKIX_ECDSA_P256_SHA_256"
    assert rekor.valid_for.start == datetime(2021, 1, 12, 11, 53, 27, tzinfo=UTC)
    assert len(root.ctlogs) == 2
    assert root.tlogs_for(bytes.fromhex(REKOR_LOG_ID)) == (rekor,)
    assert root.tlogs_for(b"\x00" * 32) == ()


def test_roots_compare_and_hash_by_content() -> None:
    first, second = TrustedRoot.from_json(PGI.read_bytes()), TrustedRoot.from_json(PGI.read_bytes())
    assert first == second
    assert hash(first) == hash(second)
    assert first != TrustedRoot.from_json(SigstoreKit.create().trusted_root_json())


def test_private_instance_root_parses(kit: SigstoreKit) -> None:
    root = TrustedRoot.from_json(kit.trusted_root_json())
    (ca,) = root.certificate_authorities
    assert ca.certificates == (kit.intermediate_cert, kit.root_cert)
    assert root.tlogs[0].log_id == kit.log_id


def test_from_file(tmp_path: Path, kit: SigstoreKit) -> None:
    path = tmp_path / "root.json"
    path.write_bytes(kit.trusted_root_json())
    assert TrustedRoot.from_file(path).tlogs[0].log_id == kit.log_id
    with pytest.raises(ConfigError, match="cannot read"):
        TrustedRoot.from_file(tmp_path / "missing.json")


def test_validity_period_bounds_are_inclusive() -> None:
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 2, 1, tzinfo=UTC)
    period = ValidityPeriod(start, end)
    assert period.contains(start) and period.contains(end)
    assert not period.contains(datetime(2021, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not period.contains(datetime(2022, 2, 1, 0, 0, 1, tzinfo=UTC))
    assert ValidityPeriod(start).contains(datetime(2999, 1, 1, tzinfo=UTC))


def test_nanosecond_and_offset_timestamps_are_accepted(pgi_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(pgi_doc)
    doc["certificateAuthorities"][0]["validFor"]["start"] = "2021-03-07T03:20:29.123456789Z"
    doc["tlogs"][0]["publicKey"]["validFor"]["start"] = "2021-01-12T12:53:27+01:00"
    root = TrustedRoot.from_json(json.dumps(doc).encode())
    assert root.certificate_authorities[0].valid_for.start.microsecond == 123456
    assert root.tlogs[0].valid_for.start == datetime(2021, 1, 12, 11, 53, 27, tzinfo=UTC)


def _other_ec_key(curve: ec.EllipticCurve) -> str:
    key = ec.generate_private_key(curve).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _ed25519_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return edit


_DELETE = object()
CA1 = "certificateAuthorities/1"
TLOG = "tlogs/0"


def _swap_chain(doc: dict[str, Any]) -> None:
    doc["certificateAuthorities"][1]["certChain"]["certificates"].reverse()


def _unknown_curve(doc: dict[str, Any]) -> None:
    key = doc["tlogs"][0]["publicKey"]
    der = base64.b64decode(key["rawBytes"])
    p256 = bytes.fromhex("06082a8648ce3d030107")  # OID 1.2.840.10045.3.1.7
    assert p256 in der
    key["rawBytes"] = base64.b64encode(der.replace(p256, p256[:-1] + b"\x7f")).decode()


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no media type", _set("mediaType", _DELETE), "document.mediaType: missing"),
    ("foreign media type", _set("mediaType", "application/json"), "mediaType: expected application/vnd"),
    (
        "CAs not a list",
        _set("certificateAuthorities", {}),
        "certificateAuthorities: expected a list, got dict",
    ),
    ("no CAs", _set("certificateAuthorities", []), "no certificate authority"),
    ("no tlogs", _set("tlogs", []), "no transparency log"),
    ("tlogs missing", _set("tlogs", _DELETE), "tlogs: expected a list, got null"),
    ("CA not an object", _set(CA1, "x"), "certificateAuthorities[1]: expected an object, got str"),
    (
        "cert not base64",
        _set(f"{CA1}/certChain/certificates/0/rawBytes", "@@@"),
        "rawBytes: not valid base64",
    ),
    (
        "cert not DER",
        _set(f"{CA1}/certChain/certificates/0/rawBytes", base64.b64encode(b"junk").decode()),
        "certificates[0].rawBytes: not a DER X.509 certificate",
    ),
    (
        "rawBytes a number",
        _set(f"{CA1}/certChain/certificates/0/rawBytes", 7),
        "expected a non-empty string, got int",
    ),
    ("empty chain", _set(f"{CA1}/certChain/certificates", []), "empty certificate chain"),
    ("chain missing", _set(f"{CA1}/certChain", _DELETE), "certChain: expected an object, got null"),
    ("chain out of order", _swap_chain, "not issued by the next certificate"),
    (
        "validFor missing",
        _set(f"{CA1}/validFor", _DELETE),
        "certificateAuthorities[1].validFor: expected an object",
    ),
    ("start missing", _set(f"{CA1}/validFor/start", _DELETE), "validFor.start: missing"),
    ("date without time", _set(f"{CA1}/validFor/start", "2022-04-13"), "expected an RFC 3339 timestamp"),
    (
        "time without zone",
        _set(f"{CA1}/validFor/start", "2022-04-13T20:06:15"),
        "expected an RFC 3339 timestamp",
    ),
    ("impossible date", _set(f"{CA1}/validFor/start", "2022-02-30T00:00:00Z"), "not a valid date-time"),
    ("end before start", _set(f"{CA1}/validFor/end", "2020-01-01T00:00:00Z"), "end 2020-01-01"),
    ("hash algorithm", _set(f"{TLOG}/hashAlgorithm", "MD5"), "hashAlgorithm: expected one of SHA2_256"),
    ("keyId not base64", _set(f"{TLOG}/logId/keyId", "not base64!"), "logId.keyId: not valid base64"),
    ("logId missing", _set(f"{TLOG}/logId", _DELETE), "tlogs[0].logId: expected an object, got null"),
    (
        "key not DER",
        _set(f"{TLOG}/publicKey/rawBytes", base64.b64encode(b"junk").decode()),
        "publicKey.rawBytes: not a DER SubjectPublicKeyInfo",
    ),
    ("key details missing", _set(f"{TLOG}/publicKey/keyDetails", _DELETE), "publicKey.keyDetails: missing"),
    (
        "key details vs type",
        _set(f"{TLOG}/publicKey/keyDetails", "PKIX_ED25519"),
        "PKIX_ED25519 does not match",
    ),
    (
        "key details vs curve",
        _set(f"{TLOG}/publicKey/keyDetails", "PKIX_ECDSA_P384_SHA_384"),
        "PKIX_ECDSA_P384_SHA_384 does not match the P256 key",
    ),
    ("unknown curve", lambda d: _unknown_curve(d), "not a DER SubjectPublicKeyInfo"),
    (
        "tlog validFor missing",
        _set(f"{TLOG}/publicKey/validFor", _DELETE),
        "publicKey.validFor: expected an object",
    ),
    ("ctlogs not a list", _set("ctlogs", "x"), "ctlogs: expected a list, got str"),
]


@pytest.mark.parametrize(("edit", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_root_is_rejected_precisely(
    pgi_doc: dict[str, Any], edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    doc = copy.deepcopy(pgi_doc)
    edit(doc)
    with pytest.raises(ConfigError) as info:
        TrustedRoot.from_json(json.dumps(doc).encode())
    assert expected in str(info.value)
    assert all(p.startswith("trusted root: ") for p in info.value.problems)


def test_every_problem_is_listed_at_once(pgi_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(pgi_doc)
    doc["tlogs"][0]["hashAlgorithm"] = "MD5"
    doc["certificateAuthorities"][0]["validFor"]["start"] = "yesterday"
    doc["ctlogs"][1]["logId"]["keyId"] = "!"
    with pytest.raises(ConfigError) as info:
        TrustedRoot.from_json(json.dumps(doc).encode(), where="keyless.trustedRoot")
    assert len(info.value.problems) == 3
    assert all(p.startswith("keyless.trustedRoot: ") for p in info.value.problems)


def test_other_key_types_are_accepted(pgi_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(pgi_doc)
    doc["tlogs"][0]["publicKey"]["rawBytes"] = _other_ec_key(ec.SECP384R1())
    doc["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ECDSA_P384_SHA_384"
    doc["ctlogs"][0]["publicKey"]["rawBytes"] = _ed25519_key()
    doc["ctlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ED25519"
    # Key details this version does not know are fine when the key decides the scheme.
    doc["ctlogs"][1]["publicKey"]["keyDetails"] = "SOME_FUTURE_DETAIL"
    root = TrustedRoot.from_json(json.dumps(doc).encode())
    assert root.tlogs[0].public_key.key_details == "PKIX_ECDSA_P384_SHA_384"


def test_non_ca_certificate_in_chain_is_rejected(pgi_doc: dict[str, Any], kit: SigstoreKit) -> None:
    leaf = kit.issue_certificate(ec.generate_private_key(ec.SECP256R1()).public_key(), identity="a@b.example")
    doc = copy.deepcopy(pgi_doc)
    der = leaf.public_bytes(serialization.Encoding.DER)
    doc["certificateAuthorities"][0]["certChain"]["certificates"] = [
        {"rawBytes": base64.b64encode(der).decode()}
    ]
    with pytest.raises(ConfigError, match="is not a CA"):
        TrustedRoot.from_json(json.dumps(doc).encode())


def _raw_fields(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node] if "rawBytes" in node else []
        return own + [f for v in node.values() for f in _raw_fields(v)]
    if isinstance(node, list):
        return [f for v in node for f in _raw_fields(v)]
    return []


def test_random_corruption_only_raises_config_errors(pgi_doc: dict[str, Any]) -> None:
    """Seeded corruption of the DER inside the real file: every failure is a listed problem."""
    rnd = random.Random(20221231)
    outcomes: set[str] = set()
    for _ in range(300):
        doc = copy.deepcopy(pgi_doc)
        target = rnd.choice(_raw_fields(doc))
        der = bytearray(base64.b64decode(target["rawBytes"]))
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(der))
            der[at : at + rnd.randint(0, 3)] = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 3)))
        target["rawBytes"] = base64.b64encode(bytes(der)).decode()
        try:
            TrustedRoot.from_json(json.dumps(doc).encode())
            outcomes.add("parsed")
        except ConfigError:
            outcomes.add("rejected")
    assert outcomes == {"parsed", "rejected"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b"[]", "document: expected an object, got list"),
        (b"null", "document: expected an object, got null"),
        (b"{}", "mediaType: missing"),
        (b" " * (4 * 1024 * 1024 + 1), "byte limit"),
    ],
    ids=["empty", "not utf-8", "nesting bomb", "list", "null", "empty object", "oversized"],
)
def test_hostile_documents(data: bytes, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        TrustedRoot.from_json(data)
