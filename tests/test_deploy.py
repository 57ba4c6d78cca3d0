"""The Kubernetes manifests in deploy/ (and the templates in rego/) hold together.

No cluster is involved: the kustomizations are rendered by a small renderer in
this file (the subset of kustomize that deploy/ uses, with kustomize's rule that
files may not come from outside a kustomization's directory), and, when a
``kubectl`` with built-in kustomize is on the PATH, its rendering must agree.
Then every object is checked for the fields its kind needs, names that refer
to each other, matching labels and ports, and the hardening the pods promise.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from tests.conftest import KMS, ROOT, b64_pem

DEPLOY = ROOT / "deploy"
REGO = ROOT / "rego"
BASE = DEPLOY / "base"
OVERLAYS = sorted(p for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUSTOMIZATIONS = [BASE, DEPLOY / "gatekeeper", *OVERLAYS]
# Secrets the operator creates by hand (docs/operations.md); everything else must be rendered.
OPERATOR_SECRETS = {"manifest-provider-keys", "gatekeeper-ca"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ConstraintTemplate",
    "Provider",
    "K8sSignedManifests",
}


# -- a small kustomize ------------------------------------------------------------


def _json_pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _apply_json6902(obj: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        *parents, last = _json_pointer(op["path"])
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("replace", "add"):
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if op["op"] == "add":
                    node.insert(index, op["value"])
                else:
                    node[index] = op["value"]
            else:
                if op["op"] == "replace" and last not in node:
                    raise KeyError(f"replace of missing {op['path']}")
                node[last] = op["value"]
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise NotImplementedError(op["op"])


def render(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization the way kustomize does, for the features deploy/ uses."""
    root = directory.resolve()
    k = yaml.safe_load((root / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "secretGenerator", "patches"}
    assert set(k) <= known, f"{directory}: renderer does not know {set(k) - known}"
    objects: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        path = (root / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            # kustomize's default load restrictor: files must be inside the kustomization root.
            assert path.is_relative_to(root), f"{directory}: {entry} is outside the kustomization root"
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for gen in k.get("secretGenerator", []):
        assert gen.get("options", {}).get("disableNameSuffixHash"), "renderer: name hashes not supported"
        data = {}
        for spec in gen.get("files", []):
            key, _, rel = spec.partition("=")
            source = (root / rel).resolve()
            assert source.is_relative_to(root)
            data[key] = base64.b64encode(source.read_bytes()).decode()
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": gen["name"]},
                "type": gen.get("type", "Opaque"),
                "data": data,
            }
        )
    for patch in k.get("patches", []):
        target = patch["target"]
        hits = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert len(hits) == 1, f"{directory}: patch target {target} matches {len(hits)} objects"
        _apply_json6902(hits[0], yaml.safe_load(patch["patch"]))
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    for label in k.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    return objects


