"""``registries.pullSecrets``: registry credentials from dockerconfigjson Secrets.

The loader passed here stands in for the cluster read, which
tests/test_cluster.py exercises against the local fake API server; these
tests check how the configuration uses what it returns.
"""

from __future__ import annotations

import base64
import json

import pytest

from provider.config import parse_settings
from provider.errors import ConfigError, SourceError


def dockerconfig(**registries: tuple[str, str]) -> bytes:
    auths = {
        host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        for host, (user, password) in registries.items()
    }
    return json.dumps({"auths": auths}).encode()


SECRETS = {
    "k8s://registry-creds/shop": dockerconfig(**{"registry.example.com": ("shop", "s3cret")}),
    "k8s://registry-creds/all": dockerconfig(
        **{"registry.example.com": ("other", "x"), "ghcr.io": ("bot", "token")}
    ),
}


def loader(reference: str) -> bytes:
    if reference not in SECRETS:
        raise SourceError(f"{reference}: not found")
    return SECRETS[reference]


def registries(**section: object) -> dict[str, object]:
    return {"registries": {"allow": ["registry.example.com", "ghcr.io"], **section}}


def test_pull_secret_credentials_are_used_and_earlier_secrets_win() -> None:
    settings = parse_settings(
        registries(pullSecrets=["k8s://registry-creds/shop", "k8s://registry-creds/all"]),
        pull_secret_loader=loader,
    )
    assert settings.registries is not None
    shop = settings.registries.credentials_for("registry.example.com")
    assert shop is not None and (shop.username, shop.password) == ("shop", "s3cret")
    ghcr = settings.registries.credentials_for("ghcr.io")
    assert ghcr is not None and ghcr.username == "bot"


def test_configured_credentials_win_over_pull_secrets() -> None:
    settings = parse_settings(
        registries(
            pullSecrets=["k8s://registry-creds/shop"],
            credentials=[{"registry": "registry.example.com", "username": "admin", "password": "pw"}],
        ),
        pull_secret_loader=loader,
    )
    assert settings.registries is not None
    creds = settings.registries.credentials_for("registry.example.com")
    assert creds is not None and creds.username == "admin"


@pytest.mark.parametrize(
    ("pull_secrets", "needle"),
    [
        ("k8s://registry-creds/shop", "must be a list"),
        (["registry-creds/shop"], "must look like k8s://NAMESPACE/SECRET"),
        (["k8s://registry-creds/missing"], "cannot read k8s://registry-creds/missing"),
        ([42], "registries.pullSecrets[0]"),
    ],
)
def test_bad_pull_secret_entries_are_listed_with_other_problems(pull_secrets: object, needle: str) -> None:
    doc = registries(pullSecrets=pull_secrets)
    doc["cache"] = {"entries": -1}
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, pull_secret_loader=loader)
    problems = info.value.problems
    assert any(needle in p for p in problems), problems
    assert any(p.startswith("cache.entries") for p in problems), problems


def test_pull_secrets_without_cluster_access_are_a_problem() -> None:
    with pytest.raises(ConfigError, match="need cluster access"):
        parse_settings(registries(pullSecrets=["k8s://registry-creds/shop"]))


def test_secrets_never_appear_in_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(
            registries(pullSecrets=["k8s://registry-creds/shop", "nope"]),
            pull_secret_loader=loader,
        )
    assert "s3cret" not in info.value.diagnostics()
