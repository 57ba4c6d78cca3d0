"""``manifest-provider verify``: exit codes, outputs and trust options, on the real fixtures."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from provider.cli import main
from tests.conftest import KMS, SHARED_FIXTURES

SIGNED_CM = KMS / "pkg/k8smanifest/testdata/sample-configmap-signed.yaml"
MULTI = KMS / "pkg/k8smanifest/testdata/sample-configmap-multi-signed.yaml"
KEYLESS = KMS / "pkg/k8smanifest/testdata/sample-configmap-keyless-multi-signed.yaml"
TRUSTED_ROOT = SHARED_FIXTURES / "sigstore/trusted_root_pgi.json"


@pytest.fixture
def key_a(tmp_path: Path) -> Path:
    # testpub holds base64 of the PEM; -k takes it as it is.
    return KMS / "pkg/k8smanifest/testdata/testpub"


@pytest.fixture
def key_c() -> Path:
    return KMS / "example/verify-resource/cosign.pub"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_signed_file_verifies_with_its_key(capsys: pytest.CaptureFixture[str], key_a: Path) -> None:
    code, out, err = run(capsys, "-f", str(SIGNED_CM), "-k", str(key_a))
    assert code == 0, err
    assert "VERIFIED" in out and "1 object(s): 1 verified, 0 failed" in out


def test_wrong_key_exits_1_with_one_line_reason(capsys: pytest.CaptureFixture[str], key_c: Path) -> None:
    code, out, err = run(capsys, "-f", str(SIGNED_CM), "-k", str(key_c))
    assert code == 1
    assert "BAD_SIGNATURE" in out
    assert err.count("\n") == 1 and "BAD_SIGNATURE" in err


def test_json_output_has_summary_and_verdicts(
    capsys: pytest.CaptureFixture[str], key_a: Path, key_c: Path
) -> None:
    code, out, _ = run(capsys, "-f", str(MULTI), "-k", f"a={key_a},c={key_c}", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["summary"] == {"total": 1, "verified": 1, "failed": 0, "failedByReason": {}}
    (verdict,) = doc["verdicts"]
    assert verdict["schema"] == 1
    assert sorted((s["index"], s["name"]) for s in verdict["signers"]) == [(0, "c"), (1, "a")]


def test_list_of_live_objects_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_a: Path
) -> None:
    signed = yaml.safe_load(SIGNED_CM.read_text())
    tampered = json.loads(json.dumps(signed))
    tampered["metadata"]["name"] = "renamed"
    listing = {"apiVersion": "v1", "kind": "List", "items": [signed, tampered]}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(listing).encode())))
    code, out, err = run(capsys, "-f", "-", "-k", str(key_a))
    assert code == 1
    assert "1 verified, 1 failed" in out and "NOT_IN_BUNDLE" in out
    assert "1 of 2 object(s) not verified" in err


def test_keyless_flags_in_cosign_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "-f",
        str(KEYLESS),
        "--trusted-root",
        str(TRUSTED_ROOT),
        "--certificate-identity",
        "hkitahar@redhat.com",
        "--certificate-oidc-issuer",
        "https://accounts.google.com",
        "-o",
        "json",
    )
    assert code == 0, err
    (verdict,) = json.loads(out)["verdicts"]
    assert [s["name"] for s in verdict["signers"]] == ["hkitahar@redhat.com"]


def test_keyless_identity_regexp_mismatch_is_untrusted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "-f",
        str(KEYLESS),
        "--trusted-root",
        str(TRUSTED_ROOT),
        "--certificate-identity-regexp",
        ".*@example\\.com",
        "--certificate-oidc-issuer-regexp",
        "https://.*",
    )
    assert code == 1 and "UNTRUSTED_SIGNER" in out


def test_config_file_supplies_keys_and_ignore_rules(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_a: Path
) -> None:
    signed = yaml.safe_load(SIGNED_CM.read_text())
    first = next(iter(signed["data"]))
    signed["data"][first] = "edited by an operator"
    live = tmp_path / "live.yaml"
    live.write_text(yaml.safe_dump(signed))
    pem = base64.b64decode(key_a.read_bytes()).decode()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "keys": [{"name": "team-a", "pem": pem}],
                "ignoreFields": [{"objects": [{"kind": "ConfigMap"}], "fields": [f"data.{first}"]}],
            }
        )
    )
    code, out, err = run(capsys, "-f", str(live), "--config", str(config), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["verdicts"][0]["signers"][0]["name"] == "team-a"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-f", "/nonexistent.yaml", "-k", "KEY"], "No such file"),
        (["-f", str(SIGNED_CM), "-k", "/nonexistent.pub"], "key /nonexistent.pub"),
        (["-f", str(SIGNED_CM)], "no trust given"),
        (["-f", str(SIGNED_CM), "-k", str(SIGNED_CM)], "key "),
        (["-f", str(KEYLESS), "--certificate-identity", "x"], "--trusted-root"),
    ],
)
def test_unusable_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    argv = [str(KMS / "pkg/k8smanifest/testdata/testpub") if a == "KEY" else a for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err and err.count("\n") == 1


def test_file_that_is_not_objects_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_a: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    code, _, err = run(capsys, "-f", str(bad), "-k", str(key_a))
    assert code == 2 and "not a mapping" in err


def test_console_script_runs_the_same_command(key_a: Path) -> None:
    exe = Path(sys.executable).with_name("manifest-provider")
    proc = subprocess.run(
        [str(exe), "verify", "-f", str(SIGNED_CM), "-k", str(key_a), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["verified"] == 1
