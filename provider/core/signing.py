"""Signing manifests the way k8s-manifest-sigstore does (annotation-embedded).

The signed bytes (RAW) are the raw-YAML message: every document of the
input, with this format's own annotations removed (``message``,
``signature[_N]``, ``certificate[_N]``, ``bundle[_N]``, ``resourceBundleRef``)
and an emptied ``metadata.annotations`` dropped, serialised with sorted keys
and joined with ``\\n---\\n``. Every resource of the output then carries the
same ``message`` (base64(gzip(RAW))) and ``signature`` annotations, so each
one can be checked on its own.

``append`` adds a signature set instead: the existing message is kept byte
for byte (it must be the same on every resource, and must still describe the
documents), and the new signature goes to the lowest free ``signature_N``.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from provider.core.annotations import (
    DEFAULT_DOMAIN,
    MESSAGE,
    RESOURCE_BUNDLE_REF,
    SIGNATURE,
    annotation_key,
    is_signature_annotation,
    signature_indexes,
)
from provider.core.cosignkey import PrivateKey
from provider.core.limits import DEFAULT_LIMITS, Limits
from provider.core.message import decode_message, encode_message, manifests_from_message
from provider.core.safeyaml import load_documents
from provider.errors import FormatError, LimitExceededError

log = logging.getLogger(__name__)

DOCUMENT_SEPARATOR = b"\n---\n"

try:
    _BaseDumper: type[yaml.SafeDumper] = yaml.CSafeDumper  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseDumper = yaml.SafeDumper


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """Writes shared values out in full: a message never relies on anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(document: Mapping[str, Any]) -> bytes:
    text: str = yaml.dump(
        dict(document), Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True
    )
    return text.encode("utf-8")


def build_message(documents: Sequence[Mapping[str, Any]]) -> bytes:
    """RAW for ``documents`` as given: sorted-key YAML joined with ``\\n---\\n``."""
    return DOCUMENT_SEPARATOR.join(_dump(document) for document in documents)


def parse_manifests(text: bytes, *, limits: Limits) -> list[dict[str, Any]]:
    """The manifests of a YAML file to sign: mappings with a valid ``metadata``."""
    documents = load_documents(text, limits=limits)
    if not documents:
        raise FormatError("input holds no YAML document to sign")
    out: list[dict[str, Any]] = []
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise FormatError(
                f"document {index} is a {type(document).__name__}, expected a mapping (a manifest)"
            )
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            raise FormatError(
                f"document {index}: metadata is a {type(metadata).__name__}, expected a mapping"
            )
        annotations = metadata.get("annotations", {})
        if annotations is not None and not isinstance(annotations, dict):
            raise FormatError(
                f"document {index}: metadata.annotations is a {type(annotations).__name__}, expected a mapping"
            )
        _require_string_keys(document, where=f"document {index}")
        out.append(document)
    return out


def _require_string_keys(value: Any, *, where: str) -> None:
    """Kubernetes objects are JSON: a key like ``1`` or ``true`` would be read back differently."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise FormatError(
                        f"{path}: mapping key {key!r} is a {type(key).__name__}, expected a string (quote it)"
                    )
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))


def annotations_of(document: Mapping[str, Any]) -> dict[str, Any]:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    annotations = metadata.get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def strip_signature_annotations(document: Mapping[str, Any], *, domain: str) -> dict[str, Any]:
    """A deep copy of ``document`` without this format's annotations (as signed)."""
    clean = copy.deepcopy(dict(document))
    metadata = clean.get("metadata")
    if isinstance(metadata, dict) and "annotations" in metadata:
        annotations = metadata["annotations"]
        if isinstance(annotations, dict):
            kept = {
                k: v for k, v in annotations.items() if not is_signature_annotation(str(k), domain=domain)
            }
            if kept:
                metadata["annotations"] = kept
            else:
                del metadata["annotations"]
        elif annotations is None:
            del metadata["annotations"]
    return clean


def _with_annotations(
    document: Mapping[str, Any], updates: Mapping[str, str], *, domain: str, keep_existing: bool
) -> dict[str, Any]:
    base = dict(document) if keep_existing else strip_signature_annotations(document, domain=domain)
    out = copy.deepcopy(base)
    metadata = out.setdefault("metadata", {})
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    annotations.update(updates)
    metadata["annotations"] = annotations
    return out


