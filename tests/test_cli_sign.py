"""``manifest-provider keygen`` and ``sign`` end to end (in-process CLI, real files, real registry)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.cli import main
from provider.core.annotations import DEFAULT_DOMAIN, bundle_from_annotations
from provider.core.cosignkey import load_private_key
from provider.core.keys import PublicKey, load_public_key
from provider.core.limits import Limits
from provider.core.message import decode_message, manifests_from_message
from provider.core.safeyaml import load_documents
from tests.conftest import KMS
from tests.keyutil import cosign_keypair

LIMITS = Limits()
D = DEFAULT_DOMAIN
KEY_A = KMS / "pkg/k8smanifest/testdata/testkey"
CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  k: v\n"


def cm(name: str) -> bytes:
    return CM.replace(b"name: one", f"name: {name}".encode())


def verified_sets(path_or_bytes: Path | bytes, key: PublicKey) -> list[list[int]]:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    out = []
    for doc in load_documents(data, limits=LIMITS):
        bundle = bundle_from_annotations(doc["metadata"]["annotations"], domain=D, limits=LIMITS)
        assert bundle is not None
        out.append([s.index for s in bundle.signature_sets if key.verify(s.signature, s.payload)])
    return out


def names_in_message(path: Path) -> list[str]:
    doc = load_documents(path.read_bytes(), limits=LIMITS)[0]
    raw = decode_message(doc["metadata"]["annotations"][f"{D}/message"], limits=LIMITS)
    return [m["metadata"]["name"] for m in manifests_from_message(raw, limits=LIMITS)]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def key_a_public() -> PublicKey:
    return load_public_key((KMS / "pkg/k8smanifest/testdata/testpub").read_bytes(), name="A")


# --- keygen --------------------------------------------------------------------------------------


def test_keygen_writes_cosign_pair_and_refuses_overwrite(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("COSIGN_PASSWORD", "hunter2")
    prefix = tmp_path / "release"
    assert main(["keygen", "--output-key-prefix", str(prefix)]) == 0
    key_file, pub_file = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
    assert pub_file.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_private_key(key_file.read_bytes(), password=b"hunter2")
    assert key.public_pem() == pub_file.read_bytes()
    before = key_file.read_bytes()
    capsys.readouterr()
    assert main(["keygen", "--output-key-prefix", str(prefix)]) == 2
    assert "--force" in capsys.readouterr().err
    assert key_file.read_bytes() == before
    assert main(["keygen", "--output-key-prefix", str(prefix), "--force"]) == 0
    assert key_file.read_bytes() != before
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_keygen_refuses_if_only_public_half_exists(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    env.setenv("COSIGN_PASSWORD", "")
    (tmp_path / "cosign.pub").write_text("keep me")
    assert main(["keygen", "--output-key-prefix", str(tmp_path / "cosign")]) == 2
    assert not (tmp_path / "cosign.key").exists()
    assert (tmp_path / "cosign.pub").read_text() == "keep me"


def test_keygen_without_password_source_fails(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--output-key-prefix", str(tmp_path / "k")]) == 2
    assert "COSIGN_PASSWORD" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_keygen_then_sign_then_verify(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    env.setenv("COSIGN_PASSWORD", "pw")
    assert main(["keygen", "--output-key-prefix", str(tmp_path / "cosign")]) == 0
    manifest = tmp_path / "app.yaml"
    manifest.write_bytes(cm("a") + b"---\n" + cm("b"))
    assert main(["sign", "-f", str(manifest), "-k", str(tmp_path / "cosign.key")]) == 0
    public = load_public_key((tmp_path / "cosign.pub").read_bytes(), name="gen")
    assert verified_sets(tmp_path / "app.yaml.signed", public) == [[0], [0]]


# --- sign ----------------------------------------------------------------------------------------


def test_sign_with_fixture_testkey_default_output(
    tmp_path: Path, env: pytest.MonkeyPatch, key_a_public: PublicKey
) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_bytes(CM)
    assert main(["sign", "-f", str(manifest), "-k", str(KEY_A)]) == 0
    assert verified_sets(tmp_path / "cm.yaml.signed", key_a_public) == [[0]]


def test_sign_to_stdout(
    tmp_path: Path,
    env: pytest.MonkeyPatch,
    key_a_public: PublicKey,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_bytes(CM)
    assert main(["sign", "-f", str(manifest), "-k", str(KEY_A), "--output", "-"]) == 0
    assert verified_sets(capsysbinary.readouterr().out, key_a_public) == [[0]]
    assert not (tmp_path / "cm.yaml.signed").exists()


def test_sign_directory_as_one_sorted_bundle(
    tmp_path: Path, env: pytest.MonkeyPatch, key_a_public: PublicKey
) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "b.yml").write_bytes(cm("b"))
    (folder / "a.yaml").write_bytes(cm("a1") + b"---\n" + cm("a2"))
    (folder / "c.yaml").write_bytes(cm("c"))
    (folder / "notes.txt").write_text("not yaml")
    (folder / "sub").mkdir()
    (folder / "sub" / "z.yaml").write_bytes(cm("nested"))
    assert main(["sign", "-f", str(folder), "-k", str(KEY_A)]) == 0
    output = tmp_path / "app.yaml.signed"
    assert names_in_message(output) == ["a1", "a2", "b", "c"]
    assert verified_sets(output, key_a_public) == [[0]] * 4
    assert not list(folder.glob("*.signed"))


def test_sign_append_via_cli(tmp_path: Path, env: pytest.MonkeyPatch, key_a_public: PublicKey) -> None:
    env.setenv("COSIGN_PASSWORD", "")
    other_key, other_pub = cosign_keypair(b"")
    (tmp_path / "other.key").write_bytes(other_key)
    manifest = tmp_path / "cm.yaml"
    manifest.write_bytes(CM)
    assert main(["sign", "-f", str(manifest), "-k", str(KEY_A)]) == 0
    signed = tmp_path / "cm.yaml.signed"
    twice = tmp_path / "twice.yaml"
    assert (
        main(["sign", "-f", str(signed), "-k", str(tmp_path / "other.key"), "--append", "-o", str(twice)])
        == 0
    )
    assert verified_sets(twice, key_a_public) == [[0]]
    assert verified_sets(twice, load_public_key(other_pub, name="o")) == [[1]]


def test_sign_plain_pkcs8_key(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "cm.yaml").write_bytes(CM)
    assert main(["sign", "-f", str(tmp_path / "cm.yaml"), "-k", str(tmp_path / "k.pem")]) == 0
    assert verified_sets(tmp_path / "cm.yaml.signed", load_public_key(public_pem, name="p")) == [[0]]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda d: (d / "cm.yaml").write_bytes(b"- not\n- a manifest\n"), "expected a mapping"),
        (lambda d: (d / "cm.yaml").write_bytes(b"a: [unclosed\n"), "YAML"),
        (lambda d: None, "cm.yaml"),
        (lambda d: (d / "cm.yaml").mkdir() and None, "no *.yaml"),
    ],
)
def test_sign_bad_input_exit_2(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], setup: Any, expected: str
) -> None:
    setup(tmp_path)
    assert main(["sign", "-f", str(tmp_path / "cm.yaml"), "-k", str(KEY_A)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1


def test_sign_wrong_password_and_bad_key(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cm.yaml").write_bytes(CM)
    env.setenv("COSIGN_PASSWORD", "not-the-password")
    assert main(["sign", "-f", str(tmp_path / "cm.yaml"), "-k", str(KEY_A)]) == 2
    assert "decryption failed" in capsys.readouterr().err
    (tmp_path / "junk.key").write_bytes(b"junk")
    assert main(["sign", "-f", str(tmp_path / "cm.yaml"), "-k", str(tmp_path / "junk.key")]) == 2
    assert main(["sign", "-f", str(tmp_path / "cm.yaml"), "-k", str(tmp_path / "missing.key")]) == 2
    assert not (tmp_path / "cm.yaml.signed").exists()


def test_append_and_image_are_exclusive(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    (tmp_path / "cm.yaml").write_bytes(CM)
    args = ["sign", "-f", str(tmp_path / "cm.yaml"), "-k", str(KEY_A), "--append", "--image", "r.example/x:1"]
    assert main(args) == 2


# --- sign --image against the real registry ------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.registry import have_registry, running_registry

    if not have_registry():
        pytest.skip("docker-registry binary not installed")
    with running_registry(tmp_path_factory.mktemp("signreg")) as reg:
        yield reg


@pytest.mark.registry
def test_sign_image_pushes_bundle_and_annotates_reference(
    tmp_path: Path, env: pytest.MonkeyPatch, key_a_public: PublicKey, registry: Any
) -> None:
    from provider.sources.oci import OciBundleResolver, RegistrySettings

    env.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    (tmp_path / "cm.yaml").write_bytes(cm("a") + b"---\n" + cm("b"))
    ref = f"{registry.host}/signed/bundle:v1"
    args = [
        "sign",
        "-f",
        str(tmp_path / "cm.yaml"),
        "-k",
        str(KEY_A),
        "--image",
        ref,
        "--allow-insecure-registry",
    ]
    assert main(args) == 0
    docs = load_documents((tmp_path / "cm.yaml.signed").read_bytes(), limits=LIMITS)
    for doc in docs:
        annotations = doc["metadata"]["annotations"]
        assert annotations == {f"{D}/resourceBundleRef": ref}
    settings = RegistrySettings.from_mapping({"allow": [registry.host], "insecure": [registry.host]})
    bundle = OciBundleResolver(settings).resolve(ref)
    assert [m["metadata"]["name"] for m in manifests_from_message(bundle.message, limits=LIMITS)] == [
        "a",
        "b",
    ]
    assert any(key_a_public.verify(s.signature, s.payload) for s in bundle.signature_sets)


def test_sign_stdin_to_stdout(
    env: pytest.MonkeyPatch, key_a_public: PublicKey, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    import io
    import sys

    env.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(cm("piped"))))
    assert main(["sign", "-f", "-", "-k", str(KEY_A)]) == 0
    out = capsysbinary.readouterr().out
    assert verified_sets(out, key_a_public) == [[0]]
    assert b"name: piped" in out


def test_signed_output_passes_the_verify_command(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """sign then verify through the CLI; a tampered copy fails with exit 1."""
    manifest = tmp_path / "app.yaml"
    manifest.write_bytes(cm("a") + b"---\n" + cm("b"))
    assert main(["sign", "-f", str(manifest), "-k", str(KEY_A)]) == 0
    pub = KMS / "pkg/k8smanifest/testdata/testpub"
    signed = tmp_path / "app.yaml.signed"
    assert main(["verify", "-f", str(signed), "-k", f"A={pub}"]) == 0
    tampered = tmp_path / "tampered.yaml"
    tampered.write_bytes(signed.read_bytes().replace(b"k: v", b"k: changed", 1))
    assert main(["verify", "-f", str(tampered), "-k", f"A={pub}"]) == 1
    other = KMS / "pkg/cosign/testdata/testpub"
    assert main(["verify", "-f", str(signed), "-k", f"B={other}"]) == 1
    capsys.readouterr()


def _run_on_terminal(argv: list[str], answers: list[bytes], cwd: Path) -> tuple[int, bytes]:
    """Run the CLI in a child process whose controlling terminal is a real pseudo-terminal.

    Each answer is typed when a prompt mentioning "password" appears.
    """
    import os
    import pty
    import select
    import sys
    import time

    root = str(Path(__file__).resolve().parent.parent)
    pid, fd = pty.fork()
    if pid == 0:  # child: becomes the CLI, or exits; never returns into pytest
        try:
            os.chdir(cwd)
            child_env = {k: v for k, v in os.environ.items() if k != "COSIGN_PASSWORD"}
            child_env["PYTHONPATH"] = root
            os.execve(sys.executable, [sys.executable, "-m", "provider", *argv], child_env)
        finally:
            os._exit(127)
    output = b""
    pending = list(answers)
    answered = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            # A prompt may arrive over several reads: look at everything since the last answer.
            if pending and b"password" in output[answered:].lower():
                os.write(fd, pending.pop(0) + b"\n")
                answered = len(output)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_password_prompts_on_a_terminal(tmp_path: Path) -> None:
    code, output = _run_on_terminal(["keygen"], [b"typed-pw", b"typed-pw"], tmp_path)
    assert code == 0, output
    assert output.count(b"Enter password") == 2
    key = load_private_key((tmp_path / "cosign.key").read_bytes(), password=b"typed-pw")
    (tmp_path / "cm.yaml").write_bytes(CM)
    code, output = _run_on_terminal(["sign", "-f", "cm.yaml", "-k", "cosign.key"], [b"typed-pw"], tmp_path)
    assert code == 0, output
    assert verified_sets(tmp_path / "cm.yaml.signed", key.public_key()) == [[0]]
    code, output = _run_on_terminal(["keygen", "--output-key-prefix", "other"], [b"one", b"two"], tmp_path)
    assert code == 2 and b"do not match" in output
    assert not (tmp_path / "other.key").exists()
