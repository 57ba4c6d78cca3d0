"""Sign -> object -> template -> provider -> violations, with the real provider.

The provider is the real one: ``manifest-provider serve`` (gunicorn, mutual
TLS 1.3, started by ``tests/providerproc.py``) reached the way Gatekeeper
reaches it, or its request handler in-process (same wire code, no network).
Objects are signed freshly with generated keys. The only fake here is the
tiny TLS server in ``test_malformed_verdict_from_a_fake_provider``, which
answers a verdict missing a field, something the real provider never does.
"""

from __future__ import annotations

import copy
import http.server
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.cli import main
from provider.cli.policy import in_process_transport
from provider.core.signing import sign_documents
from provider.policy import (
    Constraint,
    EngineKind,
    ExternalData,
    HttpsTransport,
    Operation,
    PolicyEvaluator,
    Template,
    Transport,
    Violation,
    admission_review,
    audit_review,
)
from tests.keyutil import keypair
from tests.providerproc import ProviderProcess, make_tls_material, run_provider

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "rego" / "k8ssignedmanifests"
SAMPLES = TEMPLATE_DIR / "samples"
CURRENT = Template.from_file(TEMPLATE_DIR / "template.yaml")
LEGACY = Template.from_file(TEMPLATE_DIR / "template-v0.yaml")


