"""Offline keyless verification: Fulcio certificate + Rekor entry, no network.

A keyless signature set carries a short-lived Fulcio certificate (PEM), an
optional certificate chain, and cosign's Rekor bundle: the transparency-log
entry (``body``, ``integratedTime``, ``logIndex``, ``logID``) with the log's
SignedEntryTimestamp (SET) over it. Everything needed to verify is local: the
trusted root (:mod:`provider.core.trustroot`) pins the CAs and log keys.

:func:`verify_keyless` walks a fixed checklist; each step raises its own
precise error:

1. parse the material (certificate, chain, bundle) - :class:`FormatError`;
2. the certificate chains to a trusted Fulcio CA, with every certificate and
   the CA itself valid at the Rekor *integrated time* (Fulcio certificates
   live ten minutes; the log proves the signature existed while it was
   valid) - :class:`SignatureError`; when the trusted root lists CT logs, an
   embedded SCT from one of them must verify too;
3. the SET verifies with the trusted log key named by ``logID``, and that key
   was in service at the integrated time - :class:`SignatureError`;
4. the log entry binds this signature, this certificate and the SHA-256 of
   this payload - :class:`SignatureError`;
5. the signature verifies over the payload with the certificate's key -
   :class:`SignatureError`;
6. the certificate's identity (SAN) and OIDC issuer, and any required Fulcio
   extensions, match a trusted :class:`KeylessIdentity` - otherwise
   :class:`UntrustedSignerError`. An empty identity list trusts no one.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import logging
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from provider.core.bundle import SignatureSet
from provider.core.trustroot import CertificateAuthority, TransparencyLog, TrustedRoot
from provider.core.verdict import Signer, SignerKind
from provider.errors import ConfigError, FormatError, LimitExceededError, SignatureError, UntrustedSignerError

log = logging.getLogger(__name__)

# Certificates, chains and Rekor bundles are a few kilobytes each.
MAX_MATERIAL_BYTES = 1024 * 1024
# Fulcio issues leaf <- intermediate <- root; leave room for one more level.
MAX_CHAIN_DEPTH = 5
# Certificates accepted in a signature's own chain; each may cost a signature check.
MAX_CHAIN_CERTIFICATES = 10

FULCIO_OID_PREFIX = "1.3.6.1.4.1.57264.1"
# The OIDC issuer: .1.1 holds the raw string (deprecated), .1.8 a DER UTF8String.
ISSUER_V1_OID = x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.1")
ISSUER_V2_OID = x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.8")
# SAN otherName used by Fulcio for identities that are neither e-mail nor URI.
OTHERNAME_SAN_OID = x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.7")


class ExtensionEncoding(enum.Enum):
    """How a Fulcio extension stores its string."""

    # .1.2-.1.6: the extension value is the string's bytes, no DER wrapping.
    RAW = "raw"
    # .1.8 onwards: the extension value is a DER UTF8String.
    DER_UTF8 = "der-utf8"


@dataclass(frozen=True, slots=True)
class FulcioExtension:
    """A Fulcio certificate extension a policy may require."""

    name: str
    oid: x509.ObjectIdentifier
    encoding: ExtensionEncoding


def _ext(name: str, arc: int, encoding: ExtensionEncoding) -> tuple[str, FulcioExtension]:
    return name, FulcioExtension(name, x509.ObjectIdentifier(f"{FULCIO_OID_PREFIX}.{arc}"), encoding)


_RAW, _DER = ExtensionEncoding.RAW, ExtensionEncoding.DER_UTF8
#: The extension vocabulary of ``extensions:`` in identities, named as Fulcio
#: and cosign name them. The OIDC issuer is not here: it has its own field.
FULCIO_EXTENSIONS: Mapping[str, FulcioExtension] = types.MappingProxyType(
    dict(
        [
            _ext("githubWorkflowTrigger", 2, _RAW),
            _ext("githubWorkflowSHA", 3, _RAW),
            _ext("githubWorkflowName", 4, _RAW),
            _ext("githubWorkflowRepository", 5, _RAW),
            _ext("githubWorkflowRef", 6, _RAW),
            _ext("buildSignerURI", 9, _DER),
            _ext("buildSignerDigest", 10, _DER),
            _ext("runnerEnvironment", 11, _DER),
            _ext("sourceRepositoryURI", 12, _DER),
            _ext("sourceRepositoryDigest", 13, _DER),
            _ext("sourceRepositoryRef", 14, _DER),
            _ext("sourceRepositoryIdentifier", 15, _DER),
            _ext("sourceRepositoryOwnerURI", 16, _DER),
            _ext("sourceRepositoryOwnerIdentifier", 17, _DER),
            _ext("buildConfigURI", 18, _DER),
            _ext("buildConfigDigest", 19, _DER),
            _ext("buildTrigger", 20, _DER),
            _ext("runInvocationURI", 21, _DER),
            _ext("sourceRepositoryVisibilityAtSigning", 22, _DER),
        ]
    )
)


# --------------------------------------------------------------------------
# Identities (policy)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeylessIdentity:
    """Who may sign keylessly: an OIDC issuer, a certificate identity, extensions.

    Exactly one of ``issuer``/``issuer_regexp`` and one of
    ``subject``/``subject_regexp`` is set. Regular expressions must match the
    whole value (``re.fullmatch``). ``extensions`` maps names from
    :data:`FULCIO_EXTENSIONS` to the exact value required.
    """

    issuer: str | None = None
    issuer_regexp: re.Pattern[str] | None = None
    subject: str | None = None
    subject_regexp: re.Pattern[str] | None = None
    extensions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        problems = _identity_problems(self.issuer, self.issuer_regexp, self.subject, self.subject_regexp)
        problems += [
            f"unknown Fulcio extension {name!r}" for name in self.extensions if name not in FULCIO_EXTENSIONS
        ]
        if problems:
            raise ConfigError(problems)
        # A frozen identity must not change under a caller's feet.
        object.__setattr__(self, "extensions", types.MappingProxyType(dict(sorted(self.extensions.items()))))

    def matches_issuer(self, issuer: str | None) -> bool:
        if issuer is None:
            return False
        if self.issuer_regexp is not None:
            return self.issuer_regexp.fullmatch(issuer) is not None
        return issuer == self.issuer

    def matching_subject(self, subjects: Sequence[str]) -> str | None:
        """The first certificate identity this policy accepts, if any."""
        for subject in subjects:
            if self.subject_regexp is not None:
                if self.subject_regexp.fullmatch(subject) is not None:
                    return subject
            elif subject == self.subject:
                return subject
        return None

    def describe(self) -> str:
        issuer = f"issuer~/{self.issuer_regexp.pattern}/" if self.issuer_regexp else f"issuer={self.issuer!r}"
        subject = (
            f"subject~/{self.subject_regexp.pattern}/" if self.subject_regexp else f"subject={self.subject!r}"
        )
        extra = "".join(f", {k}={v!r}" for k, v in self.extensions.items())
        return f"{subject}, {issuer}{extra}"


def _identity_problems(
    issuer: str | None,
    issuer_regexp: re.Pattern[str] | None,
    subject: str | None,
    subject_regexp: re.Pattern[str] | None,
) -> list[str]:
    problems: list[str] = []
    if (issuer is None) == (issuer_regexp is None):
        problems.append("exactly one of issuer and issuerRegExp must be given")
    if (subject is None) == (subject_regexp is None):
        problems.append("exactly one of subject and subjectRegExp must be given")
    return problems


_IDENTITY_KEYS = ("issuer", "issuerRegExp", "subject", "subjectRegExp", "extensions")


def parse_identities(data: Any, *, where: str) -> tuple[KeylessIdentity, ...]:
    """Identities from configuration, in cosign's vocabulary.

    ``data`` is a list of mappings with ``issuer`` or ``issuerRegExp``,
    ``subject`` or ``subjectRegExp``, and optional ``extensions`` (a mapping
    of Fulcio extension names to exact values). Raises :class:`ConfigError`
    listing every problem, each prefixed with ``where[i].key``.
    """
    if not isinstance(data, list):
        raise ConfigError([f"{where}: expected a list of identities, got {_type(data)}"])
    problems: list[str] = []
    out: list[KeylessIdentity] = []
    for i, entry in enumerate(data):
        path = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{path}: expected a mapping, got {_type(entry)}")
            continue
        before = len(problems)
        for key in entry:
            if key not in _IDENTITY_KEYS:
                problems.append(
                    f"{path}: unknown key {str(key)!r:.60} (expected one of {', '.join(_IDENTITY_KEYS)})"
                )
        issuer = _config_string(entry, "issuer", path, problems)
        subject = _config_string(entry, "subject", path, problems)
        issuer_re = _config_regexp(entry, "issuerRegExp", path, problems)
        subject_re = _config_regexp(entry, "subjectRegExp", path, problems)
        # Judged on which keys are present: a present but invalid value already has its own problem.
        if ("issuer" in entry) == ("issuerRegExp" in entry):
            problems.append(f"{path}: exactly one of issuer and issuerRegExp must be given")
        if ("subject" in entry) == ("subjectRegExp" in entry):
            problems.append(f"{path}: exactly one of subject and subjectRegExp must be given")
        extensions = _config_extensions(entry.get("extensions"), f"{path}.extensions", problems)
        if len(problems) == before:
            out.append(KeylessIdentity(issuer, issuer_re, subject, subject_re, extensions))
    if problems:
        raise ConfigError(problems)
    return tuple(out)


def identity_from_cli(
    identity: str | None,
    identity_regexp: str | None,
    issuer: str | None,
    issuer_regexp: str | None,
) -> KeylessIdentity:
    """The identity cosign's ``--certificate-identity[-regexp]`` and
    ``--certificate-oidc-issuer[-regexp]`` flags describe. As in cosign, both
    an identity and an issuer are required. Raises :class:`ConfigError`."""
    problems: list[str] = []
    if identity is None and identity_regexp is None:
        problems.append("--certificate-identity or --certificate-identity-regexp is required for keyless")
    if identity is not None and identity_regexp is not None:
        problems.append("--certificate-identity and --certificate-identity-regexp are mutually exclusive")
    if issuer is None and issuer_regexp is None:
        problems.append(
            "--certificate-oidc-issuer or --certificate-oidc-issuer-regexp is required for keyless"
        )
    if issuer is not None and issuer_regexp is not None:
        problems.append(
            "--certificate-oidc-issuer and --certificate-oidc-issuer-regexp are mutually exclusive"
        )
    for flag, value in (("--certificate-identity", identity), ("--certificate-oidc-issuer", issuer)):
        if value is not None and not value:
            problems.append(f"{flag} must not be empty")
    subject_re = _compile(identity_regexp, "--certificate-identity-regexp", problems)
    issuer_re = _compile(issuer_regexp, "--certificate-oidc-issuer-regexp", problems)
    if problems:
        raise ConfigError(problems)
    return KeylessIdentity(
        issuer=issuer, issuer_regexp=issuer_re, subject=identity, subject_regexp=subject_re
    )


def _compile(pattern: str | None, where: str, problems: list[str]) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    if not pattern:
        problems.append(f"{where}: empty regular expression")
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        problems.append(f"{where}: invalid regular expression ({exc})")
        return None


def _config_string(entry: Mapping[str, Any], key: str, path: str, problems: list[str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{path}.{key}: expected a non-empty string, got {_type(value)}")
        return None
    return value


def _type(value: Any) -> str:
    if value == "":
        return "an empty string"
    return "null" if value is None else type(value).__name__


def _config_regexp(
    entry: Mapping[str, Any], key: str, path: str, problems: list[str]
) -> re.Pattern[str] | None:
    text = _config_string(entry, key, path, problems)
    return _compile(text, f"{path}.{key}", problems)


def _config_extensions(value: Any, path: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{path}: expected a mapping of extension name to value, got {_type(value)}")
        return {}
    out: dict[str, str] = {}
    for name, required in value.items():
        if name not in FULCIO_EXTENSIONS:
            problems.append(
                f"{path}: unknown Fulcio extension {str(name)!r:.60} "
                f"(known: {', '.join(FULCIO_EXTENSIONS)}; the issuer has its own key)"
            )
        elif not isinstance(required, str) or not required:
            problems.append(f"{path}.{name}: expected a non-empty string, got {_type(required)}")
        else:
            out[name] = required
    return out


# --------------------------------------------------------------------------
# Material
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RekorEntry:
    """cosign's Rekor bundle: the log entry and its SignedEntryTimestamp."""

    signed_entry_timestamp: bytes
    body: str  # base64 text, exactly as signed
    integrated_time: int
    log_index: int
    log_id: str  # hex text, exactly as signed

    @property
    def integrated_at(self) -> datetime:
        return datetime.fromtimestamp(self.integrated_time, UTC)

    def canonical_payload(self) -> bytes:
        """RFC 8785 canonical JSON of the four fields the SET signs."""
        return canonical_json(
            {
                "body": self.body,
                "integratedTime": self.integrated_time,
                "logID": self.log_id,
                "logIndex": self.log_index,
            }
        )


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the leaf certificate says about its signer."""

    subjects: tuple[str, ...]
    issuer: str | None
    extensions: Mapping[str, str]

    @property
    def subject(self) -> str:
        return self.subjects[0] if self.subjects else ""


def canonical_json(value: Mapping[str, str | int]) -> bytes:
    """RFC 8785 (JCS) for a flat object of strings and integers.

    Keys sorted by UTF-16 code units; strings with only the escapes JCS
    prescribes; integers in plain decimal. That is all a Rekor SET payload
    needs, and anything else is refused rather than guessed at.
    """
    parts: list[str] = []
    for key in sorted(value, key=lambda k: k.encode("utf-16-be")):
        item = value[key]
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise TypeError(f"canonical_json: {key!r} is {type(item).__name__}, expected str or int")
        rendered = _jcs_string(item) if isinstance(item, str) else str(item)
        parts.append(f"{_jcs_string(key)}:{rendered}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


_JCS_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _jcs_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _JCS_ESCAPES:
            out.append(_JCS_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_rekor_bundle(data: bytes) -> RekorEntry:
    """cosign's ``{"SignedEntryTimestamp", "Payload": {...}}``; FormatError if malformed."""
    _bounded(data, "Rekor bundle")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"Rekor bundle is not JSON ({_short(exc)})") from exc
    if not isinstance(doc, dict):
        raise FormatError(f"Rekor bundle: expected a JSON object, got {_type(doc)}")
    set_text = doc.get("SignedEntryTimestamp")
    payload = doc.get("Payload")
    if not isinstance(set_text, str) or not set_text:
        raise FormatError(
            f"Rekor bundle: SignedEntryTimestamp must be a base64 string, got {_type(set_text)}"
        )
    if not isinstance(payload, dict):
        raise FormatError(f"Rekor bundle: Payload must be an object, got {_type(payload)}")
    body = payload.get("body")
    integrated_time = payload.get("integratedTime")
    log_index = payload.get("logIndex")
    log_id = payload.get("logID")
    # ASCII only: JSON escapes could smuggle in text (lone surrogates) that has no UTF-8 form to sign.
    if not isinstance(body, str) or not body or not body.isascii():
        raise FormatError(f"Rekor bundle: Payload.body must be a base64 string, got {_type(body)}")
    for name, number in (("integratedTime", integrated_time), ("logIndex", log_index)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise FormatError(
                f"Rekor bundle: Payload.{name} must be a non-negative integer, got {_type(number)}"
            )
    assert isinstance(integrated_time, int) and isinstance(log_index, int)  # narrowed by the loop above
    if integrated_time >= 253402300800:  # year 10000: not a time this code can represent
        raise FormatError(f"Rekor bundle: Payload.integratedTime {integrated_time} is out of range")
    if not isinstance(log_id, str) or not re.fullmatch(r"[0-9a-fA-F]{2,128}", log_id) or len(log_id) % 2:
        raise FormatError(f"Rekor bundle: Payload.logID must be hex text, got {_type(log_id)}")
    return RekorEntry(
        signed_entry_timestamp=_b64(set_text, "Rekor bundle SignedEntryTimestamp"),
        body=body,
        integrated_time=integrated_time,
        log_index=log_index,
        log_id=log_id,
    )


def _load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    _bounded(pem, what)
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise FormatError(f"{what}: no PEM CERTIFICATE block")
    try:
        certs = x509.load_pem_x509_certificates(pem)
        for cert in certs:
            # Extensions and keys parse lazily; a broken one is malformed material, found here.
            _ = cert.extensions, cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise FormatError(f"{what}: not a usable PEM X.509 certificate ({_short(exc)})") from exc
    return certs


def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    """The SANs, OIDC issuer and recognised Fulcio extensions of a certificate."""
    subjects: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except ValueError as exc:
        raise FormatError(f"certificate: unreadable extensions ({_short(exc)})") from exc
    if san is not None:
        subjects += san.get_values_for_type(x509.RFC822Name)
        subjects += san.get_values_for_type(x509.UniformResourceIdentifier)
        subjects += san.get_values_for_type(x509.DNSName)
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == OTHERNAME_SAN_OID:
                text = _der_utf8(other.value)
                if text is None:
                    raise FormatError("certificate: otherName SAN is not a DER UTF8String")
                subjects.append(text)
    v1 = _extension_text(cert, ISSUER_V1_OID, ExtensionEncoding.RAW)
    v2 = _extension_text(cert, ISSUER_V2_OID, ExtensionEncoding.DER_UTF8)
    if v1 is not None and v2 is not None and v1 != v2:
        raise FormatError(f"certificate: OIDC issuer extensions disagree ({v1!r:.80} vs {v2!r:.80})")
    named: dict[str, str] = {}
    for name, spec in FULCIO_EXTENSIONS.items():
        text = _extension_text(cert, spec.oid, spec.encoding)
        if text is not None:
            named[name] = text
    return CertificateFacts(subjects=tuple(subjects), issuer=v2 if v2 is not None else v1, extensions=named)


def _extension_text(
    cert: x509.Certificate, oid: x509.ObjectIdentifier, encoding: ExtensionEncoding
) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if encoding is ExtensionEncoding.RAW:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"certificate: Fulcio extension {oid.dotted_string} is not UTF-8") from exc
    text = _der_utf8(raw)
    if text is None:
        raise FormatError(f"certificate: Fulcio extension {oid.dotted_string} is not a DER UTF8String")
    return text


