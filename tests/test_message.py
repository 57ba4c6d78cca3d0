"""Message decoding (bytes only) and manifest extraction, on real fixtures and hostile input."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import time
import zlib
from collections.abc import Sequence

import pytest

from provider.core.limits import Limits, MiB
from provider.core.message import decode_message, encode_message, gunzip_bounded, manifests_from_message
from provider.core.safeyaml import load_documents
from provider.errors import FormatError, LimitExceededError
from tests.conftest import KMS

LIMITS = Limits()
MESSAGE_KEY = "cosign.sigstore.dev/message"
CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n"


def fixture_message(relative: str) -> str:
    docs = load_documents((KMS / relative).read_bytes(), limits=LIMITS)
    value = docs[0]["metadata"]["annotations"][MESSAGE_KEY]
    assert isinstance(value, str)
    return value


def tarball(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """RAW of the legacy form: a tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def regular(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None


# --- real fixtures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "names"),
    [
        ("pkg/k8smanifest/testdata/sample-configmap-signed.yaml", ["sample-cm-signed"]),
        ("pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml", ["sample-cm"]),
        ("pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml", ["sample-cm"]),
        ("pkg/k8smanifest/testdata/sample-deployment-signed.yaml", ["sample-deployment"]),
        ("example/verify-resource/sample-configmap.yaml.signed", ["sample-cm"]),
    ],
)
def test_fixture_messages_decode(relative: str, names: list[str]) -> None:
    raw = decode_message(fixture_message(relative), limits=LIMITS)
    manifests = manifests_from_message(raw, limits=LIMITS)
    assert [m["metadata"]["name"] for m in manifests] == names


def test_raw_yaml_fixture_message_is_exact_bytes() -> None:
    raw = decode_message(
        fixture_message("pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml"), limits=LIMITS
    )
    assert raw == (
        b"apiVersion: v1\ndata:\n  key1: val1\n  key4: val4\nkind: ConfigMap\nmetadata:\n  name: sample-cm\n"
    )


def test_legacy_fixture_is_double_gzip_with_absolute_member_name() -> None:
    raw = decode_message(
        fixture_message("pkg/k8smanifest/testdata/sample-deployment-signed.yaml"), limits=LIMITS
    )
    assert raw[:2] == b"\x1f\x8b"  # RAW itself is the tar.gz
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        assert all(name.startswith("/") for name in archive.getnames())


# --- decode_message ------------------------------------------------------------------------------


def test_encode_decode_round_trip_and_determinism() -> None:
    assert decode_message(encode_message(CM), limits=LIMITS) == CM
    assert encode_message(CM) == encode_message(CM)


def test_non_gzip_message_is_raw_as_is() -> None:
    text = base64.b64encode(CM).decode()
    assert decode_message(text, limits=LIMITS) == CM


def test_line_broken_base64_accepted() -> None:
    text = encode_message(CM)
    wrapped = "\n".join(text[i : i + 20] for i in range(0, len(text), 20))
    assert decode_message(wrapped, limits=LIMITS) == CM


@pytest.mark.parametrize("text", ["not base64!!", "QUJD=", "QU=JD", "é" * 8, "A"])
def test_bad_base64_is_format_error(text: str) -> None:
    with pytest.raises(FormatError, match="base64"):
        decode_message(text, limits=LIMITS)


def test_huge_annotation_rejected_before_decoding() -> None:
    text = "A" * (200 * MiB)
    start = time.perf_counter()
    with pytest.raises(LimitExceededError, match="max_annotation_bytes"):
        decode_message(text, limits=LIMITS)
    assert time.perf_counter() - start < 1.0


def test_gzip_bomb_stops_at_message_limit() -> None:
    # 256 MiB of zeros compresses to ~256 KiB, far past the 8 MiB message limit.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    bomb = b"".join(compressor.compress(block) for _ in range(256)) + compressor.flush()
    text = base64.b64encode(bomb).decode()
    start = time.perf_counter()
    with pytest.raises(LimitExceededError, match="more than"):
        decode_message(text, limits=LIMITS)
    assert time.perf_counter() - start < 5.0


