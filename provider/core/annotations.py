"""Signatures embedded in an object's annotations.

Keys, under a configurable domain (default ``cosign.sigstore.dev``):

* ``<domain>/message``: base64(gzip(RAW)), shared by every signature set;
* ``<domain>/signature`` and ``<domain>/signature_N`` (N >= 1): base64 of the
  signature over RAW; set 0 and set N;
* ``<domain>/certificate[_N]``, ``<domain>/bundle[_N]``: base64(gzip(PEM)) and
  base64(gzip(JSON)) keyless material of set N, stored un-gzipped;
* ``<domain>/resourceBundleRef``: comma-separated references to bundles kept
  elsewhere (OCI image, ``k8s://ConfigMap/...``).

Only bytes are decoded here; nothing is parsed as YAML.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from provider.core.bundle import BundleSource, SignatureSet, SignedBundle
from provider.core.limits import DEFAULT_LIMITS, Limits
from provider.core.message import decode_base64, decode_message, gunzip_bounded, is_gzip
from provider.errors import FormatError, LimitExceededError

log = logging.getLogger(__name__)

DEFAULT_DOMAIN = "cosign.sigstore.dev"

MESSAGE = "message"
SIGNATURE = "signature"
CERTIFICATE = "certificate"
BUNDLE = "bundle"
RESOURCE_BUNDLE_REF = "resourceBundleRef"

# Every annotation name this format owns, as prefixes (``signature`` covers
# ``signature_N``): stripped before a message is built, ignored when matching.
SIGNATURE_BASE_NAMES = (MESSAGE, SIGNATURE, CERTIFICATE, BUNDLE, RESOURCE_BUNDLE_REF)

_INDEXED = re.compile(r"(?P<base>signature|certificate|bundle)(?:_(?P<index>[1-9][0-9]{0,5}))?")

ANNOTATION_REFERENCE = "annotations"


def annotation_key(base: str, index: int = 0, *, domain: str) -> str:
    """``<domain>/<base>`` for set 0, ``<domain>/<base>_N`` for set N."""
    return f"{domain}/{base}" if index == 0 else f"{domain}/{base}_{index}"


def is_signature_annotation(key: str, *, domain: str) -> bool:
    """True for every annotation of this format (message, signature[_N], ...)."""
    prefix = domain + "/"
    if not key.startswith(prefix):
        return False
    rest = key[len(prefix) :]
    return any(rest.startswith(base) for base in SIGNATURE_BASE_NAMES)


def signature_indexes(annotations: Mapping[str, str], *, domain: str) -> list[int]:
    """Sorted indexes N of the present ``signature``/``signature_N`` annotations."""
    prefix = domain + "/"
    found: list[int] = []
    for key in annotations:
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        match = _INDEXED.fullmatch(key[len(prefix) :])
        if match is not None and match["base"] == SIGNATURE:
            found.append(int(match["index"] or 0))
    return sorted(found)


def bundle_from_annotations(
    annotations: Mapping[str, str], *, domain: str, limits: Limits
) -> SignedBundle | None:
    """The signed message and signature sets carried by ``annotations``.

    ``None`` when the object carries neither a message nor a signature.
    Raises :class:`FormatError` / :class:`LimitExceededError` for malformed
    or oversized material.
    """
    message_key = annotation_key(MESSAGE, domain=domain)
    indexes = signature_indexes(annotations, domain=domain)
    message_text = annotations.get(message_key)
    if message_text is None and not indexes:
        return None
    if message_text is None:
        raise FormatError(
            f"annotation {annotation_key(SIGNATURE, domain=domain)} is present but {message_key} is not"
        )
    if not indexes:
        raise FormatError(f"annotation {message_key} is present but no {domain}/signature[_N] is")
    if len(indexes) > limits.max_signature_sets:
        raise LimitExceededError(
            f"object carries {len(indexes)} signature sets, above limits.max_signature_sets="
            f"{limits.max_signature_sets}"
        )
    _require_str(message_text, message_key)
    message = decode_message(message_text, limits=limits)
    sets: list[SignatureSet] = []
    for index in indexes:
        sig_key = annotation_key(SIGNATURE, index, domain=domain)
        sig_text = annotations[sig_key]
        _require_str(sig_text, sig_key)
        signature = decode_base64(sig_text, what=f"annotation {sig_key}", limits=limits)
        if not signature:
            raise FormatError(f"annotation {sig_key} is empty")
        sets.append(
            SignatureSet(
                index=index,
                signature=signature,
                payload=message,
                certificate=_optional_gzipped(annotations, CERTIFICATE, index, domain=domain, limits=limits),
                rekor_bundle=_optional_gzipped(annotations, BUNDLE, index, domain=domain, limits=limits),
            )
        )
    return SignedBundle(
        source=BundleSource.ANNOTATION,
        reference=ANNOTATION_REFERENCE,
        message=message,
        signature_sets=tuple(sets),
    )


def bundle_refs(annotations: Mapping[str, str], *, domain: str, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """References named by ``<domain>/resourceBundleRef`` (comma-separated), in order.

    Each reference costs a fetch, so at most ``limits.max_signature_sets``
    are accepted (:class:`LimitExceededError` beyond).
    """
    key = f"{domain}/{RESOURCE_BUNDLE_REF}"
    value = annotations.get(key)
    if value is None:
        return []
    _require_str(value, key)
    if len(value) > limits.max_annotation_bytes:
        raise LimitExceededError(
            f"annotation {key} is {len(value)} characters, above limits.max_annotation_bytes="
            f"{limits.max_annotation_bytes}"
        )
    refs = [part.strip() for part in value.split(",") if part.strip()]
    if len(refs) > limits.max_signature_sets:
        raise LimitExceededError(
            f"annotation {key} names {len(refs)} bundles, above limits.max_signature_sets={limits.max_signature_sets}"
        )
    return refs


def _optional_gzipped(
    annotations: Mapping[str, str], base: str, index: int, *, domain: str, limits: Limits
) -> bytes | None:
    key = annotation_key(base, index, domain=domain)
    text = annotations.get(key)
    if text is None:
        return None
    _require_str(text, key)
    data = decode_base64(text, what=f"annotation {key}", limits=limits)
    if is_gzip(data):
        data = gunzip_bounded(data, limit=limits.max_annotation_bytes, what=f"annotation {key}")
    if not data:
        raise FormatError(f"annotation {key} is empty")
    return data


def _require_str(value: object, key: str) -> None:
    if not isinstance(value, str):
        raise FormatError(f"annotation {key} is a {type(value).__name__}, expected a string")