def _identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@pytest.fixture(scope="module")
def manual_tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of deploy/ whose manual-tls overlay has the files `manifest-provider certs` writes."""
    copy_root = tmp_path_factory.mktemp("deploy-copy") / "deploy"
    shutil.copytree(DEPLOY, copy_root)
    out = copy_root / "overlays" / "manual-tls" / "certs"
    assert (
        _run_certs(["--service", "manifest-provider", "--namespace", "manifest-provider", "--out", str(out)])
        == 0
    )
    yield copy_root


def rendered(name: Path, manual_tls_root: Path) -> list[dict[str, Any]]:
    if name.name == "manual-tls":
        return render(manual_tls_root / "overlays" / "manual-tls")
    return render(name)


def _run_certs(argv: list[str]) -> int:
    from provider.cli import certs

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    certs.register(sub)
    args = parser.parse_args(["certs", *argv])
    code: int = args.func(args)
    return code


# -- every YAML file --------------------------------------------------------------

YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *REGO.rglob("*.yaml")])

REQUIRED = {
    "Namespace": [],
    "ServiceAccount": [],
    "ConfigMap": ["data"],
    "Deployment": [
        "spec.selector.matchLabels",
        "spec.template.metadata.labels",
        "spec.template.spec.containers",
    ],
    "Service": ["spec.selector", "spec.ports"],
    "PodDisruptionBudget": ["spec.selector.matchLabels"],
    "NetworkPolicy": ["spec.podSelector", "spec.policyTypes"],
    "Provider": ["spec.url", "spec.timeout", "spec.caBundle"],
    "ConstraintTemplate": ["spec.crd.spec.names.kind", "spec.targets"],
    "K8sSignedManifests": ["spec.match"],
    "Issuer": ["spec"],
    "Certificate": ["spec.secretName", "spec.issuerRef.name"],
    "Kustomization": [],
    "Role": ["rules"],
    "RoleBinding": ["roleRef", "subjects"],
}


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses_and_has_the_fields_of_its_kind(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    for doc in docs:
        assert (
            isinstance(doc, dict)
            and isinstance(doc.get("apiVersion"), str)
            and isinstance(doc.get("kind"), str)
        )
        kind = doc["kind"]
        if path.is_relative_to(DEPLOY):
            assert kind in REQUIRED, f"{path}: no field checks for kind {kind}"
        if kind != "Kustomization":
            assert isinstance(_get(doc, "metadata.name"), str), f"{path}: {kind} without metadata.name"
        for field in REQUIRED.get(kind, []):
            assert _get(doc, field) not in (None, "", [], {}), f"{path}: {kind} lacks {field}"


def test_templates_in_deploy_are_copies_of_rego() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "sync-templates"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert list((DEPLOY / "gatekeeper" / "templates").glob("*.yaml")), "no template copied"


# -- rendering --------------------------------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_renderer_agrees_with_kubectl_kustomize(directory: Path, manual_tls_certs: Path) -> None:
    kubectl = _modern_kubectl()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize v4+ on PATH; the in-test renderer is checked alone")
    target = manual_tls_certs / directory.relative_to(DEPLOY)
    result = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    theirs = sorted((d for d in yaml.safe_load_all(result.stdout) if d), key=_identity)
    ours = sorted(render(target), key=_identity)
    assert [_identity(o) for o in ours] == [_identity(o) for o in theirs]
    assert [_decoded(o) for o in ours] == [_decoded(o) for o in theirs]


def _decoded(obj: dict[str, Any]) -> dict[str, Any]:
    """Secret data compared as bytes: kustomize may wrap the base64 text."""
    if obj["kind"] != "Secret":
        return obj
    out = copy.deepcopy(obj)
    out["data"] = {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
    return out


def _modern_kubectl() -> str | None:
    """kubectl whose built-in kustomize knows `labels:` and `patches:` (v4.1 and later)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
    try:
        version = json.loads(result.stdout).get("kustomizeVersion", "")
    except ValueError:
        return None
    major = version.lstrip("v").split(".")[0]
    return kubectl if major.isdigit() and int(major) >= 5 else None


def test_renderer_refuses_files_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "kustomization.yaml").write_text("resources: [../outside.yaml]\n")
    with pytest.raises(AssertionError, match="outside the kustomization root"):
        render(tmp_path / "k")


# -- the provider's objects ------------------------------------------------------