def _der_utf8(der: bytes) -> str | None:
    """Decode one DER UTF8String (tag 0x0C), or None if it is not exactly that."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            return None
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    if offset + length != len(der):
        return None
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------


def verify_keyless(
    sset: SignatureSet,
    *,
    root: TrustedRoot,
    identities: Sequence[KeylessIdentity],
) -> Signer:
    """Verify one keyless signature set offline (see the module docstring)."""
    where = f"signature set {sset.index}"
    # (1) Parse every piece of material before judging any of it.
    if sset.certificate is None:
        raise FormatError(f"{where}: no certificate, so it is not a keyless signature")
    if sset.rekor_bundle is None:
        raise SignatureError(
            f"{where}: keyless signature without a Rekor bundle; offline verification needs the log entry"
        )
    certs = _load_certificates(sset.certificate, f"{where} certificate")
    if len(certs) != 1:
        raise FormatError(f"{where} certificate: expected exactly one certificate, found {len(certs)}")
    leaf = certs[0]
    supplied = _load_certificates(sset.chain, f"{where} chain") if sset.chain else []
    if len(supplied) > MAX_CHAIN_CERTIFICATES:
        raise LimitExceededError(
            f"{where} chain: {len(supplied)} certificates, above the limit of {MAX_CHAIN_CERTIFICATES}"
        )
    entry = parse_rekor_bundle(sset.rekor_bundle)
    when = entry.integrated_at

    # (2) The certificate chains to a trusted CA, judged at the integrated time.
    _check_leaf(leaf, when, where)
    ca, issuer = _chain_to_root(leaf, supplied, root, when, where)
    _check_scts(leaf, issuer, root, where)

    # (3) The SignedEntryTimestamp: the log vouches for the entry and the time.
    tlog = _check_set(entry, root, where)

    # (4) The entry binds this signature, certificate and payload digest.
    hash_name = _check_body(entry, sset, leaf, where)

    # (5) The signature itself, with the certificate's key.
    if not _verify_with_certificate(leaf, sset.signature, sset.payload, hash_name):
        raise SignatureError(
            f"{where}: signature does not verify over the payload with the certificate's key"
        )

    # (6) The signer must be someone the policy trusts.
    facts = certificate_facts(leaf)
    signer = _match_identity(facts, identities, where, sset.index)
    log.debug(
        "keyless signature verified",
        extra={"signer": signer.name, "issuer": signer.issuer, "ca": ca.uri, "log": tlog.base_url},
    )
    return signer


def _check_leaf(leaf: x509.Certificate, when: datetime, where: str) -> None:
    _check_time(leaf, when, f"{where}: certificate")
    try:
        exts = leaf.extensions
    except ValueError as exc:
        raise FormatError(f"{where}: certificate has unreadable extensions ({_short(exc)})") from exc
    _reject_unknown_critical(exts, f"{where}: certificate")
    try:
        if exts.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise SignatureError(f"{where}: certificate is a CA certificate, not a signing certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = exts.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise SignatureError(f"{where}: certificate has no key usage; expected digitalSignature") from exc
    if not usage.digital_signature:
        raise SignatureError(f"{where}: certificate key usage lacks digitalSignature")
    try:
        eku = exts.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise SignatureError(f"{where}: certificate has no extended key usage; expected codeSigning") from exc
    if ExtendedKeyUsageOID.CODE_SIGNING not in list(eku):
        raise SignatureError(f"{where}: certificate extended key usage lacks codeSigning")


def _check_time(cert: x509.Certificate, when: datetime, what: str) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= when <= end:
        raise SignatureError(
            f"{what} {_name(cert)} not valid at the Rekor integrated time {_iso(when)} "
            f"(valid {_iso(start)} .. {_iso(end)})"
        )


def _reject_unknown_critical(exts: x509.Extensions, what: str) -> None:
    for ext in exts:
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise SignatureError(f"{what} has an unknown critical extension {ext.oid.dotted_string}")


def _chain_to_root(
    leaf: x509.Certificate,
    supplied: Sequence[x509.Certificate],
    root: TrustedRoot,
    when: datetime,
    where: str,
) -> tuple[CertificateAuthority, x509.Certificate]:
    """The first trusted CA the leaf chains to at ``when``, and the leaf's issuer.

    Raises SignatureError listing why no CA did.
    """
    reasons: list[str] = []
    for i, ca in enumerate(root.certificate_authorities):
        label = f"CA[{i}] {ca.uri or ca.subject}".rstrip()
        try:
            path = _build_path(leaf, supplied, ca)
        except _NoPath as exc:
            reasons.append(f"{label}: {exc}")
            continue
        if not ca.valid_for.contains(when):
            reasons.append(
                f"{label}: issued the chain but is not valid at {_iso(when)} (validFor {ca.valid_for})"
            )
            continue
        try:
            _check_issuers(path, when)
        except SignatureError as exc:
            reasons.append(f"{label}: {exc}")
            continue
        return ca, path[0]
    raise SignatureError(
        f"{where}: certificate (issuer {leaf.issuer.rfc4514_string()!r}) does not chain to a trusted "
        f"Fulcio CA at the Rekor integrated time {_iso(when)}: " + "; ".join(reasons or ["no CA configured"])
    )


class _NoPath(Exception):
    """No issuer path from the leaf into one CA (internal; becomes a reason)."""


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _build_path(
    leaf: x509.Certificate, supplied: Sequence[x509.Certificate], ca: CertificateAuthority
) -> list[x509.Certificate]:
    """Issuers from the leaf up to ``ca``'s anchor (leaf excluded).

    Certificates supplied with the signature are untrusted stepping stones; the
    path must reach a certificate of the CA's own chain, whose remainder up to
    the anchor is trusted by configuration.
    """
    path: list[x509.Certificate] = []
    current = leaf
    for _ in range(MAX_CHAIN_DEPTH):
        for k, trusted in enumerate(ca.certificates):
            if _issued_by(current, trusted):
                return path + list(ca.certificates[k:])
        names_match = [c for c in ca.certificates if current.issuer == c.subject]
        step = next((c for c in supplied if c not in path and c != current and _issued_by(current, c)), None)
        if step is None:
            if names_match:
                raise _NoPath(f"signature of {_name(current)} by {_name(names_match[0])} does not verify")
            raise _NoPath(f"no issuer for {_name(current)} in this CA or the supplied chain")
        path.append(step)
        current = step
    raise _NoPath(f"chain longer than {MAX_CHAIN_DEPTH} certificates")


def _check_issuers(path: Sequence[x509.Certificate], when: datetime) -> None:
    for depth, cert in enumerate(path):
        _check_time(cert, when, "CA certificate")
        try:
            exts = cert.extensions
            constraints = exts.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound as exc:
            raise SignatureError(f"CA certificate {_name(cert)} has no basic constraints") from exc
        except ValueError as exc:
            raise SignatureError(f"CA certificate {_name(cert)} has unreadable extensions") from exc
        if not constraints.ca:
            raise SignatureError(f"certificate {_name(cert)} issued a certificate but is not a CA")
        # ``depth`` CA certificates sit between this one and the leaf.
        if constraints.path_length is not None and depth > constraints.path_length:
            raise SignatureError(
                f"CA certificate {_name(cert)} path length {constraints.path_length} exceeded"
            )
        try:
            usage = exts.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise SignatureError(f"CA certificate {_name(cert)} key usage lacks keyCertSign")
        _reject_unknown_critical(exts, f"CA certificate {_name(cert)}")


def _check_scts(leaf: x509.Certificate, issuer: x509.Certificate, root: TrustedRoot, where: str) -> None:
    """An embedded SCT from a trusted CT log proves the certificate was published.

    Required whenever the trusted root lists CT logs (as cosign requires it by
    default); a private instance without CT lists none and skips this.
    """
    if not root.ctlogs:
        return
    try:
        scts = list(
            leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        )
    except x509.ExtensionNotFound as exc:
        raise SignatureError(
            f"{where}: certificate has no embedded SCT, but the trusted root lists CT logs"
        ) from exc
    spki = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        tbs = leaf.tbs_precertificate_bytes
    except ValueError as exc:
        raise FormatError(f"{where}: certificate precertificate form is unreadable ({_short(exc)})") from exc
    reasons: list[str] = []
    for sct in scts:
        label = f"SCT from log {sct.log_id.hex()[:16]}..."
        if sct.version is not x509.certificate_transparency.Version.v1:
            reasons.append(f"{label}: unsupported version")
            continue
        if sct.entry_type is not x509.certificate_transparency.LogEntryType.PRE_CERTIFICATE:
            reasons.append(f"{label}: not a precertificate SCT")
            continue
        logs = [t for t in root.ctlogs if t.log_id == sct.log_id]
        if not logs:
            reasons.append(f"{label}: not a CT log of the trusted root")
            continue
        when = sct.timestamp.replace(tzinfo=UTC)
        millis = (when - _EPOCH) // timedelta(milliseconds=1)
        # RFC 6962 section 3.2: the digitally-signed struct of a precert entry.
        signed = b"".join(
            [
                b"\x00\x00",  # v1, certificate_timestamp
                millis.to_bytes(8, "big"),
                b"\x00\x01",  # precert_entry
                hashlib.sha256(spki).digest(),
                len(tbs).to_bytes(3, "big"),
                tbs,
                len(sct.extension_bytes).to_bytes(2, "big"),
                sct.extension_bytes,
            ]
        )
        for ctlog in logs:
            if not ctlog.valid_for.contains(when):
                reasons.append(
                    f"{label}: CT log {ctlog.base_url} not valid at {_iso(when)} (validFor {ctlog.valid_for})"
                )
            elif ctlog.public_key.verify(sct.signature, signed):
                return
            else:
                reasons.append(f"{label}: signature does not verify with the key of {ctlog.base_url}")
    raise SignatureError(
        f"{where}: no embedded SCT verifies with a CT log of the trusted root: "
        + "; ".join(reasons or ["none"])
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _check_set(entry: RekorEntry, root: TrustedRoot, where: str) -> TransparencyLog:
    log_id = bytes.fromhex(entry.log_id)
    candidates = root.tlogs_for(log_id)
    if not candidates:
        raise SignatureError(
            f"{where}: Rekor logID {entry.log_id[:16]}... is not a transparency log of the trusted root"
        )
    when = entry.integrated_at
    payload = entry.canonical_payload()
    reasons: list[str] = []
    for tlog in candidates:
        if not tlog.valid_for.contains(when):
            reasons.append(f"log key {tlog.base_url} not valid at {_iso(when)} (validFor {tlog.valid_for})")
        elif not tlog.public_key.verify(entry.signed_entry_timestamp, payload):
            reasons.append(f"SignedEntryTimestamp does not verify with the key of {tlog.base_url}")
        else:
            return tlog
    raise SignatureError(f"{where}: Rekor entry {entry.log_index}: " + "; ".join(reasons))


_HASHES: Mapping[str, tuple[str, hashes.HashAlgorithm]] = {
    "sha256": ("sha256", hashes.SHA256()),
    "sha384": ("sha384", hashes.SHA384()),
    "sha512": ("sha512", hashes.SHA512()),
}


def _check_body(entry: RekorEntry, sset: SignatureSet, leaf: x509.Certificate, where: str) -> str:
    """Check the entry is about this signature; return the digest algorithm name."""
    what = f"{where}: Rekor entry {entry.log_index}"
    raw = _b64(entry.body, f"{what} body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{what}: body is not JSON ({_short(exc)})") from exc
    kind = _get(body, ("kind",), str, what)
    version = _get(body, ("apiVersion",), str, what)
    if kind not in ("hashedrekord", "rekord") or version != "0.0.1":
        raise SignatureError(
            f"{what}: entry kind {kind!r:.40} version {version!r:.20} cannot bind a signature to a payload; "
            "expected hashedrekord or rekord 0.0.1"
        )
    signature = _b64(_get(body, ("spec", "signature", "content"), str, what), f"{what} signature")
    key_pem = _b64(_get(body, ("spec", "signature", "publicKey", "content"), str, what), f"{what} public key")
    data = _get(body, ("spec", "data"), dict, what)
    if kind == "rekord":
        fmt = body["spec"]["signature"].get("format")
        if fmt is not None and fmt != "x509":
            raise SignatureError(f"{what}: rekord signature format {fmt!r:.20}, expected x509")
    if signature != sset.signature:
        raise SignatureError(f"{what}: the logged signature differs from the signature set's signature")
    _check_logged_key(key_pem, leaf, what)

    hash_name = "sha256"
    if "hash" in data or kind == "hashedrekord":
        algorithm = _get(data, ("hash", "algorithm"), str, what)
        expected = _get(data, ("hash", "value"), str, what).lower()
        if algorithm not in _HASHES:
            raise SignatureError(f"{what}: digest algorithm {algorithm!r:.20} is not supported")
        hash_name = algorithm
        actual = hashlib.new(algorithm, sset.payload).hexdigest()
        if actual != expected:
            raise SignatureError(
                f"{what}: logged digest {algorithm}:{expected[:16]}... differs from the payload digest "
                f"{algorithm}:{actual[:16]}..."
            )
    if kind == "rekord" and "content" in data:
        content = _b64(_get(data, ("content",), str, what), f"{what} data")
        if content != sset.payload:
            raise SignatureError(f"{what}: logged content differs from the payload")
    elif kind == "rekord" and "hash" not in data:
        raise FormatError(f"{what}: rekord entry has neither spec.data.hash nor spec.data.content")
    return hash_name


def _check_logged_key(pem: bytes, leaf: x509.Certificate, what: str) -> None:
    # The logged key is the signing certificate itself (PEM); a bare public
    # key is accepted when it is the certificate's key.
    if b"-----BEGIN CERTIFICATE-----" in pem:
        logged = _load_certificates(pem, f"{what} certificate")
        if logged[0].public_bytes(serialization.Encoding.DER) != leaf.public_bytes(
            serialization.Encoding.DER
        ):
            raise SignatureError(f"{what}: the logged certificate differs from the signing certificate")
        return
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise FormatError(f"{what}: logged public key is neither a certificate nor a public key") from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise SignatureError(f"{what}: the logged public key is not the signing certificate's key")


def _verify_with_certificate(
    cert: x509.Certificate, signature: bytes, payload: bytes, hash_name: str
) -> bool:
    key = cert.public_key()
    digest = _HASHES[hash_name][1]
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), digest)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            raise SignatureError(f"certificate key type {type(key).__name__} is not supported")
    except (InvalidSignature, ValueError):
        return False
    return True


def _match_identity(
    facts: CertificateFacts, identities: Sequence[KeylessIdentity], where: str, index: int
) -> Signer:
    found = f"certificate identity {facts.subject!r:.200} with issuer {facts.issuer!r:.200}"
    if not identities:
        raise UntrustedSignerError(f"{where}: {found} is not trusted: no keyless identity is configured")
    near_miss = ""
    for n, identity in enumerate(identities):
        subject = identity.matching_subject(facts.subjects)
        if subject is None or not identity.matches_issuer(facts.issuer):
            continue
        wrong = [
            (name, value, facts.extensions.get(name))
            for name, value in identity.extensions.items()
            if facts.extensions.get(name) != value
        ]
        if wrong:
            name, value, actual = wrong[0]
            near_miss = near_miss or (
                f" (identity #{n} matches subject and issuer, but extension {name} is "
                f"{actual!r:.120}, expected {value!r:.120})"
            )
            continue
        return Signer(
            kind=SignerKind.KEYLESS,
            name=subject,
            index=index,
            issuer=facts.issuer,
            extensions=dict(identity.extensions),
        )
    raise UntrustedSignerError(
        f"{where}: {found} matches no trusted keyless identity ({len(identities)} configured){near_miss}"
    )


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _get(obj: Any, keys: tuple[str, ...], kind: type, what: str) -> Any:
    value = obj
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise FormatError(f"{what}: body lacks {'.'.join(keys)}")
        value = value[key]
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise FormatError(f"{what}: body {'.'.join(keys)} must be a {kind.__name__}, got {_type(value)}")
    return value


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: not valid base64") from exc


def _bounded(data: bytes, what: str) -> None:
    if len(data) > MAX_MATERIAL_BYTES:
        raise LimitExceededError(f"{what}: {len(data)} bytes exceeds the {MAX_MATERIAL_BYTES} byte limit")


def _name(cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string()
    return repr(subject) if subject else f"serial {cert.serial_number:x}"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 120 else text[:117] + "..."
