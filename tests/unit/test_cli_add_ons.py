"""The CLI's add-on commands: what installed distributions register under `relaystream.commands`
(the devkit's `dev`, `kafka`, `bench`, `chaos` in a checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def write_add_on(site: Path, name: str, entry_points: str, module: str | None = None) -> None:
    """A distribution's installed metadata (what pip writes), and its command module."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[relaystream.commands]\n{entry_points}\n")
    if module is not None:
        (site / f"{name}.py").write_text(module)


def cli_help(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.append({str(site)!r}); "
            "from relaystream.cli.main import main; main()",
            "--help",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_devkit_commands_come_from_its_entry_points() -> None:
    shown = cli_help(Path("/nonexistent"))
    assert shown.returncode == 0, shown.stderr
    for command in ("run", "dev", "kafka", "bench", "chaos"):
        assert f"\n    {command} " in shown.stdout, command


def test_an_add_on_adds_its_commands(tmp_path: Path) -> None:
    module = (
        "def register(subparsers):\n    subparsers.add_parser('greet', help='an add-on command')\n"
    )
    write_add_on(tmp_path, "greeting_addon", "greet = greeting_addon", module)
    shown = cli_help(tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "greet" in shown.stdout and "an add-on command" in shown.stdout


@pytest.mark.parametrize(
    ("entry_points", "module", "reason"),
    [
        ("gone = no_such_module_anywhere", None, "No module named 'no_such_module_anywhere'"),
        ("bare = bare_addon", "X = 1\n", "has no attribute 'register'"),
        (
            "clash = clash_addon",
            "def register(subparsers):\n    subparsers.add_parser('run')\n",
            "conflicting subparser: run",
        ),
    ],
)
def test_a_broken_add_on_is_named_and_the_product_commands_still_work(
    tmp_path: Path, entry_points: str, module: str | None, reason: str
) -> None:
    name = entry_points.split(" = ")[1]
    write_add_on(tmp_path, name, entry_points, module)
    shown = cli_help(tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"relaystream: commands {name} (from relaystream.commands) not loaded" in shown.stderr
    assert reason in shown.stderr
    assert "\n    run " in shown.stdout
