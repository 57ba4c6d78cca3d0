"""``sign --image`` and ``push_signed_bundle`` end to end on the real ``docker-registry``.

Push a signed bundle, pull it back through :class:`OciBundleResolver`, and
check it with the project's own keys module and verifier, as a cluster would.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.cli import main
from provider.core.cosignkey import PrivateKey, generate_keypair
from provider.core.keys import load_public_key
from provider.core.verdict import Reason
from provider.core.verifier import TrustPolicy, Verifier
from provider.sources.oci import (
    ANNOTATION_SIGNATURE,
    MEDIA_SIMPLE_SIGNING,
    OciBundleResolver,
    RegistrySettings,
    parse_reference,
    push_signed_bundle,
    signature_tag,
)
from provider.sources.ocihttp import RegistryClient
from tests.registry import RunningRegistry, have_registry, registry_fixture

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not have_registry(), reason="needs /usr/bin/docker-registry (Debian docker-registry)"),
]

MANIFESTS = b"""apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
data:
  color: blue
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: team
spec:
  ports:
  - port: 80
"""


registry = registry_fixture("registry")
basic_registry = registry_fixture("basic_registry", htpasswd={"ci": "push-pw"})
tls_registry = registry_fixture("tls_registry", tls=True)


@pytest.fixture(scope="module")
def cosign_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """(encrypted cosign private key file, public PEM); one scrypt run per module."""
    private_pem, public_pem = generate_keypair(password=b"")
    path = tmp_path_factory.mktemp("keys") / "cosign.key"
    path.write_bytes(private_pem)
    return path, public_pem


def pull_settings(reg: RunningRegistry) -> RegistrySettings:
    return RegistrySettings.from_mapping({"allow": [reg.host], "insecure": [reg.host]})


def test_push_pull_verify_with_keys_module(registry: RunningRegistry) -> None:
    key = PrivateKey.generate()
    ref = f"{registry.host}/bundles/direct:v1"
    settings = RegistrySettings.for_push(ref, insecure=True)
    digest = push_signed_bundle(ref, MANIFESTS, key, settings=settings)
    bundle = OciBundleResolver(pull_settings(registry)).resolve(ref)
    assert bundle.message == MANIFESTS and bundle.manifest_digest == digest
    (sset,) = bundle.signature_sets
    assert load_public_key(key.public_pem(), name="k").verify(sset.signature, sset.payload)
    assert not load_public_key(PrivateKey.generate().public_pem(), name="x").verify(
        sset.signature, sset.payload
    )
    # The exact payload cosign signs: compact JSON, keys in cosign's order.
    expected = (
        b'{"critical":{"identity":{"docker-reference":"' + registry.host.encode() + b'/bundles/direct"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert sset.payload == expected


def test_pushed_layout_is_what_cosign_reads(registry: RunningRegistry) -> None:
    key = PrivateKey.generate()
    ref = f"{registry.host}/bundles/layout:v1"
    settings = RegistrySettings.for_push(ref, insecure=True)
    digest = push_signed_bundle(ref, MANIFESTS, key, settings=settings)
    client = RegistryClient(pull_settings(registry))
    manifest, content_type = client.get_manifest(registry.host, "bundles/layout", "v1")
    assert hashlib.sha256(manifest).hexdigest() == digest.split(":")[1]
    doc = json.loads(manifest)
    assert content_type == doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    (layer,) = doc["layers"]
    assert layer["mediaType"] == "text/plain"
    config = json.loads(
        client.get_blob(
            registry.host,
            "bundles/layout",
            doc["config"]["digest"],
            size=doc["config"]["size"],
            max_bytes=4096,
        )
    )
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    sig_manifest, _ = client.get_manifest(registry.host, "bundles/layout", signature_tag(digest))
    sig_doc = json.loads(sig_manifest)
    (sig_layer,) = sig_doc["layers"]
    assert sig_layer["mediaType"] == MEDIA_SIMPLE_SIGNING
    payload = client.get_blob(
        registry.host, "bundles/layout", sig_layer["digest"], size=sig_layer["size"], max_bytes=4096
    )
    signature = base64.b64decode(sig_layer["annotations"][ANNOTATION_SIGNATURE])
    assert load_public_key(key.public_pem(), name="k").verify(signature, payload)


def test_push_refuses_digest_references_and_unlisted_targets(registry: RunningRegistry) -> None:
    from provider.errors import FormatError, ReferenceNotAllowedError

    key = PrivateKey.generate()
    ref = f"{registry.host}/bundles/x@sha256:" + "0" * 64
    with pytest.raises(FormatError, match="tag"):
        push_signed_bundle(ref, MANIFESTS, key, settings=RegistrySettings.for_push(ref, insecure=True))
    with pytest.raises(ReferenceNotAllowedError):
        push_signed_bundle(f"{registry.host}/bundles/y:v1", MANIFESTS, key, settings=RegistrySettings())


def objects_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_bytes()) if d]


def test_cli_sign_image_round_trip(
    registry: RunningRegistry,
    cosign_key: tuple[Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    key_path, public_pem = cosign_key
    source = tmp_path / "app.yaml"
    source.write_bytes(MANIFESTS)
    out = tmp_path / "app.yaml.signed"
    ref = f"{registry.host}/bundles/cli:v1"
    code = main(
        [
            "sign",
            "-f",
            str(source),
            "-k",
            str(key_path),
            "--image",
            ref,
            "--allow-insecure-registry",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"pushed signed bundle {ref}@sha256:" in err
    pushed_digest = err.split(f"{ref}@", 1)[1].split()[0]

    objects = objects_of(out)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service"]
    for obj in objects:
        assert obj["metadata"]["annotations"]["cosign.sigstore.dev/resourceBundleRef"] == ref

    resolver = OciBundleResolver(pull_settings(registry))
    assert resolver.resolve(ref).manifest_digest == pushed_digest
    trust = TrustPolicy(keys=(load_public_key(public_pem, name="release"),))
    verifier = Verifier(trust, resolver=resolver)
    for obj in objects:
        verdict = verifier.verify(obj)
        assert verdict.reason is Reason.VERIFIED, verdict.to_json()
    # A change to the live object is caught against the pulled message.
    changed = json.loads(json.dumps(objects[0]))
    changed["data"]["color"] = "red"
    assert verifier.verify(changed).reason is Reason.MANIFEST_MISMATCH
    # Another key does not verify the pulled signature.
    stranger = TrustPolicy(keys=(load_public_key(PrivateKey.generate().public_pem(), name="other"),))
    assert Verifier(stranger, resolver=resolver).verify(objects[0]).reason is Reason.BAD_SIGNATURE
    # A registry outside the allow list is a verdict, not an error.
    closed = Verifier(trust, resolver=OciBundleResolver(RegistrySettings()))
    assert closed.verify(objects[0]).reason is Reason.REFERENCE_NOT_ALLOWED


def _sign_image_argv(tmp_path: Path, key_path: Path, ref: str) -> list[str]:
    """``sign --image`` arguments for the test manifests, written to ``tmp_path/app.yaml``."""
    source = tmp_path / "app.yaml"
    source.write_bytes(MANIFESTS)
    return ["sign", "-f", str(source), "-k", str(key_path), "--image", ref]


def test_cli_sign_image_without_insecure_flag_fails_cleanly(
    registry: RunningRegistry,
    cosign_key: tuple[Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    ref = f"{registry.host}/bundles/cli-https:v1"
    code = main([*_sign_image_argv(tmp_path, cosign_key[0], ref), "-o", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TLS" in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_insecure_flag_accepts_an_unknown_certificate(
    tls_registry: RunningRegistry,
    cosign_key: tuple[Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    ref = f"{tls_registry.host}/bundles/selfsigned:v1"
    argv = [*_sign_image_argv(tmp_path, cosign_key[0], ref), "-o", str(tmp_path / "o")]
    assert main(argv) == 2  # the registry's CA is not trusted
    assert "TLS" in capsys.readouterr().err
    assert main([*argv, "--allow-insecure-registry"]) == 0, capsys.readouterr().err
    # It went over TLS (the registry speaks nothing else); a pull that trusts the CA sees it.
    settings = RegistrySettings.from_mapping(
        {"allow": [tls_registry.host], "caFile": str(tls_registry.ca_file)}
    )
    assert OciBundleResolver(settings).resolve(ref).message.startswith(b"apiVersion: v1")


def test_cli_sign_image_uses_docker_config_credentials(
    basic_registry: RunningRegistry,
    cosign_key: tuple[Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(b"ci:push-pw").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    ref = f"{basic_registry.host}/bundles/authed:v1"
    argv = [*_sign_image_argv(tmp_path, cosign_key[0], ref), "--allow-insecure-registry"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    settings = RegistrySettings.from_mapping(
        {
            "allow": [basic_registry.host],
            "insecure": [basic_registry.host],
            "credentials": [{"registry": basic_registry.host, "username": "ci", "password": "push-pw"}],
        }
    )
    assert OciBundleResolver(settings).resolve(ref).message.startswith(b"apiVersion: v1")

    (docker / "config.json").write_text(json.dumps({"auths": {}}))
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "requires authentication" in err and "push-pw" not in err


def test_keyless_signed_bundle_verifies_through_the_verifier(registry: RunningRegistry) -> None:
    """A keyless signature on the .sig image (certificate, chain, Rekor bundle) verifies end to end."""
    from provider.core.keyless import KeylessIdentity
    from provider.core.trustroot import TrustedRoot
    from provider.sources.oci import push_signature, simple_signing_payload
    from tests.sigstorekit import SigstoreKit

    ref = f"{registry.host}/bundles/keyless:v1"
    key = PrivateKey.generate()  # an untrusted keyed signature sits next to the keyless one
    digest = push_signed_bundle(ref, MANIFESTS, key, settings=RegistrySettings.for_push(ref, insecure=True))
    kit = SigstoreKit.create()
    payload = simple_signing_payload(parse_reference(ref), digest)
    material = kit.sign(payload, identity="release@example.com")
    push_signature(
        ref,
        digest,
        payload,
        material.signature,
        settings=RegistrySettings.for_push(ref, insecure=True),
        certificate=material.certificate_pem,
        chain=material.chain_pem,
        rekor_bundle=material.rekor_bundle_json,
    )
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "settings",
            "namespace": "team",
            "annotations": {"cosign.sigstore.dev/resourceBundleRef": ref},
        },
        "data": {"color": "blue"},
    }
    root = TrustedRoot.from_json(kit.trusted_root_json())
    resolver = OciBundleResolver(pull_settings(registry))

    def verdict_for(subject: str) -> Any:
        identity = KeylessIdentity(issuer="https://oauth2.sigstore.test/auth", subject=subject)
        trust = TrustPolicy(identities=(identity,), trusted_root=root)
        return Verifier(trust, resolver=resolver).verify(obj)

    verdict = verdict_for("release@example.com")
    assert verdict.reason is Reason.VERIFIED, verdict.to_json()
    assert verdict_for("someone-else@example.com").reason is Reason.UNTRUSTED_SIGNER


def test_reference_parsing_matches_what_sign_writes(registry: RunningRegistry) -> None:
    ref = parse_reference(f"{registry.host}/bundles/cli:v1")
    assert ref.name == f"{registry.host}/bundles/cli" and ref.tag == "v1"
