"""The Containerfile builds the image the manifests expect (no Docker here: its structure is
checked, its build step is replayed on the same build context, its HEALTHCHECK is run)."""

from __future__ import annotations

import asyncio
import fnmatch
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from relaystream.cli.main import build_parser
from relaystream.cli.run import SERVICES as RUNNABLE_SERVICES
from relaystream.core.runtime.health import HealthServer
from relaystream.core.runtime.settings import HostPort, known_environment_variables

from .manifests import CONTAINERFILE, REPO_ROOT, Stage, containerfile_stages, exec_form

SERVICES = ("ingest", "routing", "scheduling", "delivery")
# Packages that bring compilers or headers: only the builder stage may install them.
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "clang", "python3-dev", "-dev ")


def stages() -> list[Stage]:
    return containerfile_stages(CONTAINERFILE.read_text(encoding="utf-8"))[1]


def final_stage() -> Stage:
    return stages()[-1]


def final_env() -> dict[str, str]:
    env = {}
    for args in final_stage().all("ENV"):
        for assignment in args.split():
            key, _, value = assignment.partition("=")
            env[key] = value
    return env


def test_multi_stage_build_on_python_3_11_slim() -> None:
    builder, final = stages()[0], stages()[-1]
    assert len(stages()) == 2
    assert builder.name == "builder"
    assert final.base.startswith("python:3.11-slim")
    # The venv's interpreter is a link into the base image's Python: both stages share it.
    assert builder.base == final.base


def test_final_stage_has_only_the_runtime_venv() -> None:
    final = final_stage()
    copies = final.all("COPY")
    assert copies == ["--from=builder /opt/relaystream /opt/relaystream"]
    for command in final.all("RUN"):
        assert "apt-get install" not in command and "pip" not in command, command
        assert not any(tool in command + " " for tool in BUILD_TOOLS), command
    builder_runs = " ".join(stages()[0].all("RUN"))
    assert "build-essential" in builder_runs
    assert "/opt/relaystream/bin/pip install ." in builder_runs
    assert final_env()["PATH"].startswith("/opt/relaystream/bin:")


def test_runs_as_uid_10001() -> None:
    assert final_stage().last("USER") == "10001:10001"
    assert any("--uid 10001" in run for run in final_stage().all("RUN"))


def test_entrypoint_and_default_command() -> None:
    assert exec_form(final_stage().last("ENTRYPOINT") or "") == ["relaystream"]
    assert exec_form(final_stage().last("CMD") or "") == ["run", "ingest"]


def test_exposed_ports_and_environment_match_the_settings() -> None:
    env = final_env()
    assert set(env) - {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= (
        known_environment_variables()
    )
    assert env["RELAYSTREAM_HTTP_BIND"] == "0.0.0.0:8080"
    exposed = {int(p) for p in (final_stage().last("EXPOSE") or "").split()}
    config = yaml.safe_load((REPO_ROOT / "deploy" / "config.yaml").read_text(encoding="utf-8"))
    assert exposed == {
        config["ingest"]["smtp_port"],
        config["ingest"]["http_port"],
        int(env["RELAYSTREAM_HTTP_BIND"].rpartition(":")[2]),
    }


def test_every_service_is_a_run_choice_of_the_cli() -> None:
    # The manifests and the compose file run exactly these: `relaystream run <service>`.
    assert set(RUNNABLE_SERVICES) == set(SERVICES)
    parser = build_parser()
    for service in SERVICES:
        args = parser.parse_args(["run", service])
        assert args.command == "run"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "no-such-service"])


def _healthcheck_command() -> list[str]:
    options_and_command = final_stage().last("HEALTHCHECK") or ""
    _, _, command = options_and_command.partition(" CMD ")
    return exec_form(command)


async def test_healthcheck_probes_the_real_health_endpoint() -> None:
    command = _healthcheck_command()
    assert command[:2] == ["python", "-c"]
    server = HealthServer(HostPort("127.0.0.1", 0))
    await server.start()
    try:
        env = {"RELAYSTREAM_HTTP_BIND": f"0.0.0.0:{server.port}", "PATH": "/usr/bin:/bin"}

        async def exit_code() -> int:
            process = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env)
            return await asyncio.wait_for(process.wait(), timeout=20)

        assert await exit_code() == 0
        server.add_liveness_check("wedged", lambda: False)
        assert await exit_code() != 0
    finally:
        await server.stop()