APP_OVERLAYS = [BASE, *OVERLAYS]


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("directory", APP_OVERLAYS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_names_labels_and_ports_refer_to_each_other(directory: Path, manual_tls_certs: Path) -> None:
    objects = rendered(directory, manual_tls_certs)
    deployment = _one(objects, "Deployment", "manifest-provider")
    namespace = deployment["metadata"]["namespace"]
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    assert namespace in namespaces
    config_doc = yaml.safe_load(_one(objects, "ConfigMap", "manifest-provider-config")["data"]["config.yaml"])
    bundle_namespaces = set((config_doc.get("cluster") or {}).get("configMapNamespaces") or [])
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        if obj["kind"] in ("Role", "RoleBinding"):
            # RBAC lives only where the provider may read bundles.
            assert obj["metadata"]["namespace"] in bundle_namespaces, _identity(obj)
        else:
            assert obj["metadata"]["namespace"] == namespace, _identity(obj)
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]

    # selectors
    assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
    service = _one(objects, "Service", "manifest-provider")
    assert _selects(service["spec"]["selector"], labels)
    assert _selects(_one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    policy = _one(objects, "NetworkPolicy")
    assert _selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    for constraint in spec["topologySpreadConstraints"]:
        assert _selects(constraint["labelSelector"]["matchLabels"], labels)

    # referenced objects exist
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ServiceAccount", spec["serviceAccountName"]) in names
    secrets_made = {n for k, n in names if k == "Secret"} | {
        o["spec"]["secretName"] for o in objects if o["kind"] == "Certificate"
    }
    for volume in spec["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            if directory == BASE and name == "manifest-provider-tls":
                continue  # the base leaves TLS to an overlay
            assert name in secrets_made | OPERATOR_SECRETS, (
                f"Secret {name} is neither rendered nor documented"
            )
    (container,) = spec["containers"]
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in spec["volumes"]}

    # ports: Service -> named container port; NetworkPolicy names the same port
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] in container_ports
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in container_ports

    # the configuration the pods read is where the container looks for it
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    config_map = _one(objects, "ConfigMap", "manifest-provider-config")
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert config_arg == f"{config_mount['mountPath']}/config.yaml"
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    listen_port = int(config["server"]["listen"].rpartition(":")[2])
    assert listen_port == container_ports[svc_port["targetPort"]]

    # kubelet probes: plain HTTP on the health listener, real readiness, not a TCP connect
    health_port = int(config["server"]["healthListen"].rpartition(":")[2])
    assert health_port != listen_port
    (health_name,) = [name for name, number in container_ports.items() if number == health_port]
    probes = {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": health_name}
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": health_name}
    for probe in probes.values():
        assert "tcpSocket" not in probe and probe["httpGet"].get("scheme", "HTTP") == "HTTP"
        assert probe["httpGet"]["port"] == health_name
    # The network policy admits Gatekeeper to the verdict port only; probes come from the node.
    assert {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]} == {
        svc_port["targetPort"]
    }
    assert health_name != svc_port["targetPort"]
    # Fewer malloc arenas: less resident memory per worker.
    assert {"name": "MALLOC_ARENA_MAX", "value": "2"} in container.get("env", [])
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    tls = config["server"]["tls"]
    for path in [tls["certFile"], tls["keyFile"], tls["clientCAFile"], *(k["path"] for k in config["keys"])]:
        assert str(Path(path).parent) in mounted, f"{path} is not on a mounted volume"

    # Gatekeeper's namespace in the client-name pin and in the network policy agree
    (allowed_ns,) = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
    ]
    assert tls["clientDNSNames"] == [f"gatekeeper-webhook-service.{allowed_ns}.svc"]


