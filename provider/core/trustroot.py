"""The trusted root of a Sigstore instance, read from a local file.

Keyless verification trusts exactly what this file says: the Fulcio
certificate authorities (certificate chains, each with the period in which it
may have issued certificates) and the Rekor transparency logs (public key,
log ID, validity period). The format is ``dev.sigstore.trustedroot`` JSON
(``application/vnd.dev.sigstore.trustedroot+json``), the file that
``cosign`` and ``sigstore-python`` use, so a private Sigstore instance works by
handing its own file to the configuration. Nothing here touches the network.

Parsing validates everything up front and lists every problem at once in a
:class:`provider.errors.ConfigError`; a :class:`TrustedRoot` in memory is
always well formed.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from provider.errors import ConfigError

log = logging.getLogger(__name__)

MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.trustedroot"
# A trusted root is a few kilobytes; anything much larger is not one.
MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024

# RFC 3339 as protobuf's JSON mapping writes google.protobuf.Timestamp:
# always a full date-time with an explicit offset (normally "Z").
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


class HashAlgorithm(enum.StrEnum):
    """``hashAlgorithm`` of a log (the hash of its Merkle tree)."""

    SHA2_256 = "SHA2_256"
    SHA2_384 = "SHA2_384"
    SHA2_512 = "SHA2_512"
    SHA3_256 = "SHA3_256"
    SHA3_384 = "SHA3_384"


@dataclass(frozen=True, slots=True)
class ValidityPeriod:
    """``validFor``: when a CA or log key was in service. ``end`` None = still is."""

    start: datetime
    end: datetime | None = None

    def contains(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)

    def __str__(self) -> str:
        end = self.end.isoformat() if self.end is not None else "open"
        return f"{self.start.isoformat()} .. {end}"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A log's public key and the signature scheme it is used with.

    ``verify`` never raises for a bad signature; it returns False.
    """

    # Key objects are not hashable; equality and hashing go by the DER bytes.
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey = field(compare=False)
    key_details: str
    der: bytes

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, data, ec.ECDSA(_ec_hash(self.key.curve)))
            elif isinstance(self.key, rsa.RSAPublicKey):
                if "PSS" in self.key_details:
                    pss = padding.PSS(mgf=padding.MGF1(_rsa_hash(self.key_details)), salt_length=32)
                    self.key.verify(signature, data, pss, _rsa_hash(self.key_details))
                else:
                    self.key.verify(signature, data, padding.PKCS1v15(), _rsa_hash(self.key_details))
            else:
                self.key.verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


def _ec_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    # The hash follows the curve, as in every PKIX_ECDSA_* key detail.
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    if isinstance(curve, ec.SECP521R1):
        return hashes.SHA512()
    return hashes.SHA256()


def _rsa_hash(key_details: str) -> hashes.HashAlgorithm:
    if key_details.endswith("SHA384"):
        return hashes.SHA384()
    if key_details.endswith("SHA512"):
        return hashes.SHA512()
    return hashes.SHA256()


