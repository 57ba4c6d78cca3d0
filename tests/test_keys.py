"""Public keys: every algorithm cosign pairs with a key type, fingerprints, hostile key files."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from provider.core.keys import (
    ALGORITHM_ECDSA_P256,
    ALGORITHM_ECDSA_P384,
    ALGORITHM_ECDSA_P521,
    ALGORITHM_ED25519,
    ALGORITHM_RSA,
    load_public_key,
)
from provider.errors import KeyMaterialError
from tests.conftest import KMS

DATA = b"apiVersion: v1\nkind: ConfigMap\n"


def spki_pem(private: object) -> bytes:
    return private.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_fixture_keys_load_with_pem_der_fingerprint(key_a_pub: bytes, key_c_pub: bytes) -> None:
    for pem in (key_a_pub, key_c_pub):
        key = load_public_key(pem, name="k")
        body = b"".join(line for line in pem.strip().splitlines() if not line.startswith(b"-----"))
        assert key.fingerprint == hashlib.sha256(base64.b64decode(body)).hexdigest()
        assert key.algorithm == ALGORITHM_ECDSA_P256


def test_base64_of_pem_file_accepted(key_a_pub: bytes) -> None:
    raw_file = (KMS / "pkg/k8smanifest/testdata/testpub").read_bytes()
    assert not raw_file.startswith(b"-----")
    assert load_public_key(raw_file, name="a").fingerprint == load_public_key(key_a_pub, name="a").fingerprint


@pytest.mark.parametrize(
    ("curve", "good_hash", "bad_hash", "algorithm"),
    [
        (ec.SECP256R1(), hashes.SHA256(), hashes.SHA384(), ALGORITHM_ECDSA_P256),
        (ec.SECP384R1(), hashes.SHA384(), hashes.SHA512(), ALGORITHM_ECDSA_P384),
        (ec.SECP521R1(), hashes.SHA512(), hashes.SHA384(), ALGORITHM_ECDSA_P521),
    ],
)
def test_ecdsa_hash_per_curve(
    curve: ec.EllipticCurve, good_hash: hashes.HashAlgorithm, bad_hash: hashes.HashAlgorithm, algorithm: str
) -> None:
    private = ec.generate_private_key(curve)
    key = load_public_key(spki_pem(private), name="ec")
    assert key.algorithm == algorithm
    assert key.verify(private.sign(DATA, ec.ECDSA(good_hash)), DATA)
    assert not key.verify(private.sign(DATA, ec.ECDSA(bad_hash)), DATA)
    assert not key.verify(private.sign(DATA, ec.ECDSA(good_hash)), DATA + b" ")


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_older_cosign_sha256_on_larger_curves_accepted(curve: ec.EllipticCurve) -> None:
    private = ec.generate_private_key(curve)
    key = load_public_key(spki_pem(private), name="ec")
    assert key.verify(private.sign(DATA, ec.ECDSA(hashes.SHA256())), DATA)
    assert not key.verify(private.sign(DATA, ec.ECDSA(hashes.SHA256())), DATA + b"x")


def test_p256_accepts_only_sha256() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = load_public_key(spki_pem(private), name="ec")
    for other in (hashes.SHA384(), hashes.SHA512(), hashes.SHA224()):
        assert not key.verify(private.sign(DATA, ec.ECDSA(other)), DATA)


def test_rsa_pkcs1v15_sha256() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = load_public_key(spki_pem(private), name="rsa")
    assert key.algorithm == ALGORITHM_RSA
    assert key.verify(private.sign(DATA, padding.PKCS1v15(), hashes.SHA256()), DATA)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    assert not key.verify(private.sign(DATA, pss, hashes.SHA256()), DATA)
    assert not key.verify(private.sign(DATA, padding.PKCS1v15(), hashes.SHA512()), DATA)


def test_ed25519() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    key = load_public_key(spki_pem(private), name="ed")
    assert key.algorithm == ALGORITHM_ED25519
    assert key.verify(private.sign(DATA), DATA)
    assert not key.verify(private.sign(DATA + b"x"), DATA)


def test_weak_or_unsupported_keys_rejected() -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyMaterialError, match="2048"):
        load_public_key(spki_pem(small_rsa), name="small")
    with pytest.raises(KeyMaterialError, match="not supported"):
        load_public_key(spki_pem(ec.generate_private_key(ec.SECP256K1())), name="k1")
    with pytest.raises(KeyMaterialError, match="not a supported key type"):
        load_public_key(spki_pem(dsa.generate_private_key(key_size=2048)), name="dsa")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        base64.b64encode(b"not a pem at all"),
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        b"A" * 100_000,
    ],
)
def test_bad_key_files(data: bytes) -> None:
    with pytest.raises(KeyMaterialError):
        load_public_key(data, name="bad")


def test_private_key_is_not_a_public_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyMaterialError):
        load_public_key(pem, name="priv")


def test_error_message_never_contains_key_material(key_a_pub: bytes) -> None:
    broken = key_a_pub.replace(b"MFkw", b"MFkx")
    with pytest.raises(KeyMaterialError) as info:
        load_public_key(broken, name="a")
    assert b"MFk" not in str(info.value).encode()


@pytest.mark.parametrize(
    "signature", [b"", b"\x00", b"0\x06\x02\x01\x01\x02\x01\x01", b"\x30" * 200, bytes(64)]
)
def test_verify_never_raises_on_garbage(signature: bytes, key_a_pub: bytes) -> None:
    assert load_public_key(key_a_pub, name="a").verify(signature, DATA) is False
    ed = load_public_key(spki_pem(ed25519.Ed25519PrivateKey.generate()), name="ed")
    assert ed.verify(signature, DATA) is False


def _ed25519ph_sign(private: ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    """An Ed25519ph signature made by libsodium (independent of the code under test)."""
    import nacl.bindings

    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    _, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    state = nacl.bindings.crypto_sign_ed25519ph_state()
    nacl.bindings.crypto_sign_ed25519ph_update(state, data)
    return bytes(nacl.bindings.crypto_sign_ed25519ph_final_create(state, secret))


def test_ed25519ph_accepted_and_domain_separated() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    key = load_public_key(spki_pem(private), name="ed")
    prehashed = _ed25519ph_sign(private, DATA)
    assert prehashed != private.sign(DATA)
    assert key.verify(prehashed, DATA)
    assert not key.verify(prehashed, DATA + b"x")
    assert not key.verify(_ed25519ph_sign(ed25519.Ed25519PrivateKey.generate(), DATA), DATA)
    # A pure signature over SHA-512(DATA) is not an Ed25519ph signature over DATA.
    assert not key.verify(private.sign(hashlib.sha512(DATA).digest()), DATA)