@pytest.mark.parametrize("directory", APP_OVERLAYS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_pods_are_hardened_and_spread(directory: Path, manual_tls_certs: Path) -> None:
    objects = rendered(directory, manual_tls_certs)
    deployment = _one(objects, "Deployment", "manifest-provider")
    assert deployment["spec"]["replicas"] >= 2
    spec = deployment["spec"]["template"]["spec"]
    spread = spec.get("topologySpreadConstraints", [])
    assert any(
        c["topologyKey"] == "kubernetes.io/hostname" and c["whenUnsatisfiable"] == "DoNotSchedule"
        for c in spread
    ), "pods must be spread across nodes"
    assert spec["automountServiceAccountToken"] is False or any(o["kind"] == "RoleBinding" for o in objects)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container
    pdb = _one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


# -- Gatekeeper's objects --------------------------------------------------------


def test_provider_points_at_the_service(manual_tls_certs: Path) -> None:
    gatekeeper = render(DEPLOY / "gatekeeper")
    base = render(BASE)
    provider = _one(gatekeeper, "Provider")
    url = urlsplit(provider["spec"]["url"])
    service = _one(base, "Service", "manifest-provider")
    assert url.scheme == "https"
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    assert url.path == "/validate"
    timeout = provider["spec"]["timeout"]
    assert isinstance(timeout, int) and not isinstance(timeout, bool) and timeout >= 1
    config = yaml.safe_load(_one(base, "ConfigMap")["data"]["config.yaml"])
    assert timeout == config["server"]["providerTimeoutSeconds"]
    base64.b64decode(provider["spec"]["caBundle"], validate=True)

    # The cert-manager certificate and the one `manifest-provider certs` issues name that host.
    cert = _one(render(DEPLOY / "overlays" / "cert-manager"), "Certificate", "manifest-provider-tls")
    assert url.hostname in cert["spec"]["dnsNames"]
    certs_dir = manual_tls_certs / "overlays" / "manual-tls" / "certs"
    leaf = x509.load_pem_x509_certificate((certs_dir / "tls.crt").read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert url.hostname in san.get_values_for_type(x509.DNSName)
    written = yaml.safe_load((certs_dir / "provider.yaml").read_text())
    assert written["spec"]["url"] == provider["spec"]["url"]
    assert written["spec"]["timeout"] == timeout
    ca = x509.load_pem_x509_certificate(base64.b64decode(written["spec"]["caBundle"]))
    leaf.verify_directly_issued_by(ca)


def test_cert_manager_issuers_exist() -> None:
    objects = render(DEPLOY / "overlays" / "cert-manager")
    issuers = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Issuer"}
    for cert in (o for o in objects if o["kind"] == "Certificate"):
        assert cert["spec"]["issuerRef"]["name"] in issuers
    ca_issuer = next(i for i in issuers.values() if "ca" in i["spec"])
    ca_cert = next(c for c in objects if c["kind"] == "Certificate" and c["spec"].get("isCA"))
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]


def test_constraint_matches_template_and_provider() -> None:
    objects = render(DEPLOY / "gatekeeper")
    template = _one(objects, "ConstraintTemplate")
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    assert template["metadata"]["name"] == kind.lower()
    constraint = _one(objects, kind)
    assert constraint["apiVersion"] == "constraints.gatekeeper.sh/v1beta1"
    assert constraint["spec"]["parameters"]["provider"] == _one(objects, "Provider")["metadata"]["name"]
    schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]["properties"]
    assert set(constraint["spec"]["parameters"]) <= set(schema)
    assert "manifest-provider" in constraint["spec"]["match"]["excludedNamespaces"]


