"""A private Sigstore instance for tests: Fulcio-like CA, Rekor-like log, trusted root.

Nothing here talks to the network. A :class:`SigstoreKit` holds

* a root CA and an intermediate CA (ECDSA P-384, like Fulcio's), which issue
  ten-minute leaf certificates carrying the Fulcio OIDC issuer extensions
  (``1.3.6.1.4.1.57264.1.1`` raw and ``.1.8`` DER UTF8String) and any other
  Fulcio extension asked for, for any identity (e-mail, URI or otherName SAN);
* a log key (ECDSA P-256, like Rekor's) that writes ``hashedrekord`` v0.0.1
  entries and signs SignedEntryTimestamps over the RFC 8785 canonical JSON of
  ``{body, integratedTime, logID, logIndex}``;
* a CT log key that signs the SCT embedded in every leaf (RFC 6962 precertificate
  SCT, as Fulcio embeds; ``embed_sct=False`` leaves it out);
* the ``dev.sigstore.trustedroot`` JSON that trusts exactly this instance.

Typical use::

    kit = SigstoreKit.create()
    root = TrustedRoot.from_json(kit.trusted_root_json())
    material = kit.sign(payload, identity="dev@example.com", issuer="https://issuer.test")
    sset = material.signature_set(payload)
    verify_keyless(sset, root=root, identities=...)

``material.annotations()`` gives the ``cosign.sigstore.dev/signature``,
``certificate`` and ``bundle`` annotations in the k8s-manifest-sigstore
encoding (certificate and bundle are base64 of gzip). ``kit.log_entry()``
signs an arbitrary entry body so tests can build entries that the log vouches
for but that do not match the signature. Creating a kit costs a few
milliseconds; tests may create one per test.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provider.certs import key_usage
from provider.core.bundle import PayloadKind, SignatureSet
from provider.core.keyless import (
    FULCIO_EXTENSIONS,
    ISSUER_V1_OID,
    ISSUER_V2_OID,
    OTHERNAME_SAN_OID,
    ExtensionEncoding,
    canonical_json,
)

__all__ = ["DEFAULT_ISSUER", "KeylessMaterial", "SigstoreKit", "der_utf8", "pem"]

DEFAULT_ISSUER = "https://oauth2.sigstore.test/auth"
CERT_LIFETIME = timedelta(minutes=10)
# RFC 6962 embedded SCT list extension.
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _new_key(key_type: str) -> CAKey:
    """``ec-p256``, ``ec-p384`` or ``rsa-2048``."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}")


def _signing_hash(key: CAKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) else hashes.SHA256()


def der_utf8(text: str) -> bytes:
    """DER UTF8String, the encoding of Fulcio's v2 extensions and otherName SANs."""
    raw = text.encode("utf-8")
    n = len(raw)
    if n < 0x80:
        return bytes([0x0C, n]) + raw
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + raw


def _der_octet_string(raw: bytes) -> bytes:
    n = len(raw)
    if n < 0x80:
        return bytes([0x04, n]) + raw
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(size)]) + size + raw


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _gzip_b64(data: bytes) -> str:
    return _b64(gzip.compress(data, mtime=0))


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class KeylessMaterial:
    """What cosign attaches to a keyless signature.

    ``signature`` is the raw DER ECDSA signature; ``certificate_pem`` the leaf;
    ``chain_pem`` intermediate then root; ``rekor_bundle_json`` cosign's
    ``{"SignedEntryTimestamp", "Payload": {...}}``.
    """

    signature: bytes
    certificate_pem: bytes
    chain_pem: bytes
    rekor_bundle_json: bytes
    integrated_time: int
    log_index: int

    def signature_set(
        self,
        payload: bytes,
        *,
        index: int = 0,
        payload_kind: PayloadKind = PayloadKind.MESSAGE,
        with_chain: bool = False,
    ) -> SignatureSet:
        """A :class:`SignatureSet` as a source would produce it."""
        return SignatureSet(
            index=index,
            signature=self.signature,
            payload=payload,
            payload_kind=payload_kind,
            certificate=self.certificate_pem,
            chain=self.chain_pem if with_chain else None,
            rekor_bundle=self.rekor_bundle_json,
        )

    def annotations(self, *, index: int = 0, domain: str = "cosign.sigstore.dev") -> dict[str, str]:
        """``signature[_N]``, ``certificate[_N]``, ``bundle[_N]`` annotations (no message)."""
        suffix = f"_{index}" if index else ""
        return {
            f"{domain}/signature{suffix}": _b64(self.signature),
            f"{domain}/certificate{suffix}": _gzip_b64(self.certificate_pem),
            f"{domain}/bundle{suffix}": _gzip_b64(self.rekor_bundle_json),
        }

    def oci_annotations(self) -> dict[str, str]:
        """Layer annotations cosign writes on a ``.sig`` image (signature, certificate, chain, bundle)."""
        return {
            "dev.cosignproject.cosign/signature": _b64(self.signature),
            "dev.sigstore.cosign/certificate": self.certificate_pem.decode("ascii"),
            "dev.sigstore.cosign/chain": self.chain_pem.decode("ascii"),
            "dev.sigstore.cosign/bundle": self.rekor_bundle_json.decode("utf-8"),
        }