def test_message_exactly_at_limit_accepted() -> None:
    raw = b"a" * 1000
    assert decode_message(encode_message(raw), limits=Limits(max_message_bytes=1000)) == raw
    with pytest.raises(LimitExceededError):
        decode_message(encode_message(raw), limits=Limits(max_message_bytes=999))


def test_non_gzip_message_over_limit() -> None:
    with pytest.raises(LimitExceededError):
        decode_message(base64.b64encode(b"x" * 100).decode(), limits=Limits(max_message_bytes=99))


def test_truncated_and_corrupt_gzip() -> None:
    good = gzip.compress(CM * 20)
    with pytest.raises(FormatError, match="truncated"):
        decode_message(base64.b64encode(good[: len(good) // 2]).decode(), limits=LIMITS)
    corrupt = good[:12] + bytes(b ^ 0x5A for b in good[12:30]) + good[30:]
    with pytest.raises(FormatError):
        decode_message(base64.b64encode(corrupt).decode(), limits=LIMITS)


def test_multi_member_gzip_and_trailing_garbage() -> None:
    two = gzip.compress(b"a: 1\n") + gzip.compress(b"b: 2\n")
    assert gunzip_bounded(two, limit=100, what="t") == b"a: 1\nb: 2\n"
    with pytest.raises(FormatError, match="trailing"):
        gunzip_bounded(gzip.compress(b"a") + b"junk", limit=100, what="t")


# --- manifests_from_message: raw YAML ------------------------------------------------------------


def test_raw_yaml_documents() -> None:
    raw = CM + b"\n---\n" + CM.replace(b"name: cm", b"name: cm2")
    assert [m["metadata"]["name"] for m in manifests_from_message(raw, limits=LIMITS)] == ["cm", "cm2"]


@pytest.mark.parametrize("raw", [b"- a\n- b\n", b"just a string\n", b"42\n", CM + b"---\n[1]\n"])
def test_non_mapping_document_rejected(raw: bytes) -> None:
    with pytest.raises(FormatError, match="expected a mapping"):
        manifests_from_message(raw, limits=LIMITS)


def test_thousands_of_documents_rejected() -> None:
    raw = b"\n---\n".join([CM] * 5000)
    with pytest.raises(LimitExceededError, match="max_documents"):
        manifests_from_message(raw, limits=LIMITS)


def test_alias_bomb_in_message_rejected() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    with pytest.raises(LimitExceededError):
        manifests_from_message("\n".join(lines).encode(), limits=LIMITS)


# --- manifests_from_message: legacy tarball ------------------------------------------------------


def test_tarball_with_absolute_names_reads_content_only(tmp_path: object) -> None:
    raw = tarball(
        [regular("/var/folders/x/T/tmp123/manifest.yaml", CM), regular("/etc/README.txt", b"ignored")]
    )
    assert manifests_from_message(raw, limits=LIMITS)[0]["metadata"]["name"] == "cm"


def test_tarball_directories_skipped_and_members_in_order() -> None:
    directory = tarfile.TarInfo("/tmp/dir")
    directory.type = tarfile.DIRTYPE
    raw = tarball(
        [
            (directory, None),
            regular("/tmp/dir/b.yml", CM.replace(b"cm", b"b")),
            regular("/tmp/dir/a.yaml", CM),
        ]
    )
    assert [m["metadata"]["name"] for m in manifests_from_message(raw, limits=LIMITS)] == ["b", "cm"]


@pytest.mark.parametrize(
    "name", ["../escape.yaml", "/tmp/../../etc/x.yaml", "a/../../b.yaml", "..\\win.yaml"]
)
def test_tarball_dotdot_rejected(name: str) -> None:
    with pytest.raises(FormatError, match=r"'\.\.'"):
        manifests_from_message(tarball([regular(name, CM)]), limits=LIMITS)


@pytest.mark.parametrize(
    ("kind", "link"),
    [
        (tarfile.SYMTYPE, "/etc/passwd"),
        (tarfile.LNKTYPE, "other.yaml"),
        (tarfile.CHRTYPE, ""),
        (tarfile.BLKTYPE, ""),
        (tarfile.FIFOTYPE, ""),
    ],
)
def test_tarball_links_and_devices_rejected(kind: bytes, link: str) -> None:
    raw = tarball([regular("/tmp/a.yaml", CM), special("/tmp/evil.yaml", kind, link)])
    with pytest.raises(FormatError, match="links, devices"):
        manifests_from_message(raw, limits=LIMITS)


def test_tarball_member_count_limit() -> None:
    members = [regular(f"/tmp/m{i}.txt", b"x") for i in range(2000)]
    start = time.perf_counter()
    with pytest.raises(LimitExceededError, match="max_tar_members"):
        manifests_from_message(tarball(members), limits=LIMITS)
    assert time.perf_counter() - start < 2.0


def test_tarball_without_yaml_rejected() -> None:
    with pytest.raises(FormatError, match=r"no \.yaml"):
        manifests_from_message(tarball([regular("/tmp/notes.txt", b"hello")]), limits=LIMITS)


def test_tarball_inner_bomb_bounded() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    inner = compressor.compress(bytes(64 * MiB)) + compressor.flush()
    with pytest.raises(LimitExceededError):
        manifests_from_message(inner, limits=LIMITS)


def test_tarball_garbage_after_gzip_is_format_error() -> None:
    with pytest.raises(FormatError, match="tar"):
        manifests_from_message(gzip.compress(b"this is not a tar archive" * 40), limits=LIMITS)


def test_tarball_member_with_bad_yaml_names_member() -> None:
    with pytest.raises(FormatError, match=r"m\.yaml"):
        manifests_from_message(tarball([regular("/tmp/m.yaml", b"a: [1\n")]), limits=LIMITS)


def test_tarball_non_mapping_member_rejected() -> None:
    with pytest.raises(FormatError, match="expected a mapping"):
        manifests_from_message(tarball([regular("/tmp/m.yaml", b"- 1\n- 2\n")]), limits=LIMITS)


def test_many_empty_gzip_members_rejected_quickly() -> None:
    member = gzip.compress(b"", mtime=0)
    text = base64.b64encode(member * 30_000).decode()
    start = time.perf_counter()
    with pytest.raises(FormatError, match="gzip members"):
        decode_message(text, limits=LIMITS)
    assert time.perf_counter() - start < 1.0
    assert decode_message(base64.b64encode(member * 16).decode(), limits=LIMITS) == b""


def _raw_tar(info: tarfile.TarInfo, content: bytes) -> bytes:
    """A hand-made tar.gz whose header may lie about its member (tarfile would refuse to write it)."""
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    padding = bytes(-len(content) % 512)
    return gzip.compress(header + content + padding + bytes(1024))


def test_tarball_header_claiming_huge_member_rejected() -> None:
    info = tarfile.TarInfo("/tmp/big.yaml")
    info.size = 10 * 1024**3
    with pytest.raises(LimitExceededError, match=r"big\.yaml"):
        manifests_from_message(_raw_tar(info, b"a: 1\n"), limits=LIMITS)


def test_tarball_sparse_member_rejected() -> None:
    info = tarfile.TarInfo("/tmp/sparse.yaml")
    info.size = 5
    info.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(FormatError, match="sparse"):
        manifests_from_message(_raw_tar(info, b"a: 1\n"), limits=LIMITS)


def test_decode_message_never_parses_yaml() -> None:
    """Bytes first: an alias bomb or invalid YAML decodes to bytes; only parsing rejects it."""
    bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n".encode() for i in range(8)
    )
    for raw in (bomb, b"a: [unclosed\n", b"\xff\xfe not text"):
        assert decode_message(encode_message(raw), limits=LIMITS) == raw
    with pytest.raises(LimitExceededError):
        manifests_from_message(bomb, limits=LIMITS)
