"""The tree's own rules, checked on every test run: lint, format, types and layering."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"
# The devkit distribution (devkit/pyproject.toml): its package and its benchmark scripts.
DEVKIT = ROOT / "devkit"
DEVKIT_PACKAGE = DEVKIT / "relaystream_devkit"
SERVICE_PACKAGES = ("ingest", "routing", "scheduling", "delivery")
BIN = Path(sys.executable).parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_lint_is_clean() -> None:
    result = run_tool(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run_tool(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = run_tool(str(BIN / "mypy"), "services", "devkit")
    assert result.returncode == 0, result.stdout + result.stderr


def imported_packages(path: Path) -> set[str]:
    """The first-level `relaystream` sub-packages a module imports (relative or absolute)."""
    module_parts = path.relative_to(SERVICES).with_suffix("").parts
    if module_parts[-1] == "__init__":
        module_parts = module_parts[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                is_package = path.name == "__init__.py"
                base = list(module_parts if is_package else module_parts[:-1])
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = [*base, *(node.module.split(".") if node.module else [])]
                if not target and node.names:
                    target = [node.names[0].name]
                if target:
                    found.add(target[0])
            elif node.module and node.module.startswith("relaystream."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("relaystream."):
                    found.add(alias.name.split(".")[1])
    return found


def python_files(package: str) -> list[Path]:
    return sorted((SERVICES / package).rglob("*.py"))


def module_name(path: Path) -> str:
    """`services/core/policy/base.py` -> `core.policy.base` (a package: its `__init__`)."""
    parts = path.relative_to(SERVICES).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SERVICES.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """The modules of `services/` that a module imports, relative or absolute, including
    imports only for type checking: a dependency all the same. `from pkg import name` is the
    submodule `pkg.name` when there is one, else `pkg`."""
    me = module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[tuple[str, list[str]]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("relaystream."):
                module = node.module.removeprefix("relaystream.")
            else:
                continue
            targets.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            targets += [
                (alias.name.removeprefix("relaystream."), [])
                for alias in node.names
                if alias.name.startswith("relaystream.")
            ]
        for module, names in targets:
            submodules = {f"{module}.{name}" if module else name for name in names}
            found |= submodules & MODULES.keys()
            if module in MODULES and not submodules <= MODULES.keys():
                found.add(module)
    return found - {me}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_import_cycles_are_found() -> None:
    # The check itself can fail: a circle of three, and a module outside it that imports it.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_in_services() -> None:
    graph = {name: imported_modules(path) for name, path in MODULES.items()}
    assert import_cycles(graph) == []


def test_the_cli_imports_no_service() -> None:
    """The CLI is a shell over the core; `relaystream run NAME` alone loads a service, by name,
    to run it (cli/run.py)."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & set(SERVICE_PACKAGES))
        for path in python_files("cli")
        if imported_packages(path) & set(SERVICE_PACKAGES)
    }
    assert offenders == {}


def test_core_imports_no_service() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - {"core"})
        for path in python_files("core")
        if imported_packages(path) - {"core"}
    }
    assert offenders == {}


@pytest.mark.parametrize("service", SERVICE_PACKAGES)
def test_a_service_imports_only_core_and_itself(service: str) -> None:
    allowed = {"core", service}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed)
        for path in python_files(service)
        if imported_packages(path) - allowed
    }
    assert offenders == {}


def third_party_roots(path: Path) -> set[str]:
    """The top-level names of the absolute imports of a module (`faust`, `aiokafka`, ...)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_integrations_import_only_the_core() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - {"core", "integrations"})
        for path in python_files("integrations")
        if imported_packages(path) - {"core", "integrations"}
    }
    assert python_files("integrations") and offenders == {}


def test_faust_is_imported_by_the_integrations_alone() -> None:
    """faust-streaming is the `faust` extra: the services, the core and the CLI run without it."""
    outside = [path for path in SERVICES.rglob("*.py") if "integrations" not in path.parts]
    assert [str(path) for path in outside if "faust" in third_party_roots(path)] == []
    assert "faust" in third_party_roots(SERVICES / "integrations" / "faust_codec.py")
    assert not any("integrations" in imported_packages(path) for path in outside)


def devkit_imports(source: str) -> list[str]:
    """Each statement or string of a module that reaches the devkit: an import of
    `relaystream_devkit` (or of `relaystream.devkit`, where it lived inside the product, or
    `..devkit` relative), or a module name in a string (`importlib.import_module(...)`)."""

    def is_devkit(name: str, relative: bool = False) -> bool:
        return name.split(".")[0] == "relaystream_devkit" or name.startswith(
            "devkit" if relative else "relaystream.devkit"
        )

    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            hit = any(is_devkit(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module, *(f"{module}.{alias.name}".lstrip(".") for alias in node.names)]
            hit = any(is_devkit(name, relative=node.level > 0) for name in names)
        else:
            hit = isinstance(node, ast.Constant) and isinstance(node.value, str)
            hit = hit and is_devkit(str(getattr(node, "value", "")))
        if hit:
            found.append(ast.unparse(node))
    return found


def test_devkit_imports_are_found() -> None:
    # The check itself can fail: every way a module could reach the devkit.
    source = (
        "import relaystream_devkit.broker\n"
        "from relaystream_devkit.dev import run_dev\n"
        "from relaystream.devkit.broker import LocalKafka\n"
        "from ..devkit import broker\n"
        "from .. import devkit\n"
        "import importlib\n"
        "importlib.import_module('relaystream_devkit.commands.dev')\n"
        "from relaystream.core.kafka import topics\n"
    )
    assert len(devkit_imports(source)) == 6


def test_nothing_in_the_product_imports_the_devkit() -> None:
    """The image installs `services/` only: the devkit is another distribution, which adds its
    commands to the CLI through an entry point the product does not name."""
    assert not list((SERVICES / "devkit").rglob("*.py"))
    offenders = {
        str(path.relative_to(ROOT)): devkit_imports(path.read_text())
        for path in SERVICES.rglob("*.py")
        if devkit_imports(path.read_text())
    }
    assert offenders == {}


def test_the_devkit_imports_only_the_core_of_the_product() -> None:
    """It runs the services as processes (`python -m relaystream run NAME`), as production does;
    its benchmark scripts (devkit/bench/) may time a service's internals."""
    offenders: dict[str, list[str]] = {}
    for path in sorted(DEVKIT_PACKAGE.rglob("*.py")):
        imported = {
            name.split(".")[1]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom | ast.Import)
            for name in (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
            )
            if name.startswith("relaystream.")
        }
        if imported - {"core"}:
            offenders[str(path.relative_to(ROOT))] = sorted(imported - {"core"})
    assert offenders == {}


# Pure logic kept beside the service that uses it (wire formats), held to the same rule.
PURE_SERVICE_MODULES = (
    "ingest/data_body.py",
    "ingest/smtp_lines.py",
    "ingest/reception_packing.py",
    "delivery/smtp_wire.py",
    "delivery/x509_subject.py",
)


def test_domain_logic_does_no_io() -> None:
    forbidden = {"socket", "asyncio", "aiokafka", "aiohttp", "aiosmtplib", "dns", "time"}
    offenders: dict[str, list[str]] = {}
    pure = python_files("core/domain") + [SERVICES / module for module in PURE_SERVICE_MODULES]
    for path in pure:
        tree = ast.parse(path.read_text())
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        if names & forbidden:
            offenders[str(path.relative_to(ROOT))] = sorted(names & forbidden)
    assert offenders == {}