def sign_documents(
    text: bytes,
    key: PrivateKey,
    *,
    append: bool = False,
    domain: str = DEFAULT_DOMAIN,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Sign every document of ``text``; return the signed multi-document YAML."""
    documents = parse_manifests(text, limits=limits)
    message_key = annotation_key(MESSAGE, domain=domain)
    existing = [annotations_of(document).get(message_key) for document in documents]
    if append and any(value is not None for value in existing):
        raw, message_text = _existing_message(documents, existing, domain=domain, limits=limits)
        index = _next_free_index(documents, domain=domain, limits=limits)
        keep_existing = True
    else:
        raw = _fresh_message(documents, domain=domain, limits=limits)
        message_text = encode_message(raw)
        index = 0
        keep_existing = False
    signature = base64.b64encode(key.sign(raw)).decode("ascii")
    updates = {message_key: message_text, annotation_key(SIGNATURE, index, domain=domain): signature}
    signed = [_with_annotations(d, updates, domain=domain, keep_existing=keep_existing) for d in documents]
    log.info("signed %d document(s) as signature set %d", len(signed), index)
    return build_message(signed)


def bundle_ref_documents(
    text: bytes, reference: str, *, domain: str = DEFAULT_DOMAIN, limits: Limits = DEFAULT_LIMITS
) -> tuple[bytes, bytes]:
    """(RAW message, output YAML) for signing by reference to a bundle stored elsewhere.

    The output carries ``<domain>/resourceBundleRef: reference`` on every
    resource instead of the message and signature annotations.
    """
    documents = parse_manifests(text, limits=limits)
    raw = _fresh_message(documents, domain=domain, limits=limits)
    updates = {f"{domain}/{RESOURCE_BUNDLE_REF}": reference}
    out = [_with_annotations(d, updates, domain=domain, keep_existing=False) for d in documents]
    return raw, build_message(out)


def _fresh_message(documents: Sequence[Mapping[str, Any]], *, domain: str, limits: Limits) -> bytes:
    raw = build_message([strip_signature_annotations(d, domain=domain) for d in documents])
    if len(raw) > limits.max_message_bytes:
        raise LimitExceededError(
            f"message would be {len(raw)} bytes, above limits.max_message_bytes={limits.max_message_bytes}"
        )
    return raw


def _existing_message(
    documents: Sequence[Mapping[str, Any]], existing: Sequence[object], *, domain: str, limits: Limits
) -> tuple[bytes, str]:
    """The one message every document already carries, checked against the documents."""
    values = {value for value in existing if value is not None}
    if None in existing or len(values) != 1:
        raise FormatError(
            "cannot append a signature: the documents do not all carry the same "
            f"{annotation_key(MESSAGE, domain=domain)} annotation (sign without --append)"
        )
    message_text = values.pop()
    if not isinstance(message_text, str):
        raise FormatError("cannot append a signature: the existing message annotation is not a string")
    raw = decode_message(message_text, limits=limits)
    signed = [_normalised(m, domain=domain) for m in manifests_from_message(raw, limits=limits)]
    current = [_normalised(d, domain=domain) for d in documents]
    if signed != current:
        raise FormatError(
            "cannot append a signature: the documents differ from the existing signed message "
            "(they changed since they were signed; sign without --append)"
        )
    return raw, message_text


def _normalised(document: Mapping[str, Any], *, domain: str) -> dict[str, Any]:
    return strip_signature_annotations(document, domain=domain)


def _next_free_index(documents: Sequence[Mapping[str, Any]], *, domain: str, limits: Limits) -> int:
    used: set[int] = set()
    for document in documents:
        annotations = {str(k): v for k, v in annotations_of(document).items()}
        used.update(signature_indexes(annotations, domain=domain))
    index = 0
    while index in used:
        index += 1
    if index >= limits.max_signature_sets:
        raise LimitExceededError(
            f"cannot append signature set {index}: limits.max_signature_sets={limits.max_signature_sets}"
        )
    return index
