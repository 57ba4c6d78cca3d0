"""``manifest-provider defaults``: both output forms, the domain option and bad usage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from provider.cli import EXIT_OK, EXIT_USAGE, main
from provider.core.ignore import DEFAULT_IGNORE_RULES, default_ignore_rules, parse_ignore_fields
from provider.core.k8sdefaults import describe_table


def test_json_output_is_the_config_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["defaults", "-o", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"ignoreFields", "defaults"}
    # The printed rules can be pasted into a configuration file unchanged.
    assert parse_ignore_fields(doc["ignoreFields"], where="ignoreFields") == DEFAULT_IGNORE_RULES
    assert doc["defaults"] == describe_table()


def test_domain_changes_the_signature_annotations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["defaults", "-o", "json", "--domain", "sig.example.org"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    rules = parse_ignore_fields(doc["ignoreFields"], where="ignoreFields")
    assert rules == default_ignore_rules("sig.example.org")
    fields = [f for rule in doc["ignoreFields"] for f in rule["fields"]]
    assert "metadata.annotations.sig.example.org/message" in fields
    assert not any("cosign.sigstore.dev" in f for f in fields)


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["defaults"]) == EXIT_OK
    out = capsys.readouterr().out
    ignored, _, defaults = out.partition("Server defaults")
    assert "OBJECTS" in ignored and "FIELD" in ignored
    assert "metadata.managedFields" in ignored
    assert "metadata.annotations.cosign.sigstore.dev/signature*" in ignored
    assert "apps/Deployment" in ignored and "deployment.kubernetes.io/revision" in ignored
    lines = defaults.splitlines()
    assert any(line.split()[:3] == ["apps/Deployment", "spec.replicas", "1"] for line in lines)
    assert any(line.split()[:3] == ["PodSpec", "dnsPolicy", "ClusterFirst"] for line in lines)
    assert any(line.split()[:2] == ["core/Service", "spec.ports.*.targetPort"] for line in lines)
    # One line per row plus the headings.
    assert len(lines) == len(describe_table()) + 2


@pytest.mark.parametrize(
    "argv",
    [
        ["defaults", "-o", "yaml"],
        ["defaults", "--domain", ""],
        ["defaults", "--domain", "a/b"],
        ["defaults", "--domain", "has space"],
        ["defaults", "extra"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() and len(err.strip().splitlines()) <= 3


def test_runs_as_a_program() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "provider", "defaults", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ignoreFields"]
