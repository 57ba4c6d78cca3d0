"""Shared test fixtures.

``FIXTURES`` points at the real signed artifacts in ``../shared/fixtures``
(signed by the real k8s-manifest-sigstore and cosign tools); tests that need
them skip with a clear message only if that folder is absent.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
KMS = SHARED_FIXTURES / "k8s-manifest-sigstore"


def b64_pem(path: Path) -> bytes:
    """The fixtures' testpub/testkey files hold base64 of the PEM text."""
    return base64.b64decode(path.read_bytes())


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def key_a_pub() -> bytes:
    return b64_pem(KMS / "pkg/k8smanifest/testdata/testpub")


@pytest.fixture(scope="session")
def key_b_pub() -> bytes:
    return b64_pem(KMS / "pkg/cosign/testdata/testpub")


@pytest.fixture(scope="session")
def key_c_pub() -> bytes:
    return (KMS / "example/verify-resource/cosign.pub").read_bytes()
