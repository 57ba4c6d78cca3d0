"""Live configuration reload, with the configuration mounted the way kubelet mounts a ConfigMap.

kubelet writes each version of a ConfigMap volume into a timestamped
directory, points the ``..data`` symlink at it with an atomic rename, and
exposes each entry as a symlink through ``..data``. ``ConfigMapDir`` does the
same in tmp_path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from provider import wire
from provider.app import WATCHER_EXTENSION, create_app
from provider.errors import ConfigError
from provider.reload import ConfigWatcher, fingerprint
from provider.service import ProviderRuntime
from provider.web import EXTENSION
from tests.keyutil import keypair
from tests.test_service import configmap, key_of, signed


class ConfigMapDir:
    """A directory updated like a ConfigMap volume: new data dir, then an atomic ``..data`` swap."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.version = 0

    def publish(self, files: dict[str, str | bytes]) -> None:
        self.version += 1
        data_dir = self.root / f"..2026_11_24_00_00_{self.version:02d}.{os.getpid()}"
        data_dir.mkdir()
        for name, content in files.items():
            target = data_dir / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        tmp_link = self.root / "..data_tmp"
        tmp_link.symlink_to(data_dir.name)
        os.replace(tmp_link, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"


def config_text(*signers: str, extra: str = "") -> str:
    keys = "".join(f"  - name: {s}\n    path: {s}.pub\n" for s in signers)
    return f"keys:\n{keys}server:\n  reloadIntervalSeconds: 0.05\n{extra}"


def key_files(*signers: str) -> dict[str, str | bytes]:
    return {f"{s}.pub": keypair(s)[1] for s in signers}


def runtime(app: Flask) -> ProviderRuntime:
    rt: ProviderRuntime = app.extensions[EXTENSION]
    return rt


def watcher(app: Flask) -> ConfigWatcher:
    w: ConfigWatcher = app.extensions[WATCHER_EXTENSION]
    return w


def verdict(app: Flask, obj: dict[str, Any]) -> dict[str, Any]:
    response = app.test_client().post(
        "/validate", data=wire.encode_request([key_of(obj)]), content_type="application/json"
    )
    doc = orjson.loads(response.data)
    assert doc["response"]["systemError"] == ""
    value: dict[str, Any] = doc["response"]["items"][0]["value"]
    return value


def metric(app: Flask, name: str, labels: dict[str, str] | None = None) -> float:
    value = runtime(app).metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


@pytest.fixture
def mounted(tmp_path: Path) -> ConfigMapDir:
    cm = ConfigMapDir(tmp_path / "config")
    cm.publish({"config.yaml": config_text("alice"), **key_files("alice", "bob")})
    return cm


@pytest.fixture
def app(mounted: ConfigMapDir) -> Flask:
    app = create_app(config_path=str(mounted.config), watch=False)
    runtime(app).mark_tls_ready()
    return app


def test_good_reload_swaps_configuration_and_generation(app: Flask, mounted: ConfigMapDir) -> None:
    by_alice = signed(configmap(), signer="alice")
    before = runtime(app).settings.generation
    assert verdict(app, by_alice)["reason"] == "VERIFIED"
    assert watcher(app).poll() is None  # nothing changed

    mounted.publish({"config.yaml": config_text("bob"), **key_files("alice", "bob")})
    assert watcher(app).poll() is True
    after = runtime(app).settings.generation
    assert after != before
    # The cached VERIFIED verdict of the old trust policy is not served.
    assert verdict(app, by_alice)["reason"] == "BAD_SIGNATURE"
    assert verdict(app, signed(configmap(), signer="bob"))["reason"] == "VERIFIED"
    assert metric(app, "manifest_provider_config_reloads_total", {"result": "success"}) == 1
    assert metric(app, "manifest_provider_config_generation_info", {"generation": after}) == 1
    assert metric(app, "manifest_provider_config_generation_info", {"generation": before}) == 0
    ready = orjson.loads(app.test_client().get("/readyz").data)
    assert ready["generation"] == after and ready["lastReload"]["ok"] is True


def test_bad_reload_keeps_the_running_configuration(app: Flask, mounted: ConfigMapDir) -> None:
    by_alice = signed(configmap(), signer="alice")
    before = runtime(app).settings.generation
    mounted.publish(
        {
            "config.yaml": config_text("alice", extra="  deadlineMilliseconds: 9000\nbogus: 1\n"),
            **key_files("alice", "bob"),
        }
    )
    assert watcher(app).poll() is False
    assert runtime(app).settings.generation == before
    assert verdict(app, by_alice)["reason"] == "VERIFIED"
    assert metric(app, "manifest_provider_config_reloads_total", {"result": "failure"}) == 1
    assert metric(app, "manifest_provider_config_last_reload_success") == 0
    response = app.test_client().get("/readyz")
    # Still ready: the previous, valid configuration serves.
    assert response.status_code == 200
    last = orjson.loads(response.data)["lastReload"]
    assert last["ok"] is False and last["generation"] == before
    assert "deadlineMilliseconds (9000) must be below" in last["error"]
    assert "configuration.bogus: unknown key" in last["error"]
    # The same bad content is not rebuilt on every poll...
    assert watcher(app).poll() is None
    # ...and fixing it recovers.
    mounted.publish(
        {"config.yaml": config_text("alice", extra="  workers: 3\n"), **key_files("alice", "bob")}
    )
    assert watcher(app).poll() is True
    assert metric(app, "manifest_provider_config_last_reload_success") == 1
    assert orjson.loads(app.test_client().get("/readyz").data)["lastReload"]["ok"] is True


def test_rotated_key_file_is_noticed(app: Flask, mounted: ConfigMapDir) -> None:
    before = runtime(app).settings.generation
    # Same config text, same key name and path; the key material changes.
    mounted.publish({"config.yaml": config_text("alice"), "alice.pub": keypair("carol")[1]})
    assert watcher(app).poll() is True
    assert runtime(app).settings.generation != before
    assert verdict(app, signed(configmap(), signer="carol"))["reason"] == "VERIFIED"


def test_cosmetic_change_keeps_the_warm_cache(app: Flask, mounted: ConfigMapDir) -> None:
    by_alice = signed(configmap(), signer="alice")
    verdict(app, by_alice)
    service = runtime(app).service
    mounted.publish({"config.yaml": "# a comment\n" + config_text("alice"), **key_files("alice", "bob")})
    assert watcher(app).poll() is True
    assert runtime(app).service is service
    assert len(service.cache) == 1


def test_server_only_change_swaps_but_keeps_the_cache(app: Flask, mounted: ConfigMapDir) -> None:
    verdict(app, signed(configmap(), signer="alice"))
    old = runtime(app).service
    mounted.publish(
        {"config.yaml": config_text("alice", extra="  maxKeysPerRequest: 5\n"), **key_files("alice")}
    )
    assert watcher(app).poll() is True
    new = runtime(app).service
    assert new is not old and new.settings.server.max_keys_per_request == 5
    assert new.generation == old.generation and new.cache is old.cache and len(new.cache) == 1


def test_resolver_survives_reloads_that_leave_its_inputs_alone(mounted: ConfigMapDir) -> None:
    built: list[object] = []

    def factory(settings: Any) -> Any:
        built.append(settings.registries)
        return None

    app = create_app(config_path=str(mounted.config), watch=False, resolver_factory=factory)
    mounted.publish({"config.yaml": config_text("bob"), **key_files("alice", "bob")})
    assert watcher(app).poll() is True
    assert len(built) == 1
    registries = "registries: {allow: [registry.example.com]}\n"
    mounted.publish({"config.yaml": registries + config_text("bob"), **key_files("alice", "bob")})
    assert watcher(app).poll() is True
    assert len(built) == 2 and built[1] is not None


def test_periodic_resync_without_file_change(mounted: ConfigMapDir) -> None:
    now = [0.0]
    app = create_app(config_path=str(mounted.config), watch=False, clock=lambda: now[0])
    w = watcher(app)
    assert w.poll() is None
    now[0] += w.resync_seconds + 1
    assert w.poll() is True  # rebuilt, found identical
    assert metric(app, "manifest_provider_config_reloads_total", {"result": "success"}) == 0


def test_watcher_thread_picks_up_a_change(mounted: ConfigMapDir) -> None:
    app = create_app(config_path=str(mounted.config))
    try:
        before = runtime(app).settings.generation
        mounted.publish({"config.yaml": config_text("bob"), **key_files("alice", "bob")})
        deadline = time.monotonic() + 10
        while runtime(app).settings.generation == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runtime(app).settings.generation != before
    finally:
        watcher(app).stop()


def test_start_up_with_a_bad_file_fails_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("keys: [{name: a, path: none.pub}]\ncache: {entries: x}\n")
    with pytest.raises(ConfigError) as exc:
        create_app(config_path=str(bad))
    assert len(exc.value.problems) == 2


def test_fingerprint_sees_content_not_paths(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("one")
    first = fingerprint([str(f), str(tmp_path / "missing")])
    assert first[1][1].startswith("unreadable:")
    f.write_text("two")
    assert fingerprint([str(f), str(tmp_path / "missing")]) != first
