"""The ConstraintTemplate files are generated from the one Rego source, exactly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from provider.errors import InputError
from provider.policy import ExternalData, PolicyEvaluator, Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "rego" / "k8ssignedmanifests"


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rego_build", ROOT / "rego" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_module()


def test_template_embeds_the_source_exactly() -> None:
    source = (TEMPLATE_DIR / "src.rego").read_text()
    doc = yaml.safe_load((TEMPLATE_DIR / "template.yaml").read_text())
    (target,) = doc["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    assert "rego" not in target, "Gatekeeper refuses Rego given twice"
    (code,) = target["code"]
    assert code["engine"] == "Rego"
    assert code["source"]["version"] == "v1"
    assert code["source"]["rego"] == source


def test_v0_template_is_the_source_plus_keyword_imports() -> None:
    source = (TEMPLATE_DIR / "src.rego").read_text()
    legacy = yaml.safe_load((TEMPLATE_DIR / "template-v0.yaml").read_text())
    (target,) = legacy["spec"]["targets"]
    assert "code" not in target
    rego = target["rego"]
    assert rego == build.v0_source(source)
    for line in build.V0_IMPORTS:
        assert line in rego.splitlines()
    stripped = [ln for ln in rego.splitlines() if ln not in build.V0_IMPORTS]
    assert "\n".join(stripped).replace("\n\n\n", "\n\n") == source.rstrip("\n")
    current = yaml.safe_load((TEMPLATE_DIR / "template.yaml").read_text())
    assert legacy["spec"]["crd"] == current["spec"]["crd"]
    assert legacy["metadata"] == current["metadata"]


def test_build_check_passes_on_the_committed_files() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "rego" / "build.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_check_fails_when_source_and_template_diverge(tmp_path: Path) -> None:
    directory = tmp_path / "k8ssignedmanifests"
    directory.mkdir()
    for name in ("src.rego", "template.yaml", "template-v0.yaml"):
        (directory / name).write_text((TEMPLATE_DIR / name).read_text())
    assert build.render(directory) == {
        "template.yaml": (directory / "template.yaml").read_text(),
        "template-v0.yaml": (directory / "template-v0.yaml").read_text(),
    }
    src = directory / "src.rego"
    src.write_text(src.read_text().replace('"manifest-provider")', '"other-provider")'))
    rendered = build.render(directory)
    assert rendered["template.yaml"] != (directory / "template.yaml").read_text()
    assert rendered["template-v0.yaml"] != (directory / "template-v0.yaml").read_text()


def test_both_template_files_load_and_compile() -> None:
    current = Template.from_file(TEMPLATE_DIR / "template.yaml")
    legacy = Template.from_file(TEMPLATE_DIR / "template-v0.yaml")
    assert (current.kind, current.package, current.rego_version) == (
        "K8sSignedManifests",
        "k8ssignedmanifests",
        "v1",
    )
    assert (legacy.kind, legacy.package, legacy.rego_version) == (
        "K8sSignedManifests",
        "k8ssignedmanifests",
        "v0",
    )
    PolicyEvaluator(current, ExternalData())
    PolicyEvaluator(legacy, ExternalData())


def test_v1_source_is_not_valid_v0_without_the_imports() -> None:
    """Proves the v0 file needs its imports, so the check above is not vacuous."""
    current = Template.from_file(TEMPLATE_DIR / "template.yaml")
    with pytest.raises(InputError):
        PolicyEvaluator(current, ExternalData(), rego_version="v0")


@pytest.mark.parametrize(
    "targets",
    [
        [
            {
                "target": "admission.k8s.gatekeeper.sh",
                "rego": "package a\nviolation[{}] { false }\n",
                "code": [
                    {
                        "engine": "Rego",
                        "source": {"version": "v1", "rego": "package a\nviolation contains 1 if false\n"},
                    }
                ],
            }
        ],
        [{"target": "other.target", "rego": "package a\nviolation[x] { x := 1 }"}],
        [
            {
                "target": "admission.k8s.gatekeeper.sh",
                "code": [{"engine": "Rego", "source": {"version": "v2", "rego": "x"}}],
            }
        ],
        [{"target": "admission.k8s.gatekeeper.sh", "rego": "package a\nallow := true\n"}],
        [{"target": "admission.k8s.gatekeeper.sh", "rego": ""}],
        "not a list",
    ],
)
def test_malformed_templates_are_rejected(targets: object) -> None:
    doc = {
        "kind": "ConstraintTemplate",
        "metadata": {"name": "a"},
        "spec": {"crd": {"spec": {"names": {"kind": "A"}}}, "targets": targets},
    }
    with pytest.raises(InputError):
        Template.from_mapping(doc)


def test_template_name_must_be_the_lower_case_kind() -> None:
    doc = yaml.safe_load((TEMPLATE_DIR / "template.yaml").read_text())
    doc["metadata"]["name"] = "signed"
    with pytest.raises(InputError, match=r"metadata\.name"):
        Template.from_mapping(doc)
