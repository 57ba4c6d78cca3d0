"""Trusted public keys and keyed signature checks, as cosign does them.

Accepted keys (PEM ``PUBLIC KEY``, i.e. DER SubjectPublicKeyInfo, or a file
holding base64 of such a PEM):

=================  =====================================================
ECDSA P-256        DER signature, SHA-256
ECDSA P-384        DER signature, SHA-384 (or SHA-256, see below)
ECDSA P-521        DER signature, SHA-512 (or SHA-256, see below)
RSA (>= 2048 bit)  PKCS#1 v1.5, SHA-256
Ed25519            Ed25519 over the message, or Ed25519ph (pre-hashed)
=================  =====================================================

These are the defaults of current cosign (sigstore's algorithm registry).
cosign releases before that registry, and the cosign that k8s-manifest-sigstore
builds on, hash with SHA-256 for every ECDSA curve, so a P-384 or P-521
signature is also accepted over SHA-256. (Both hashes are collision resistant,
so accepting either adds no forgery path.) Likewise, Ed25519 keys accept pure
Ed25519 (older cosign) and Ed25519ph, which newer cosign writes; the two are
domain-separated, so neither signature is valid as the other. A key's
``fingerprint`` is the hex SHA-256 of its DER SubjectPublicKeyInfo, which
names keys in verdicts and logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from provider.errors import KeyMaterialError

log = logging.getLogger(__name__)

ALGORITHM_ECDSA_P256 = "ecdsa-p256-sha256"
ALGORITHM_ECDSA_P384 = "ecdsa-p384-sha384"
ALGORITHM_ECDSA_P521 = "ecdsa-p521-sha512"
ALGORITHM_RSA = "rsa-pkcs1v15-sha256"
ALGORITHM_ED25519 = "ed25519"

MIN_RSA_BITS = 2048
# A PEM public key is well under 2 KiB (RSA 4096 is ~800 bytes).
MAX_KEY_FILE_BYTES = 64 * 1024

_EC_HASHES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": (ALGORITHM_ECDSA_P256, hashes.SHA256),
    "secp384r1": (ALGORITHM_ECDSA_P384, hashes.SHA384),
    "secp521r1": (ALGORITHM_ECDSA_P521, hashes.SHA512),
}

VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A trusted verification key with the name the configuration gave it."""

    name: str
    fingerprint: str
    algorithm: str
    key: VerifyingKey = field(repr=False, compare=False)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True iff ``signature`` is this key's signature over ``data``; never raises for bad input."""
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                _, hash_cls = _EC_HASHES[self.key.curve.name]
                try:
                    self.key.verify(signature, data, ec.ECDSA(hash_cls()))
                except InvalidSignature:
                    if hash_cls is hashes.SHA256:
                        raise
                    # Older cosign: SHA-256 whatever the curve.
                    self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                try:
                    self.key.verify(signature, data)
                except InvalidSignature:
                    return _verify_ed25519ph(self.key, signature, data)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def public_pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _verify_ed25519ph(key: ed25519.Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Ed25519ph (RFC 8032, empty context), which newer cosign writes for Ed25519 keys."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    state = nacl.bindings.crypto_sign_ed25519ph_state()
    nacl.bindings.crypto_sign_ed25519ph_update(state, data)
    try:
        return bool(nacl.bindings.crypto_sign_ed25519ph_final_verify(state, signature, raw))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False


def fingerprint_of(key: VerifyingKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def from_key_object(key: object, *, name: str) -> PublicKey:
    """Wrap a ``cryptography`` public key, checking that cosign can use it."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        entry = _EC_HASHES.get(key.curve.name)
        if entry is None:
            raise KeyMaterialError(f"key {name!r}: ECDSA curve {key.curve.name} is not supported")
        algorithm = entry[0]
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyMaterialError(
                f"key {name!r}: RSA key has {key.key_size} bits, at least {MIN_RSA_BITS} needed"
            )
        algorithm = ALGORITHM_RSA
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = ALGORITHM_ED25519
    else:
        raise KeyMaterialError(
            f"key {name!r}: {type(key).__name__} is not a supported key type (ECDSA, RSA, Ed25519)"
        )
    return PublicKey(name=name, fingerprint=fingerprint_of(key), algorithm=algorithm, key=key)


def pem_text(data: bytes, *, name: str) -> bytes:
    """PEM bytes of ``data``, which is PEM or base64 of PEM (the fixtures' ``testpub`` form)."""
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyMaterialError(f"key {name!r} is {len(data)} bytes, more than {MAX_KEY_FILE_BYTES} allowed")
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN "):
        return stripped + b"\n"
    try:
        decoded = base64.b64decode(b"".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyMaterialError(f"key {name!r} is neither PEM nor base64 of PEM") from exc
    if not decoded.strip().startswith(b"-----BEGIN "):
        raise KeyMaterialError(f"key {name!r} is base64 but does not decode to PEM")
    return decoded.strip() + b"\n"


def load_public_key(data: bytes, *, name: str) -> PublicKey:
    """Read a PEM (or base64-of-PEM) public key; raise :class:`KeyMaterialError`."""
    pem = pem_text(data, name=name)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"key {name!r} is not a PEM SubjectPublicKeyInfo public key") from exc
    return from_key_object(key, name=name)