def _load_samples_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("rego_samples", ROOT / "rego" / "samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


samples = _load_samples_module()


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


DEAD_REGISTRY = f"127.0.0.1:{free_closed_port()}"


def sign(obj: dict[str, Any], label: str) -> dict[str, Any]:
    signed: dict[str, Any] = yaml.safe_load(sign_documents(yaml.safe_dump(obj).encode(), keypair(label)[0]))
    return signed


def deployment(name: str = "web", namespace: str = "shop") -> dict[str, Any]:
    manifest: dict[str, Any] = samples.deployment(name, namespace)
    return manifest


def as_live(obj: dict[str, Any]) -> dict[str, Any]:
    """The Deployment as the API server returns it: defaults, status, bookkeeping."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update(
        uid="7d1c2a52-6f4e-4a8e-9a77-0d7d6a3c1e01",
        resourceVersion="123456",
        generation=1,
        creationTimestamp="2026-11-24T10:00:00Z",
        managedFields=[
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}},
            }
        ],
    )
    meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
    spec = live["spec"]
    spec.update(
        progressDeadlineSeconds=600,
        revisionHistoryLimit=10,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
    )
    pod = spec["template"]
    pod["metadata"]["creationTimestamp"] = None
    pod["spec"].update(
        dnsPolicy="ClusterFirst",
        restartPolicy="Always",
        schedulerName="default-scheduler",
        securityContext={},
        terminationGracePeriodSeconds=30,
    )
    for c in pod["spec"]["containers"]:
        c.update(
            imagePullPolicy="IfNotPresent",
            resources={},
            terminationMessagePath="/dev/termination-log",
            terminationMessagePolicy="File",
        )
    live["status"] = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2}
    return live


def constraint(
    parameters: dict[str, Any] | None = None, *, name: str = "c", action: str = "deny"
) -> Constraint:
    return Constraint.from_mapping(
        {
            "kind": "K8sSignedManifests",
            "metadata": {"name": name},
            "spec": {"enforcementAction": action, "parameters": parameters or {}},
        }
    )


def codes(found: list[Violation]) -> list[str]:
    return sorted(v.details["code"] for v in found)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    config = {
        "registries": {
            "allow": [DEAD_REGISTRY],
            "insecure": [DEAD_REGISTRY],
            "allowPrivateNetworks": True,
            "connectTimeoutSeconds": 1,
        },
        "server": {"maxKeyBytes": 16384},
    }
    keys = {label: keypair(label)[1] for label in ("release", "dev")}
    with run_provider(tmp_path_factory.mktemp("provider"), keys=keys, config=config) as proc:
        yield proc


def live_transport(proc: ProviderProcess) -> HttpsTransport:
    assert proc.tls is not None
    return HttpsTransport(
        url=proc.verdict_url,
        ca_file=str(proc.tls.provider_ca),
        cert_file=str(proc.tls.client_cert),
        key_file=str(proc.tls.client_key),
        timeout_seconds=10,
    )


def evaluator(transport: Transport, engine: EngineKind = EngineKind.REGORUS) -> PolicyEvaluator:
    return PolicyEvaluator(CURRENT, ExternalData(default=transport), engine=engine)


# -- the live provider over mutual TLS ---------------------------------------------------------

ENGINES = [EngineKind.REGORUS, EngineKind.OPA]


@pytest.mark.parametrize("engine", ENGINES)
def test_verified_and_allowed(live: ProviderProcess, engine: EngineKind) -> None:
    obj = sign(deployment(), "release")
    found = evaluator(live_transport(live), engine).evaluate(
        admission_review(obj), [constraint({"signers": [{"key": "release"}]})]
    )
    assert found == []


@pytest.mark.parametrize("engine", ENGINES)
def test_verified_but_signer_not_allowed(live: ProviderProcess, engine: EngineKind) -> None:
    obj = sign(deployment(), "dev")
    found = evaluator(live_transport(live), engine).evaluate(
        admission_review(obj), [constraint({"signers": [{"key": "release"}]})]
    )
    assert codes(found) == ["SIGNER_NOT_ALLOWED"]
    assert 'key "dev"' in found[0].msg


@pytest.mark.parametrize("engine", ENGINES)
def test_unsigned(live: ProviderProcess, engine: EngineKind) -> None:
    found = evaluator(live_transport(live), engine).evaluate(admission_review(deployment()), [constraint()])
    assert codes(found) == ["NO_SIGNATURE"]
    assert "Deployment shop/web" in found[0].msg


@pytest.mark.parametrize("engine", ENGINES)
def test_tampered(live: ProviderProcess, engine: EngineKind) -> None:
    obj = sign(deployment(), "release")
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "evil.example/agnhost:2.53"
    found = evaluator(live_transport(live), engine).evaluate(admission_review(obj), [constraint()])
    assert codes(found) == ["MANIFEST_MISMATCH"]
    assert "spec.template.spec.containers" in found[0].msg


def test_signed_by_a_key_the_provider_does_not_trust(live: ProviderProcess) -> None:
    obj = sign(deployment(), "stranger")
    found = evaluator(live_transport(live)).evaluate(admission_review(obj), [constraint()])
    assert codes(found) == ["BAD_SIGNATURE"]


@pytest.mark.parametrize("engine", ENGINES)
def test_defaulted_live_object_is_admitted(live: ProviderProcess, engine: EngineKind) -> None:
    obj = as_live(sign(deployment(), "release"))
    ev = evaluator(live_transport(live), engine)
    assert ev.evaluate(admission_review(obj, operation=Operation.UPDATE), [constraint()]) == []
    assert ev.evaluate(audit_review(obj), [constraint()], audit=True) == []


def test_update_verifies_the_new_object(live: ProviderProcess) -> None:
    old = sign(deployment(), "release")
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 7
    ev = evaluator(live_transport(live))
    found = ev.evaluate(admission_review(new, operation=Operation.UPDATE, old_object=old), [constraint()])
    assert codes(found) == ["MANIFEST_MISMATCH"]
    assert (
        ev.evaluate(admission_review(old, operation=Operation.UPDATE, old_object=new), [constraint()]) == []
    )


def test_delete_is_allowed_without_asking(live: ProviderProcess) -> None:
    data = ExternalData(default=live_transport(live))
    ev = PolicyEvaluator(CURRENT, data)
    assert ev.evaluate(admission_review(deployment(), operation=Operation.DELETE), [constraint()]) == []
    assert data.calls == []


def test_audit_mode(live: ProviderProcess) -> None:
    exempt_all = {"exemptGroups": ["system:authenticated", "system:masters"]}
    ev = evaluator(live_transport(live))
    unsigned = deployment()
    assert ev.evaluate(admission_review(unsigned), [constraint(exempt_all)]) == []
    found = ev.evaluate(audit_review(unsigned), [constraint(exempt_all)], audit=True)
    assert codes(found) == ["NO_SIGNATURE"]


@pytest.mark.parametrize("engine", ENGINES)
def test_two_constraints_with_different_parameters(live: ProviderProcess, engine: EngineKind) -> None:
    obj = sign(deployment(), "release")
    obj["spec"]["replicas"] = 3
    strict = constraint({"signers": [{"key": "release"}]}, name="strict")
    lenient = constraint(
        {
            "signers": [{"key": "release"}],
            "ignoreFields": [{"fields": ["spec.replicas"], "objects": [{"kind": "Deployment"}]}],
        },
        name="lenient-on-replicas",
        action="warn",
    )
    wrong_signer = constraint({"signers": [{"key": "dev"}]}, name="dev-only", action="dryrun")
    data = ExternalData(default=live_transport(live))
    found = PolicyEvaluator(CURRENT, data, engine=engine).evaluate(
        admission_review(obj), [strict, lenient, wrong_signer]
    )
    assert [(v.constraint_name, v.enforcement_action, v.details["code"]) for v in found] == [
        ("strict", "deny", "MANIFEST_MISMATCH"),
        ("dev-only", "dryrun", "MANIFEST_MISMATCH"),
    ]
    # One call per object and constraint; the ignore rules change the key.
    assert len(data.calls) == 3 and all(len(keys) == 1 for _, keys in data.calls)
    assert len({keys for _, keys in data.calls}) == 2


def test_system_error_from_an_unreachable_registry(live: ProviderProcess) -> None:
    obj = deployment()
    obj["metadata"]["annotations"] = {
        "cosign.sigstore.dev/resourceBundleRef": f"{DEAD_REGISTRY}/bundles/web:v1"
    }
    ev = evaluator(live_transport(live))
    found = ev.evaluate(admission_review(obj), [constraint()])
    assert codes(found) == ["PROVIDER_SYSTEM_ERROR"]
    assert ev.evaluate(admission_review(obj), [constraint({"failurePolicy": "Ignore"})]) == []


def test_per_key_error_for_an_oversized_object(live: ProviderProcess) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "shop"}}
    obj["data"] = {f"k{i}": "x" * 1000 for i in range(20)}
    ev = evaluator(live_transport(live))
    found = ev.evaluate(admission_review(obj), [constraint()])
    assert codes(found) == ["PROVIDER_KEY_ERROR"]
    assert ev.evaluate(admission_review(obj), [constraint({"failurePolicy": "Ignore"})]) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_provider_down(tmp_path: Path, engine: EngineKind) -> None:
    tls = make_tls_material(tmp_path / "tls")
    transport = HttpsTransport(
        url=f"https://127.0.0.1:{free_closed_port()}/validate",
        ca_file=str(tls.provider_ca),
        cert_file=str(tls.client_cert),
        key_file=str(tls.client_key),
    )
    ev = evaluator(transport, engine)
    found = ev.evaluate(admission_review(sign(deployment(), "release")), [constraint()])
    assert codes(found) == ["PROVIDER_UNREACHABLE"]
    assert "could not reach" in found[0].msg
    assert ev.evaluate(admission_review(deployment()), [constraint({"failurePolicy": "Ignore"})]) == []


def test_wrong_ca_is_a_transport_failure(live: ProviderProcess, tmp_path: Path) -> None:
    assert live.tls is not None
    transport = HttpsTransport(
        url=live.verdict_url,
        ca_file=str(live.tls.gatekeeper_ca),
        cert_file=str(live.tls.client_cert),
        key_file=str(live.tls.client_key),
    )
    found = evaluator(transport).evaluate(admission_review(sign(deployment(), "release")), [constraint()])
    assert codes(found) == ["PROVIDER_UNREACHABLE"]


class _FakeVerdictHandler(http.server.BaseHTTPRequestHandler):
    answer: dict[str, Any] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        keys = json.loads(body)["request"]["keys"]
        response = {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderResponse",
            "response": {"idempotent": True, "items": [{"key": k, "value": self.answer} for k in keys]},
        }
        data = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("engine", ENGINES)
def test_malformed_verdict_from_a_fake_provider(tmp_path: Path, engine: EngineKind) -> None:
    """A FAKE provider over real mutual TLS answers a verified verdict without ``namespaceBound``."""
    tls = make_tls_material(tmp_path / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tls.server_cert, tls.server_key)
    context.load_verify_locations(tls.gatekeeper_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    verdict = {
        "schema": 1,
        "verified": True,
        "reason": "VERIFIED",
        "message": "ok",
        "object": None,
        "signers": [{"kind": "key", "name": "release", "index": 0}],
        "bundle": {"source": "annotation", "reference": "annotations", "digest": "sha256:00"},
        "diff": [],
        "ignoredFields": [],
    }
    handler = type("Handler", (_FakeVerdictHandler,), {"answer": verdict})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        transport = HttpsTransport(
            url=f"https://127.0.0.1:{server.server_address[1]}/validate",
            ca_file=str(tls.provider_ca),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
        )
        found = evaluator(transport, engine).evaluate(
            admission_review(sign(deployment(), "release")), [constraint({"failurePolicy": "Ignore"})]
        )
    finally:
        server.shutdown()
        server.server_close()
    assert codes(found) == ["MALFORMED_VERDICT"]
    assert 'field "namespaceBound" is missing' in found[0].msg


# -- every sample, end to end ---------------------------------------------------------------


def sample_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "constraint.yaml").is_file())


def run_sample(
    directory: Path, transport: Transport, engine: EngineKind, template: Template
) -> dict[str, list[Violation]]:
    c = Constraint.from_file(directory / "constraint.yaml")
    ev = PolicyEvaluator(template, ExternalData(default=transport), engine=engine)
    out = {}
    for example in ("example_allowed", "example_disallowed"):
        (obj,) = [d for d in yaml.safe_load_all((directory / f"{example}.yaml").read_text()) if d]
        assert c.match.matches(obj, obj["metadata"].get("namespace", "")), (
            f"{directory.name}: {example} not matched"
        )
        out[example] = ev.evaluate(admission_review(obj), [c]) + ev.evaluate(
            audit_review(obj), [c], audit=True
        )
    return out


def test_samples_cover_the_documented_cases() -> None:
    assert {p.name for p in sample_dirs(SAMPLES)} == set(samples.CASES)


@pytest.mark.parametrize("engine", ENGINES)
def test_committed_samples_with_the_provider_in_process(engine: EngineKind) -> None:
    keys = [f"{name}={SAMPLES / 'keys' / f'{name}.pub'}" for name in samples.KEY_NAMES]
    transport = in_process_transport(config=None, keys=keys)
    for directory in sample_dirs(SAMPLES):
        for template in (CURRENT, LEGACY) if engine is EngineKind.REGORUS else (CURRENT,):
            result = run_sample(directory, transport, engine, template)
            assert result["example_allowed"] == [], (directory.name, result)
            assert result["example_disallowed"], directory.name


def test_freshly_signed_samples_against_the_live_provider(live: ProviderProcess, tmp_path: Path) -> None:
    samples.write_samples(tmp_path, {name: keypair(name)[0] for name in samples.KEY_NAMES})
    for directory in sample_dirs(tmp_path):
        result = run_sample(directory, live_transport(live), EngineKind.REGORUS, CURRENT)
        assert result["example_allowed"] == [], (directory.name, result)
        expected = {
            "deny-unsigned": "NO_SIGNATURE",
            "allowed-signer": "MANIFEST_MISMATCH",
            "signer-per-namespace": "SIGNER_NOT_ALLOWED",
            "namespace-bound": "NAMESPACE_UNBOUND",
            "dryrun-rollout": "MANIFEST_MISMATCH",
        }[directory.name]
        assert {v.details["code"] for v in result["example_disallowed"]} == {expected}, directory.name


# -- the command line ----------------------------------------------------------------------------


def test_cli_against_the_live_provider(
    live: ProviderProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert live.tls is not None
    samples.write_samples(tmp_path, {name: keypair(name)[0] for name in samples.KEY_NAMES})
    case = tmp_path / "signer-per-namespace"
    base = [
        "policy",
        "test",
        "--template",
        str(TEMPLATE_DIR / "template.yaml"),
        "--constraint",
        str(case / "constraint.yaml"),
        "--provider-url",
        live.verdict_url,
        "--ca",
        str(live.tls.provider_ca),
        "--cert",
        str(live.tls.client_cert),
        "--key",
        str(live.tls.client_key),
    ]
    assert main([*base, "-f", str(case / "example_allowed.yaml")]) == 0
    capsys.readouterr()
    assert main([*base, "-f", str(case / "example_disallowed.yaml"), "-o", "json"]) == 1
    out, err = capsys.readouterr()
    (entry,) = json.loads(out)
    (violation,) = entry["violations"]
    assert violation["enforcementAction"] == "deny"
    assert violation["constraint"] == {"kind": "K8sSignedManifests", "name": "signers-by-namespace"}
    assert violation["details"]["code"] == "SIGNER_NOT_ALLOWED"
    assert "deny" in err


def test_cli_in_process_with_two_constraints_and_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = SAMPLES / "dryrun-rollout"
    enforce = tmp_path / "enforce.yaml"
    doc = yaml.safe_load((rollout / "constraint.yaml").read_text())
    doc["metadata"]["name"] = "staging-enforce"
    doc["spec"]["enforcementAction"] = "warn"
    enforce.write_text(yaml.safe_dump(doc))
    args = [
        "policy",
        "test",
        "--template",
        str(TEMPLATE_DIR / "template-v0.yaml"),
        "--constraint",
        str(rollout / "constraint.yaml"),
        "--constraint",
        str(enforce),
        "-f",
        str(rollout / "example_disallowed.yaml"),
        "-f",
        str(rollout / "example_allowed.yaml"),
        "--key",
        f"release={SAMPLES / 'keys' / 'release.pub'}",
        "--audit",
    ]
    assert main(args) == 0  # dryrun and warn never fail the run
    out = capsys.readouterr().out
    assert "K8sSignedManifests/staging-dryrun" in out and "dryrun" in out
    assert "K8sSignedManifests/staging-enforce" in out and "warn" in out
    assert "allowed" in out


@pytest.mark.parametrize(
    "extra",
    [
        ["--provider-url", "https://127.0.0.1:1/validate"],  # no --ca
        ["--ca", "x.pem"],  # --ca without --provider-url
        ["--config", "/nonexistent/config.yaml"],
        ["--key", "release=/nonexistent.pub"],
    ],
)
def test_cli_usage_errors(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    case = SAMPLES / "deny-unsigned"
    args = [
        "policy",
        "test",
        "--template",
        str(TEMPLATE_DIR / "template.yaml"),
        "--constraint",
        str(case / "constraint.yaml"),
        "-f",
        str(case / "example_allowed.yaml"),
        *extra,
    ]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("manifest-provider: ")


def test_cli_rejects_a_constraint_of_another_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("kind: K8sRequiredLabels\nmetadata: {name: x}\nspec: {}\n")
    case = SAMPLES / "deny-unsigned"
    args = [
        "policy",
        "test",
        "--template",
        str(TEMPLATE_DIR / "template.yaml"),
        "--constraint",
        str(other),
        "-f",
        str(case / "example_allowed.yaml"),
    ]
    assert main(args) == 2
    assert "not of kind K8sSignedManifests" in capsys.readouterr().err


def test_cli_says_which_match_criteria_it_cannot_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = SAMPLES / "deny-unsigned"
    doc = yaml.safe_load((case / "constraint.yaml").read_text())
    doc["spec"]["match"]["namespaceSelector"] = {"matchLabels": {"enforce": "true"}}
    selected = tmp_path / "selected.yaml"
    selected.write_text(yaml.safe_dump(doc))
    args = [
        "policy",
        "test",
        "--template",
        str(TEMPLATE_DIR / "template.yaml"),
        "--constraint",
        str(selected),
        "-f",
        str(case / "example_disallowed.yaml"),
        "--key",
        f"release={SAMPLES / 'keys' / 'release.pub'}",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "spec.match.namespaceSelector needs the cluster; treated as matching" in err


def test_an_oversized_answer_is_a_transport_failure(live: ProviderProcess) -> None:
    transport = live_transport(live)
    small = HttpsTransport(
        url=transport.url,
        ca_file=transport.ca_file,
        cert_file=transport.cert_file,
        key_file=transport.key_file,
        max_response_bytes=64,
    )
    found = evaluator(small).evaluate(admission_review(sign(deployment(), "release")), [constraint()])
    assert codes(found) == ["PROVIDER_UNREACHABLE"]
    assert "larger than 64 bytes" in found[0].msg


def test_cli_refuses_a_yaml_bomb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]"
        for i in range(8)
    ]
    bomb.write_text("\n".join(lines) + "\n")
    case = SAMPLES / "deny-unsigned"
    args = [
        "policy",
        "test",
        "--template",
        str(TEMPLATE_DIR / "template.yaml"),
        "--constraint",
        str(case / "constraint.yaml"),
        "-f",
        str(bomb),
        "--key",
        f"release={SAMPLES / 'keys' / 'release.pub'}",
    ]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("manifest-provider: ")