def _dockerignore_allows(path: str) -> bool:
    """Whether Docker sends `path` (relative, with `/`) in the build context: the last
    matching pattern wins, `!` re-includes; a pattern also matches everything below it."""
    allowed = True
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            allowed = negated
    return allowed


def build_context(destination: Path) -> Path:
    """The files of the repository that the .dockerignore lets into the build context."""
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for relative in tracked:
        if _dockerignore_allows(relative) and (REPO_ROOT / relative).is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / relative, target)
    return destination


def test_dockerignore_sends_what_the_build_copies_and_nothing_else() -> None:
    for copy in stages()[0].all("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert _dockerignore_allows(source.rstrip("/")), source
    kept_out_paths = (
        ".venv/bin/python",
        ".git/config",
        "tests/__init__.py",
        "k8s/base/x.yaml",
        # The devkit is a distribution of its own, which the image does not install.
        "devkit/pyproject.toml",
        "devkit/relaystream_devkit/broker.py",
    )
    for kept_out in kept_out_paths:
        assert not _dockerignore_allows(kept_out), kept_out
    assert not _dockerignore_allows("services/cli/__pycache__/main.cpython-311.pyc")


def build_wheel(tmp_path: Path) -> Path:
    """The builder's `pip install .`, replayed as a wheel build on the same build context."""
    context = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("relaystream-*.whl")
    return wheel


def test_build_step_installs_the_console_script(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "relaystream = relaystream.cli.main:main" in archive.read(entry_points).decode()
    assert "relaystream/cli/main.py" in names
    for service in SERVICES:
        assert f"relaystream/{service}/__init__.py" in names
    assert any(n.startswith("relaystream/schemas/") and n.endswith(".avsc") for n in names)
    assert not [n for n in names if "devkit" in n]


# The commands the devkit adds to the CLI from a checkout (devkit/pyproject.toml).
DEVKIT_COMMANDS = ("dev", "kafka", "bench", "chaos")


def run_product_only(tmp_path: Path, wheel: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -S *argv` seeing the installed wheel and the product's dependencies, as the
    image does: this venv's site-packages without relaystream's and the devkit's own entries
    (their editable finders, .pth files and metadata, through which the devkit registers)."""
    installed = tmp_path / "installed"
    if not installed.exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"),
                *("--target", str(installed), str(wheel)),
            ],
            check=True,
            timeout=120,
        )
        dependencies = tmp_path / "dependencies"
        dependencies.mkdir()
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if entry.name.startswith(("relaystream", "__editable__")) or entry.suffix == ".pth":
                continue
            (dependencies / entry.name).symlink_to(entry)
    env = {"PYTHONPATH": f"{installed}:{tmp_path / 'dependencies'}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-S", *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def listed_commands(help_text: str) -> set[str]:
    return {line.split()[0] for line in help_text.splitlines() if line.startswith("    ")}


def test_the_installed_product_has_no_devkit(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    # Every module of the installed product (`python -m relaystream` aside: it runs the CLI)
    # imports without the devkit.
    every_module = (
        "import pkgutil, relaystream\n"
        "for module in pkgutil.walk_packages(relaystream.__path__, 'relaystream.'):\n"
        "    if not module.name.endswith('__main__'):\n"
        "        __import__(module.name)\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('relaystream_devkit') is None\n"
        "assert importlib.util.find_spec('relaystream.devkit') is None\n"
        "print(relaystream.__file__)\n"
    )
    imported = run_product_only(tmp_path, wheel, "-c", every_module)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(tmp_path / "installed"))
    # Its CLI lists no devkit command, and says nothing about one it could not load.
    shown = run_product_only(tmp_path, wheel, "-m", "relaystream", "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    commands = listed_commands(shown.stdout)
    assert {"run", "topics", "queues"} <= commands
    assert not commands & set(DEVKIT_COMMANDS)
    # The same help from this checkout's venv, where the devkit is installed, lists them.
    with_devkit = subprocess.run(
        [sys.executable, "-m", "relaystream", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert set(DEVKIT_COMMANDS) <= listed_commands(with_devkit.stdout)
