"""The signed message: decoding it to bytes, and (later) to manifests.

Verify bytes first, parse second. :func:`decode_message` turns the
``<domain>/message`` annotation into the exact signed bytes (RAW) and nothing
else; :func:`manifests_from_message` parses RAW and is only called once a
signature over RAW verified.

RAW has two forms:

* concatenated YAML documents, separated by ``\\n---\\n`` (current form);
* legacy: a tar.gz holding the signed YAML file(s). Member names are the
  absolute temporary paths of the signing machine, so names are never used as
  paths: only the *content* of regular ``.yaml``/``.yml`` members is read, in
  memory. Directory entries are skipped; symbolic links, hard links, devices,
  FIFOs and sparse members are rejected (a signer's tool never writes them),
  as are names with a ``..`` component.

Every decompression is streamed through a bounded ``zlib`` object, so a gzip
bomb costs at most ``limits.max_message_bytes`` of memory.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import logging
import tarfile
import zlib
from collections.abc import Mapping
from typing import Any

from provider.core.limits import Limits
from provider.core.safeyaml import load_documents
from provider.errors import FormatError, LimitExceededError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
_YAML_SUFFIXES = (".yaml", ".yml")
# Writers emit one gzip member; a few concatenated ones are valid gzip, thousands are an attack.
_MAX_GZIP_MEMBERS = 16


def decode_base64(text: str, *, what: str, limits: Limits) -> bytes:
    """Strict standard base64 (line breaks tolerated), size-checked first."""
    if len(text) > limits.max_annotation_bytes:
        raise LimitExceededError(
            f"{what} is {len(text)} characters, above limits.max_annotation_bytes={limits.max_annotation_bytes}"
        )
    compact = "".join(text.split())
    if len(compact) % 4:
        raise FormatError(f"{what} is not valid base64 (length {len(compact)} is not a multiple of 4)")
    try:
        return base64.b64decode(compact.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise FormatError(f"{what} is not valid base64 ({exc})") from exc


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def gunzip_bounded(data: bytes, *, limit: int, what: str) -> bytes:
    """Decompress (possibly multi-member) gzip ``data`` to at most ``limit`` bytes."""
    out = bytearray()
    rest = data
    for _ in range(_MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while pending:
                chunk = inflater.decompress(pending, limit - len(out) + 1)
                out += chunk
                if len(out) > limit:
                    raise LimitExceededError(f"{what} decompresses to more than {limit} bytes")
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
        except zlib.error as exc:
            raise FormatError(f"{what} is not valid gzip ({exc})") from exc
        if not inflater.eof:
            raise FormatError(f"{what} is truncated gzip data")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)
        if not is_gzip(rest):
            raise FormatError(f"{what} has {len(rest)} bytes of trailing data after the gzip stream")
    raise FormatError(f"{what} has more than {_MAX_GZIP_MEMBERS} concatenated gzip members")


def decode_message(text: str, *, limits: Limits) -> bytes:
    """The RAW signed bytes of a ``message`` annotation (base64 of gzip, or of RAW itself)."""
    decoded = decode_base64(text, what="message annotation", limits=limits)
    if not is_gzip(decoded):
        # The original tool accepts a message that is not gzip as RAW itself.
        if len(decoded) > limits.max_message_bytes:
            raise LimitExceededError(
                f"message is {len(decoded)} bytes, above limits.max_message_bytes={limits.max_message_bytes}"
            )
        return decoded
    return gunzip_bounded(decoded, limit=limits.max_message_bytes, what="message")


def encode_message(raw: bytes) -> str:
    """base64(gzip(raw)) with a zero mtime, so equal RAW gives an equal annotation."""
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def manifests_from_message(raw: bytes, *, limits: Limits) -> list[dict[str, Any]]:
    """Parse verified RAW bytes into manifests (mappings), within ``limits``."""
    if is_gzip(raw):
        documents: list[Any] = []
        for name, content in _tar_yaml_members(raw, limits=limits):
            try:
                documents.extend(load_documents(content, limits=limits))
            except LimitExceededError:
                raise
            except FormatError as exc:
                raise FormatError(f"tarball member {name!r}: {exc}") from exc
            if len(documents) > limits.max_documents:
                raise LimitExceededError(
                    f"message has more than limits.max_documents={limits.max_documents} documents"
                )
    else:
        documents = load_documents(raw, limits=limits)
    manifests: list[dict[str, Any]] = []
    for index, document in enumerate(documents):
        if not isinstance(document, Mapping):
            raise FormatError(
                f"message document {index} is a {type(document).__name__}, expected a mapping (a manifest)"
            )
        manifests.append(dict(document))
    return manifests


def _tar_yaml_members(raw: bytes, *, limits: Limits) -> list[tuple[str, bytes]]:
    """Content of the regular YAML members of a legacy tar.gz message, in archive order."""
    tar_bytes = gunzip_bounded(raw, limit=limits.max_message_bytes, what="message tarball")
    found: list[tuple[str, bytes]] = []
    members = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
            while True:
                member = archive.next()
                if member is None:
                    break
                members += 1
                if members > limits.max_tar_members:
                    raise LimitExceededError(
                        f"message tarball has more than limits.max_tar_members={limits.max_tar_members} members"
                    )
                name = member.name
                if ".." in name.replace("\\", "/").split("/"):
                    raise FormatError(f"message tarball member {name[:120]!r} has a '..' path component")
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    raise FormatError(
                        f"message tarball member {name[:120]!r} is not a regular file or directory "
                        f"(type {member.type!r}); links, devices and sparse files are rejected"
                    )
                if not name.lower().endswith(_YAML_SUFFIXES):
                    continue
                if member.size > limits.max_message_bytes:
                    raise LimitExceededError(
                        f"message tarball member {name[:120]!r} is {member.size} bytes, "
                        f"above limits.max_message_bytes={limits.max_message_bytes}"
                    )
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - isreg() members always have content
                    continue
                found.append((name, handle.read()))
    except tarfile.TarError as exc:
        raise FormatError(f"message tarball is not a valid tar archive ({exc})") from exc
    if not found:
        raise FormatError("message tarball holds no .yaml/.yml file")
    return found