@dataclass(frozen=True, slots=True)
class TransparencyLog:
    """A Rekor (``tlogs``) or CT (``ctlogs``) log.

    ``log_id`` is the raw bytes of ``logId.keyId`` (for Rekor: the SHA-256 of
    the DER public key); a Rekor bundle names it in hex as ``logID``.
    """

    base_url: str
    hash_algorithm: HashAlgorithm
    log_id: bytes
    public_key: VerificationKey
    valid_for: ValidityPeriod


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A Fulcio CA: its chain, issuing certificate first and trust anchor last."""

    uri: str
    subject: str
    certificates: tuple[x509.Certificate, ...]
    valid_for: ValidityPeriod

    @property
    def anchor(self) -> x509.Certificate:
        return self.certificates[-1]


@dataclass(frozen=True, slots=True)
class TrustedRoot:
    """Every CA and log of one trusted root file (see the module docstring)."""

    media_type: str
    certificate_authorities: tuple[CertificateAuthority, ...]
    tlogs: tuple[TransparencyLog, ...]
    ctlogs: tuple[TransparencyLog, ...] = ()

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "trusted root") -> TrustedRoot:
        """Parse and validate a ``dev.sigstore.trustedroot`` JSON document.

        Raises :class:`ConfigError` listing every problem found.
        """
        if len(data) > MAX_TRUSTED_ROOT_BYTES:
            raise ConfigError([f"{where}: {len(data)} bytes exceeds the {MAX_TRUSTED_ROOT_BYTES} byte limit"])
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ConfigError([f"{where}: not JSON ({_short(exc)})"]) from exc
        parser = _Parser(where)
        root = parser.root(doc)
        if parser.problems or root is None:
            raise ConfigError(parser.problems)
        log.debug(
            "trusted root parsed",
            extra={"cas": len(root.certificate_authorities), "tlogs": len(root.tlogs)},
        )
        return root

    @classmethod
    def from_file(cls, path: Path) -> TrustedRoot:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"trusted root {path}: cannot read ({exc.strerror or exc})"]) from exc
        return cls.from_json(data, where=f"trusted root {path}")

    def tlogs_for(self, log_id: bytes) -> tuple[TransparencyLog, ...]:
        """The Rekor logs whose ``logId.keyId`` equals ``log_id``."""
        return tuple(t for t in self.tlogs if t.log_id == log_id)


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 120 else text[:117] + "..."


class _Parser:
    """Walks the JSON document collecting problems instead of stopping at the first."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{self.where}: {path}: {text}")

    # -- generic field readers -------------------------------------------------

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, f"expected an object, got {_type(value)}")
            return None
        return value

    def sequence(self, value: Any, path: str, *, required: bool) -> Sequence[Any]:
        if value is None and not required:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {_type(value)}")
            return ()
        return value

    def string(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.problem(f"{path}.{key}", "missing")
            return None
        if not isinstance(value, str) or not value:
            self.problem(f"{path}.{key}", f"expected a non-empty string, got {_type(value)}")
            return None
        return value

    def raw_bytes(self, obj: Mapping[str, Any], key: str, path: str) -> bytes | None:
        text = self.string(obj, key, path)
        if text is None:
            return None
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.problem(f"{path}.{key}", "not valid base64")
            return None

    def timestamp(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool) -> datetime | None:
        text = self.string(obj, key, path, required=required)
        if text is None:
            return None
        if not _RFC3339.fullmatch(text):
            self.problem(
                f"{path}.{key}", f"expected an RFC 3339 timestamp like 2022-04-13T20:06:15Z, got {text!r:.60}"
            )
            return None
        # Python keeps microseconds; protobuf may write nanoseconds.
        trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text)
        try:
            return datetime.fromisoformat(trimmed).astimezone(UTC)
        except ValueError:
            self.problem(f"{path}.{key}", f"not a valid date-time: {text!r:.60}")
            return None

    def validity(self, value: Any, path: str) -> ValidityPeriod | None:
        obj = self.mapping(value, path)
        if obj is None:
            return None
        start = self.timestamp(obj, "start", path, required=True)
        end = self.timestamp(obj, "end", path, required=False)
        if start is None:
            return None
        if end is not None and end < start:
            self.problem(path, f"end {end.isoformat()} is before start {start.isoformat()}")
            return None
        return ValidityPeriod(start=start, end=end)

    # -- document structure ----------------------------------------------------

    def root(self, doc: Any) -> TrustedRoot | None:
        obj = self.mapping(doc, "document")
        if obj is None:
            return None
        media_type = self.string(obj, "mediaType", "document")
        if media_type is not None and not media_type.startswith(MEDIA_TYPE_PREFIX):
            self.problem(
                "mediaType", f"expected {MEDIA_TYPE_PREFIX}+json;version=..., got {media_type!r:.80}"
            )
        cas = tuple(
            ca
            for i, item in enumerate(
                self.sequence(obj.get("certificateAuthorities"), "certificateAuthorities", required=True)
            )
            if (ca := self.authority(item, f"certificateAuthorities[{i}]")) is not None
        )
        tlogs = tuple(
            t
            for i, item in enumerate(self.sequence(obj.get("tlogs"), "tlogs", required=True))
            if (t := self.tlog(item, f"tlogs[{i}]")) is not None
        )
        ctlogs = tuple(
            t
            for i, item in enumerate(self.sequence(obj.get("ctlogs"), "ctlogs", required=False))
            if (t := self.tlog(item, f"ctlogs[{i}]")) is not None
        )
        if not self.problems and not cas:
            self.problem(
                "certificateAuthorities", "no certificate authority: keyless signatures could never verify"
            )
        if not self.problems and not tlogs:
            self.problem("tlogs", "no transparency log: keyless signatures could never verify")
        if self.problems or media_type is None:
            return None
        return TrustedRoot(media_type=media_type, certificate_authorities=cas, tlogs=tlogs, ctlogs=ctlogs)

    def authority(self, value: Any, path: str) -> CertificateAuthority | None:
        obj = self.mapping(value, path)
        if obj is None:
            return None
        before = len(self.problems)
        uri = self.string(obj, "uri", path, required=False) or ""
        subject = self._subject(obj.get("subject"), f"{path}.subject")
        valid_for = self.validity(obj.get("validFor"), f"{path}.validFor")
        chain_obj = self.mapping(obj.get("certChain"), f"{path}.certChain")
        certs: list[x509.Certificate] = []
        if chain_obj is not None:
            items = self.sequence(
                chain_obj.get("certificates"), f"{path}.certChain.certificates", required=True
            )
            if not items and isinstance(chain_obj.get("certificates"), list):
                self.problem(f"{path}.certChain.certificates", "empty certificate chain")
            for j, item in enumerate(items):
                cpath = f"{path}.certChain.certificates[{j}]"
                cobj = self.mapping(item, cpath)
                der = self.raw_bytes(cobj, "rawBytes", cpath) if cobj is not None else None
                if der is None:
                    continue
                try:
                    cert = x509.load_der_x509_certificate(der)
                    # Extensions and keys parse lazily; a broken one must fail here, not mid-verification.
                    _ = cert.extensions, cert.public_key()
                    certs.append(cert)
                except (ValueError, UnsupportedAlgorithm) as exc:
                    self.problem(f"{cpath}.rawBytes", f"not a DER X.509 certificate ({_short(exc)})")
        if len(self.problems) > before or valid_for is None:
            return None
        self._check_links(certs, f"{path}.certChain.certificates")
        if len(self.problems) > before:
            return None
        return CertificateAuthority(uri=uri, subject=subject, certificates=tuple(certs), valid_for=valid_for)

    def _subject(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        obj = self.mapping(value, path)
        if obj is None:
            return ""
        parts = [f"{k}={v}" for k, v in sorted(obj.items()) if isinstance(v, str)]
        return ", ".join(parts)

    def _check_links(self, certs: Sequence[x509.Certificate], path: str) -> None:
        # Every certificate of a chain must be issued by the next one; the last
        # is the trust anchor (normally self-signed, but an intermediate may be
        # pinned on its own). A chain that does not link is a broken file.
        for j, cert in enumerate(certs):
            if not _is_ca(cert):
                self.problem(f"{path}[{j}]", f"certificate {cert.subject.rfc4514_string()!r} is not a CA")
            if j + 1 < len(certs):
                try:
                    cert.verify_directly_issued_by(certs[j + 1])
                except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
                    self.problem(
                        f"{path}[{j}]",
                        f"not issued by the next certificate {certs[j + 1].subject.rfc4514_string()!r} "
                        f"({_short(exc) if str(exc) else 'signature does not verify'})",
                    )

    def tlog(self, value: Any, path: str) -> TransparencyLog | None:
        obj = self.mapping(value, path)
        if obj is None:
            return None
        before = len(self.problems)
        base_url = self.string(obj, "baseUrl", path, required=False) or ""
        hash_name = self.string(obj, "hashAlgorithm", path)
        hash_algorithm: HashAlgorithm | None = None
        if hash_name is not None:
            try:
                hash_algorithm = HashAlgorithm(hash_name)
            except ValueError:
                choices = ", ".join(h.value for h in HashAlgorithm)
                self.problem(f"{path}.hashAlgorithm", f"expected one of {choices}, got {hash_name!r:.40}")
        log_id_obj = self.mapping(obj.get("logId"), f"{path}.logId")
        log_id = self.raw_bytes(log_id_obj, "keyId", f"{path}.logId") if log_id_obj is not None else None
        key: VerificationKey | None = None
        valid_for: ValidityPeriod | None = None
        key_obj = self.mapping(obj.get("publicKey"), f"{path}.publicKey")
        if key_obj is not None:
            key = self.public_key(key_obj, f"{path}.publicKey")
            valid_for = self.validity(key_obj.get("validFor"), f"{path}.publicKey.validFor")
        if len(self.problems) > before or hash_algorithm is None or log_id is None or key is None:
            return None
        if valid_for is None:
            return None
        return TransparencyLog(
            base_url=base_url,
            hash_algorithm=hash_algorithm,
            log_id=log_id,
            public_key=key,
            valid_for=valid_for,
        )

    def public_key(self, obj: Mapping[str, Any], path: str) -> VerificationKey | None:
        der = self.raw_bytes(obj, "rawBytes", path)
        details = self.string(obj, "keyDetails", path)
        if der is None or details is None:
            return None
        try:
            key = load_der_public_key(der)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            self.problem(f"{path}.rawBytes", f"not a DER SubjectPublicKeyInfo ({_short(exc)})")
            return None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            self.problem(f"{path}.rawBytes", f"unsupported key type {type(key).__name__}")
            return None
        # Key details name the scheme; they must agree with the key itself.
        # Unknown details are accepted when the key type alone decides the scheme.
        if isinstance(key, ec.EllipticCurvePublicKey):
            family = "PKIX_ECDSA"
        elif isinstance(key, rsa.RSAPublicKey):
            family = "PKIX_RSA"
        else:
            family = "PKIX_ED25519"
        known = ("PKIX_ECDSA", "PKIX_RSA", "PKIX_ED25519")
        if details.startswith(known) and not details.startswith(family):
            self.problem(
                f"{path}.keyDetails", f"{details} does not match the {type(key).__name__} in rawBytes"
            )
            return None
        if isinstance(key, ec.EllipticCurvePublicKey):
            curve_tag = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}.get(key.curve.name)
            if curve_tag is None:
                self.problem(f"{path}.rawBytes", f"unsupported curve {key.curve.name}")
                return None
            if details.startswith("PKIX_ECDSA_P") and not details.startswith(f"PKIX_ECDSA_{curve_tag}"):
                self.problem(
                    f"{path}.keyDetails", f"{details} does not match the {curve_tag} key in rawBytes"
                )
                return None
        return VerificationKey(key=key, key_details=details, der=der)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
