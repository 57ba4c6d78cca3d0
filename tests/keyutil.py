"""Freshly generated key pairs for tests, cached per test process.

``keypair("alice")`` always returns the same ECDSA P-256 key within one
process (one pytest-xdist worker) and a different key for another label.
These are plain key objects: no scrypt cost. ``cosign_keypair(password)``
gives the cosign-encrypted form (one scrypt run per password per process).
"""

from __future__ import annotations

import functools

from provider.core.cosignkey import PrivateKey, generate_keypair
from provider.core.keys import PublicKey, load_public_key


@functools.cache
def keypair(label: str = "default") -> tuple[PrivateKey, bytes]:
    """(private key, public PEM) for ``label``."""
    key = PrivateKey.generate()
    return key, key.public_pem()


def public_key(label: str = "default") -> PublicKey:
    """The trusted-key form of ``keypair(label)``, named ``label``."""
    return load_public_key(keypair(label)[1], name=label)


@functools.cache
def cosign_keypair(password: bytes = b"") -> tuple[bytes, bytes]:
    """(ENCRYPTED COSIGN PRIVATE KEY PEM, public PEM) for ``password``."""
    return generate_keypair(password=password)
