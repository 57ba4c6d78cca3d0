"""The Dockerfile follows its rules, and the command it runs starts the provider from a wheel.

There is no Docker engine on these machines. The Dockerfile is parsed and
checked (pinned base, numeric non-root USER, no build tools in the final
stage, exec-form entrypoint); then the image's steps are reproduced on the
host: the project is built into a wheel, the wheel is installed alone into a
fresh virtual environment (dependencies come from the test environment
through a ``.pth`` file, so nothing is downloaded), and the image's
ENTRYPOINT + CMD runs with only the configuration path changed. It must
answer ``/healthz`` over mutual TLS and exit cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import KMS, ROOT, b64_pem

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages); continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def _last(stage: Stage, keyword: str) -> str:
    values = [v for k, v in stage.instructions if k == keyword]
    assert values, f"final stage has no {keyword}"
    return values[-1]


def test_multi_stage_with_a_pinned_slim_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.base), stage.base
    assert stages[0].base == stages[-1].base, "build and final stage must share the interpreter"


def test_final_stage_runs_as_numeric_non_root_user(stages: list[Stage]) -> None:
    user = _last(stages[-1], "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # The Deployment promises the same UID.
    deployment = (ROOT / "deploy" / "base" / "deployment.yaml").read_text()
    assert f"runAsUser: {uid}" in deployment


def test_no_build_tools_or_sources_in_final_stage(stages: list[Stage]) -> None:
    final = stages[-1]
    text = " ".join(v for _, v in final.instructions)
    for tool in ("gcc", "g++", "make", "build-essential", "apt-get install", "pip install", "-dev "):
        assert tool not in text, f"final stage mentions {tool!r}"
    copies = [v for k, v in final.instructions if k == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), (
        "final stage copies only from the build stage"
    )


def test_dependencies_come_from_pinned_requirements(stages: list[Stage]) -> None:
    runs = " ".join(v for k, v in stages[0].instructions if k == "RUN")
    assert "-r requirements.txt" in runs
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.\-+]*", line), f"unpinned: {line}"
    assert "pip wheel" in runs and ".whl" in runs, "the project is installed as a wheel"


def test_exec_form_entrypoint(stages: list[Stage]) -> None:
    entry = json.loads(_last(stages[-1], "ENTRYPOINT"))
    cmd = json.loads(_last(stages[-1], "CMD"))
    assert entry == ["manifest-provider"]
    assert cmd[:1] == ["serve"] and "--config" in cmd
    assert _last(stages[-1], "STOPSIGNAL") == "SIGTERM"
    # The configuration path is where the Deployment mounts it.
    deployment = (ROOT / "deploy" / "base" / "deployment.yaml").read_text()
    assert cmd[cmd.index("--config") + 1] in deployment


def test_dockerignore_keeps_secrets_and_certs_out() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    assert lines[0] != "#" and "*" in lines, "everything is excluded unless named"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed <= {"requirements.txt", "pyproject.toml", "README.md", "provider/"}


# -- the image's command, from a wheel ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding only the project's wheel (plus a .pth to the test deps)."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "provider", src / "provider", ignore=shutil.ignore_patterns("__pycache__"))
    # The build backend comes from the test environment (setuptools >= 70.1 builds
    # wheels by itself), so building needs no network.
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools>=70.1 is not installed in the test environment (requirements-test.txt)")
    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.skip(f"setuptools {setuptools.__version__} cannot build wheels alone; need >= 70.1")
    dist = work / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(dist),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("manifest_provider-*.whl")
    run = work / "run-venv"
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run(
        [str(base_python), "-m", "venv", "--without-pip", str(run)], check=True, capture_output=True
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(run / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    site = next((run / "lib").glob("python3*/site-packages"))
    (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield run


def _write_config(tmp_path: Path, port: int) -> tuple[Path, Path]:
    from provider.certs import ensure_dev_certs

    paths, _ = ensure_dev_certs(tmp_path / "certs")
    (tmp_path / "cosign.pub").write_bytes(b64_pem(KMS / "pkg/k8smanifest/testdata/testpub"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
keys:
  - name: release
    path: {tmp_path / "cosign.pub"}
server:
  listen: "127.0.0.1:{port}"
  workers: 1
  threads: 2
  tls:
    certFile: {paths.server_cert}
    keyFile: {paths.server_key}
    clientCAFile: {paths.ca_cert}
    clientDNSNames: [gatekeeper-webhook-service.gatekeeper-system.svc]
"""
    )
    return config, paths.directory


@pytest.mark.slow
def test_image_command_serves_from_the_installed_wheel(
    installed: Path, stages: list[Stage], tmp_path: Path
) -> None:
    entry = json.loads(_last(stages[-1], "ENTRYPOINT"))
    cmd = json.loads(_last(stages[-1], "CMD"))
    port = _free_port()
    config, certs = _write_config(tmp_path, port)
    argv = [*entry, *cmd]
    argv[argv.index("--config") + 1] = str(config)
    env = {
        "PATH": f"{installed / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp_path),
    }
    # The console script must come from the fresh venv, and provider from the wheel.
    assert shutil.which(argv[0], path=env["PATH"]) == str(installed / "bin" / argv[0])
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2
                ) as resp:
                    assert resp.status == 200
                    body = resp.read()
                    break
            except (OSError, ssl.SSLError):
                time.sleep(0.2)
        assert body is not None, f"no /healthz answer; output: {_drain(proc)}"
        # Without a client certificate the TLS handshake is refused.
        bare = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with pytest.raises((ssl.SSLError, OSError)):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=bare, timeout=2).read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, _drain(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = _drain(proc)
    site = next((installed / "lib").glob("python3*/site-packages"))
    assert (site / "provider" / "__init__.py").is_file()
    assert str(ROOT / "provider") not in out


def _drain(proc: subprocess.Popen[bytes]) -> str:
    if proc.stdout is None:
        return ""
    if proc.poll() is None:
        return "(still running)"
    return proc.stdout.read().decode(errors="replace")[-3000:]
