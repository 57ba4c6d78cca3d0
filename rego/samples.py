"""Write the signed sample objects of ``rego/k8ssignedmanifests/samples``.

Each sample directory holds ``constraint.yaml`` (written by hand) and the
objects this script produces: ``example_allowed.yaml`` and
``example_disallowed.yaml``. Signing keys are generated per run and thrown
away; only their public halves are kept in ``samples/keys/NAME.pub``, so
anyone can verify the samples and nobody can sign more with those keys.

    .venv/bin/python rego/samples.py            # rewrite samples and keys
    .venv/bin/python rego/samples.py OUT_DIR    # write a fresh copy elsewhere (tests)

Run the samples offline with the provider in-process::

    manifest-provider policy test --template rego/k8ssignedmanifests/template.yaml \\
      --constraint rego/k8ssignedmanifests/samples/allowed-signer/constraint.yaml \\
      -f rego/k8ssignedmanifests/samples/allowed-signer/example_allowed.yaml \\
      --key release=rego/k8ssignedmanifests/samples/keys/release.pub
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provider.core.cosignkey import PrivateKey  # noqa: E402
from provider.core.signing import sign_documents  # noqa: E402

SAMPLES = ROOT / "rego" / "k8ssignedmanifests" / "samples"
KEY_NAMES = ("release", "dev")

Mutation = Callable[[dict[str, Any]], None]


def config_map(name: str, namespace: str | None, data: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                            "args": ["netexec", "--http-port=8080"],
                        }
                    ]
                },
            },
        },
    }


def _tamper(obj: dict[str, Any]) -> None:
    obj["data"]["log-level"] = "debug"


def _scale(obj: dict[str, Any]) -> None:
    obj["spec"]["replicas"] = 5


def _apply_namespace(namespace: str) -> Mutation:
    def apply(obj: dict[str, Any]) -> None:
        obj["metadata"]["namespace"] = namespace

    return apply


@dataclass(frozen=True, slots=True)
class Example:
    """One example object: what is signed, by which key, and what changed after."""

    manifest: dict[str, Any]
    key: str | None  # None: left unsigned
    after: Mutation | None = None


# case -> (allowed example, disallowed example)
CASES: dict[str, tuple[Example, Example]] = {
    # Any key the provider trusts; an unsigned Deployment is denied.
    "deny-unsigned": (
        Example(deployment("web", "shop"), "release"),
        Example(deployment("web", "shop"), None),
    ),
    # Signed by the release key in team-a: admitted; changed after signing: denied.
    "allowed-signer": (
        Example(config_map("settings", "team-a", {"log-level": "info"}), "release"),
        Example(config_map("settings", "team-a", {"log-level": "info"}), "release", _tamper),
    ),
    # The dev key may sign for dev-* namespaces only.
    "signer-per-namespace": (
        Example(config_map("settings", "prod-web", {"log-level": "warn"}), "release"),
        Example(config_map("settings", "prod-web", {"log-level": "warn"}), "dev"),
    ),
    # A manifest signed without a namespace, applied in a namespace, is denied by default.
    "namespace-bound": (
        Example(config_map("settings", "team-a", {"mode": "strict"}), "release"),
        Example(config_map("settings", None, {"mode": "strict"}), "release", _apply_namespace("team-a")),
    ),
    # Staged rollout: report (dryrun) in staging before enforcing anywhere.
    "dryrun-rollout": (
        Example(deployment("hello", "staging"), "release"),
        Example(deployment("hello", "staging"), "release", _scale),
    ),
}


def render(example: Example, keys: dict[str, PrivateKey]) -> str:
    text = yaml.safe_dump(example.manifest, sort_keys=False).encode()
    if example.key is not None:
        text = sign_documents(text, keys[example.key])
    obj = yaml.safe_load(text)
    if example.after is not None:
        example.after(obj)
    return yaml.safe_dump(obj, sort_keys=False)


def write_samples(out: Path, keys: dict[str, PrivateKey]) -> None:
    (out / "keys").mkdir(parents=True, exist_ok=True)
    for name, key in keys.items():
        (out / "keys" / f"{name}.pub").write_bytes(key.public_pem())
    for case, (allowed, disallowed) in CASES.items():
        directory = out / case
        directory.mkdir(parents=True, exist_ok=True)
        constraint = SAMPLES / case / "constraint.yaml"
        if out != SAMPLES:
            shutil.copyfile(constraint, directory / "constraint.yaml")
        (directory / "example_allowed.yaml").write_text(render(allowed, keys))
        (directory / "example_disallowed.yaml").write_text(render(disallowed, keys))


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else SAMPLES
    write_samples(out, {name: PrivateKey.generate() for name in KEY_NAMES})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