@dataclass
class SigstoreKit:
    """A private Sigstore instance (see the module docstring)."""

    root_key: CAKey
    root_cert: x509.Certificate
    intermediate_key: CAKey
    intermediate_cert: x509.Certificate
    rekor_key: ec.EllipticCurvePrivateKey
    ctlog_key: ec.EllipticCurvePrivateKey
    now: datetime
    ca_valid_from: datetime
    ca_valid_until: datetime | None
    tlog_valid_from: datetime
    tlog_valid_until: datetime | None
    fulcio_url: str = "https://fulcio.sigstore.test"
    rekor_url: str = "https://rekor.sigstore.test"
    _log_index: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    @classmethod
    def create(
        cls,
        *,
        now: datetime | None = None,
        ca_valid_from: datetime | None = None,
        ca_valid_until: datetime | None = None,
        tlog_valid_from: datetime | None = None,
        tlog_valid_until: datetime | None = None,
        ca_cert_lifetime: timedelta = timedelta(days=3650),
        ca_key_type: str = "ec-p384",
    ) -> SigstoreKit:
        """A fresh instance. ``now`` (default: the current time) is the default
        integrated time of entries; the CA and log are in service from a year
        before it, with no end, unless told otherwise."""
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        year_ago = now - timedelta(days=365)
        root_key = _new_key(ca_key_type)
        inter_key = _new_key(ca_key_type)
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "sigstore"),
            ]
        )
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate"),
            ]
        )
        root_cert = _ca_cert(
            root_name, root_key, root_name, root_key, year_ago, ca_cert_lifetime, path_length=1
        )
        inter_cert = _ca_cert(
            inter_name, inter_key, root_name, root_key, year_ago, ca_cert_lifetime, path_length=0
        )
        return cls(
            root_key=root_key,
            root_cert=root_cert,
            intermediate_key=inter_key,
            intermediate_cert=inter_cert,
            rekor_key=ec.generate_private_key(ec.SECP256R1()),
            ctlog_key=ec.generate_private_key(ec.SECP256R1()),
            now=now,
            ca_valid_from=ca_valid_from or year_ago,
            ca_valid_until=ca_valid_until,
            tlog_valid_from=tlog_valid_from or year_ago,
            tlog_valid_until=tlog_valid_until,
        )

    # -- trusted root ------------------------------------------------------------

    @property
    def log_id(self) -> bytes:
        """Rekor's log ID: SHA-256 of the log key's DER SubjectPublicKeyInfo."""
        return hashlib.sha256(_spki(self.rekor_key.public_key())).digest()

    def trusted_root(self) -> dict[str, Any]:
        """The ``dev.sigstore.trustedroot`` document as a dict (tests may edit it)."""
        ca_valid: dict[str, str] = {"start": _ts(self.ca_valid_from)}
        if self.ca_valid_until is not None:
            ca_valid["end"] = _ts(self.ca_valid_until)
        tlog_valid: dict[str, str] = {"start": _ts(self.tlog_valid_from)}
        if self.tlog_valid_until is not None:
            tlog_valid["end"] = _ts(self.tlog_valid_until)
        der = serialization.Encoding.DER
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": self.rekor_url,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(_spki(self.rekor_key.public_key())),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": tlog_valid,
                    },
                    "logId": {"keyId": _b64(self.log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "sigstore.test", "commonName": "sigstore"},
                    "uri": self.fulcio_url,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.intermediate_cert.public_bytes(der))},
                            {"rawBytes": _b64(self.root_cert.public_bytes(der))},
                        ]
                    },
                    "validFor": ca_valid,
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": "https://ctfe.sigstore.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(_spki(self.ctlog_key.public_key())),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": _ts(self.tlog_valid_from)},
                    },
                    "logId": {"keyId": _b64(hashlib.sha256(_spki(self.ctlog_key.public_key())).digest())},
                }
            ],
        }

    def trusted_root_json(self) -> bytes:
        return json.dumps(self.trusted_root(), indent=2).encode("utf-8")

    # -- Fulcio ------------------------------------------------------------------

    def issue_certificate(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *,
        identity: str,
        issuer: str | None = DEFAULT_ISSUER,
        extensions: Mapping[str, str] | None = None,
        san_kind: str = "auto",
        not_before: datetime | None = None,
        lifetime: timedelta = CERT_LIFETIME,
        issuer_v1: bool = True,
        issuer_v2: bool = True,
        code_signing: bool = True,
        is_ca: bool = False,
        raw_extensions: Mapping[str, bytes] | None = None,
        embed_sct: bool = True,
        sct_key: ec.EllipticCurvePrivateKey | None = None,
        sct_time: datetime | None = None,
    ) -> x509.Certificate:
        """A Fulcio-style leaf: empty subject, critical SAN, codeSigning EKU.

        ``san_kind`` is ``email``, ``uri``, ``othername`` or ``auto`` (URI when
        the identity has ``://``, e-mail when it has ``@``, otherName else).
        ``extensions`` use :data:`provider.core.keyless.FULCIO_EXTENSIONS`
        names; ``raw_extensions`` adds extension values by dotted OID as given.
        With ``embed_sct`` the certificate carries an SCT signed by the kit's CT
        log key (or ``sct_key``) over its precertificate, as Fulcio's does.
        """
        start = not_before or (self.now - timedelta(minutes=1))
        if san_kind == "auto":
            san_kind = "uri" if "://" in identity else "email" if "@" in identity else "othername"
        general_name: x509.GeneralName
        if san_kind == "email":
            general_name = x509.RFC822Name(identity)
        elif san_kind == "uri":
            general_name = x509.UniformResourceIdentifier(identity)
        elif san_kind == "othername":
            general_name = x509.OtherName(OTHERNAME_SAN_OID, der_utf8(identity))
        else:
            raise ValueError(f"unknown san_kind {san_kind!r}")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.SubjectAlternativeName([general_name]), critical=True)
            .add_extension(
                key_usage(digital_signature=True, key_cert_sign=is_ca),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                critical=False,
            )
        )
        if is_ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        eku = [ExtendedKeyUsageOID.CODE_SIGNING] if code_signing else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if issuer is not None and issuer_v1:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ISSUER_V1_OID, issuer.encode("utf-8")), critical=False
            )
        if issuer is not None and issuer_v2:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ISSUER_V2_OID, der_utf8(issuer)), critical=False
            )
        for name, value in (extensions or {}).items():
            spec = FULCIO_EXTENSIONS[name]
            raw = value.encode("utf-8") if spec.encoding is ExtensionEncoding.RAW else der_utf8(value)
            builder = builder.add_extension(x509.UnrecognizedExtension(spec.oid, raw), critical=False)
        for dotted, raw in (raw_extensions or {}).items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(dotted), raw), critical=False
            )
        digest = _signing_hash(self.intermediate_key)
        if not embed_sct:
            return builder.sign(self.intermediate_key, digest)
        # The precertificate's TBS is the final TBS without the SCT extension,
        # so sign the certificate once without it to learn the bytes to log.
        precert = builder.sign(self.intermediate_key, digest)
        sct = self._sct(precert.tbs_certificate_bytes, sct_key or self.ctlog_key, sct_time or start)
        builder = builder.add_extension(x509.UnrecognizedExtension(SCT_LIST_OID, sct), critical=False)
        return builder.sign(self.intermediate_key, digest)

    def _sct(self, tbs: bytes, key: ec.EllipticCurvePrivateKey, when: datetime) -> bytes:
        """The DER extension value holding one RFC 6962 v1 precertificate SCT."""
        issuer_spki = self.intermediate_cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        millis = int(when.timestamp()) * 1000
        signed = b"".join(
            [
                b"\x00\x00",
                millis.to_bytes(8, "big"),
                b"\x00\x01",
                hashlib.sha256(issuer_spki).digest(),
                len(tbs).to_bytes(3, "big"),
                tbs,
                b"\x00\x00",
            ]
        )
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(_spki(self.ctlog_key.public_key())).digest()
        sct = b"".join(
            [
                b"\x00",
                log_id,
                millis.to_bytes(8, "big"),
                b"\x00\x00",  # no extensions
                b"\x04\x03",  # sha256, ecdsa
                len(signature).to_bytes(2, "big"),
                signature,
            ]
        )
        item = len(sct).to_bytes(2, "big") + sct
        sct_list = len(item).to_bytes(2, "big") + item
        return _der_octet_string(sct_list)

    @property
    def chain_pem(self) -> bytes:
        return pem(self.intermediate_cert) + pem(self.root_cert)

    # -- Rekor -------------------------------------------------------------------

    @staticmethod
    def hashedrekord_body(signature: bytes, certificate_pem: bytes, payload: bytes) -> dict[str, Any]:
        """A ``hashedrekord`` v0.0.1 entry body as Rekor stores it."""
        return {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(certificate_pem)}},
            },
        }

    @staticmethod
    def rekord_body(signature: bytes, certificate_pem: bytes, payload: bytes) -> dict[str, Any]:
        """A legacy ``rekord`` v0.0.1 entry body (x509 format, digest of the data)."""
        return {
            "apiVersion": "0.0.1",
            "kind": "rekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {
                    "format": "x509",
                    "content": _b64(signature),
                    "publicKey": {"content": _b64(certificate_pem)},
                },
            },
        }

    def log_entry(
        self,
        body: Mapping[str, Any] | bytes,
        *,
        integrated_time: int | None = None,
        log_index: int | None = None,
    ) -> bytes:
        """cosign's Rekor bundle JSON for ``body``, with a SET by this log's key."""
        body_bytes = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        payload: dict[str, str | int] = {
            "body": _b64(body_bytes),
            "integratedTime": int(self.now.timestamp()) if integrated_time is None else integrated_time,
            "logIndex": next(self._log_index) if log_index is None else log_index,
            "logID": self.log_id.hex(),
        }
        signed = self.rekor_key.sign(canonical_json(payload), ec.ECDSA(hashes.SHA256()))
        return json.dumps({"SignedEntryTimestamp": _b64(signed), "Payload": payload}).encode("utf-8")

    # -- cosign ------------------------------------------------------------------

    def sign(
        self,
        payload: bytes,
        *,
        identity: str,
        issuer: str | None = DEFAULT_ISSUER,
        extensions: Mapping[str, str] | None = None,
        integrated_time: int | None = None,
        entry_kind: str = "hashedrekord",
        key_type: str = "ec-p256",
        **certificate_options: Any,
    ) -> KeylessMaterial:
        """Sign like ``cosign sign-blob`` with an OIDC token for ``identity``.

        A fresh key (``key_type``: ``ec-p256``, ``ec-p384``, ``rsa-2048``) gets a certificate (``certificate_options`` go to
        :meth:`issue_certificate`), signs ``payload`` (ECDSA or RSA PKCS#1 v1.5, SHA-256), and the
        log records a ``hashedrekord`` (or ``rekord``) entry at
        ``integrated_time`` (default: ``kit.now``).
        """
        key = _new_key(key_type)
        cert = self.issue_certificate(
            key.public_key(), identity=identity, issuer=issuer, extensions=extensions, **certificate_options
        )
        cert_pem = pem(cert)
        if isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        maker = self.rekord_body if entry_kind == "rekord" else self.hashedrekord_body
        when = int(self.now.timestamp()) if integrated_time is None else integrated_time
        bundle = self.log_entry(maker(signature, cert_pem, payload), integrated_time=when)
        index = json.loads(bundle)["Payload"]["logIndex"]
        return KeylessMaterial(
            signature=signature,
            certificate_pem=cert_pem,
            chain_pem=self.chain_pem,
            rekor_bundle_json=bundle,
            integrated_time=when,
            log_index=index,
        )


def _ca_cert(
    subject: x509.Name,
    subject_key: CAKey,
    issuer: x509.Name,
    issuer_key: CAKey,
    not_before: datetime,
    lifetime: timedelta,
    *,
    path_length: int | None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(issuer_key, _signing_hash(issuer_key))
    )