def test_rbac_is_least_privilege_and_matches_the_configuration() -> None:
    objects = render(DEPLOY / "overlays" / "configmap-bundles")
    deployment = _one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    config = yaml.safe_load(_one(objects, "ConfigMap", "manifest-provider-config")["data"]["config.yaml"])
    bundle_namespaces = config["cluster"]["configMapNamespaces"]
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert {ns for ns, _ in roles} == set(bundle_namespaces)
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} >= set(bundle_namespaces)
    for role in roles.values():
        assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    for binding in bindings:
        ns = binding["metadata"]["namespace"]
        assert (ns, binding["roleRef"]["name"]) in roles and binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": spec["serviceAccountName"],
                "namespace": deployment["metadata"]["namespace"],
            }
        ]
    assert spec["automountServiceAccountToken"] is True
    assert not any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in objects)
    # Without the overlay there is no API access at all.
    base = render(BASE)
    assert not any(o["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding") for o in base)
    assert _one(base, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert _one(base, "ServiceAccount")["automountServiceAccountToken"] is False
    base_config = yaml.safe_load(_one(base, "ConfigMap")["data"]["config.yaml"])
    assert {k: v for k, v in config.items() if k != "cluster"} == base_config


def test_gatekeeper_namespace_overlay_changes_only_the_gatekeeper_name() -> None:
    base = yaml.safe_load(_one(render(BASE), "ConfigMap")["data"]["config.yaml"])
    other = yaml.safe_load(
        _one(render(DEPLOY / "overlays" / "gatekeeper-namespace"), "ConfigMap")["data"]["config.yaml"]
    )
    expected = copy.deepcopy(base)
    expected["server"]["tls"]["clientDNSNames"] = ["gatekeeper-webhook-service.gatekeeper.svc"]
    assert other == expected


@pytest.mark.parametrize("directory", APP_OVERLAYS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shipped_configuration_is_accepted_by_the_provider(
    directory: Path, manual_tls_certs: Path, tmp_path: Path
) -> None:
    """Each config.yaml, with its mount paths moved under tmp_path, loads with the provider's loader."""
    from provider import config as config_module
    from provider.certs import CertUsage, generate_ca, issue_certificate, write_keyed

    text = _one(rendered(directory, manual_tls_certs), "ConfigMap")["data"]["config.yaml"]
    root = tmp_path / "etc"
    text = text.replace("/etc/manifest-provider/", f"{root}/")
    ca = generate_ca()
    server = issue_certificate(
        ca, usage=CertUsage.SERVER, dns_names=["manifest-provider.manifest-provider.svc"]
    )
    write_keyed(server, root / "tls" / "tls.crt", root / "tls" / "tls.key")
    (root / "gatekeeper-ca").mkdir(parents=True)
    (root / "gatekeeper-ca" / "ca.crt").write_bytes(ca.certificate_pem())
    (root / "keys").mkdir()
    (root / "keys" / "cosign.pub").write_bytes(b64_pem(KMS / "pkg/k8smanifest/testdata/testpub"))
    settings = config_module.settings_from_bytes(text.encode(), base_dir=tmp_path)
    assert [k.name for k in settings.keys] == ["release"]
    assert settings.server.provider_timeout_seconds == 3
    assert settings.server.health_listen == "0.0.0.0:8081"


# -- manifest-provider certs ------------------------------------------------------


def test_certs_reuses_a_ca_so_the_ca_bundle_stays(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert _run_certs(["--service", "mp", "--namespace", "sec", "--out", str(first)]) == 0
    assert (first / "tls.key").stat().st_mode & 0o777 == 0o600
    assert (first / "ca.key").stat().st_mode & 0o777 == 0o600
    argv = ["--service", "mp", "--namespace", "sec", "--out", str(second), "--timeout", "5", "--port", "9443"]
    assert _run_certs([*argv, "--ca-cert", str(first / "ca.crt"), "--ca-key", str(first / "ca.key")]) == 0
    assert (first / "cabundle.b64").read_text() == (second / "cabundle.b64").read_text()
    assert not (second / "ca.key").exists()
    provider = yaml.safe_load((second / "provider.yaml").read_text())
    assert provider["spec"]["url"] == "https://mp.sec.svc:9443/validate" and provider["spec"]["timeout"] == 5
    leaf = x509.load_pem_x509_certificate((second / "tls.crt").read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert names == ["mp", "mp.sec", "mp.sec.svc", "mp.sec.svc.cluster.local"]
    assert (
        leaf.serial_number != x509.load_pem_x509_certificate((first / "tls.crt").read_bytes()).serial_number
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--service", "Bad_Name", "--namespace", "ns"],
        ["--service", "mp", "--namespace", "ns", "--timeout", "0"],
        ["--service", "mp", "--namespace", "ns", "--port", "70000"],
        ["--service", "mp", "--namespace", "ns", "--ca-cert", "/nonexistent"],
        ["--service", "mp", "--namespace", "ns", "--ca-cert", "/nonexistent", "--ca-key", "/nonexistent"],
    ],
)
def test_certs_rejects_bad_input(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_certs([*argv, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("manifest-provider: ")
    assert not (tmp_path / "out" / "tls.key").exists()
