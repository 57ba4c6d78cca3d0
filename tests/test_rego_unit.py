"""rego/k8ssignedmanifests/src_test.rego, run on OPA itself (what `opa test` would run).

Only OPA can replace a builtin such as ``external_data`` with ``with``, so
these Rego unit tests run there; regorus runs the same branches from Python
in ``test_rego_logic.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from opa_bindings import OpaEngine

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "rego" / "k8ssignedmanifests"
SOURCE = (TEMPLATE_DIR / "src.rego").read_text()
TESTS = (TEMPLATE_DIR / "src_test.rego").read_text()
NAMES = re.findall(r"^(test_\w+) if", TESTS, re.MULTILINE)


def passing(source: str) -> dict[str, bool]:
    engine = OpaEngine()
    engine.register_function("external_data", lambda request: None, arity=1)
    engine.add_policy("src.rego", source)
    engine.add_policy("src_test.rego", TESTS)
    return {name: engine.eval_query(f"data.k8ssignedmanifests_test.{name}") == [{}] for name in NAMES}


def test_there_are_rego_unit_tests() -> None:
    assert len(NAMES) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_rego_unit_test_passes(name: str) -> None:
    assert passing(SOURCE)[name]


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ('fail_open if object.get(params, "failurePolicy", "Fail") == "Ignore"', "fail_open := true"),
        ('skipped_operations := {"DELETE", "CONNECT"}', 'skipped_operations := {"CONNECT"}'),
        ('"managedFields", "resourceVersion", ', '"managedFields", '),
    ],
)
def test_the_unit_tests_catch_a_broken_template(broken: str, fixed: str) -> None:
    assert broken in SOURCE
    results = passing(SOURCE.replace(broken, fixed))
    assert not all(results.values()), results
