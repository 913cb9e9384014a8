"""Reading the deployment files as a cluster or Docker would: rendered kustomize overlays,
the compose file, the Containerfile, and validation of Strimzi resources against their CRDs.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .strimzi_schema import SCHEMAS

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "k8s"
OVERLAYS = ("dev", "prod", "strimzi")
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
CONTAINERFILE = REPO_ROOT / "Containerfile"
STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic")
# The broker setting routing's fencing of a silent instance counts on (core/kafka/fencing.py).
ABORT_CHECK_INTERVAL = "transaction.abort.timed.out.transaction.cleanup.interval.ms"

Resource = dict[str, Any]


def kustomize_command() -> list[str]:
    """The kustomize that renders overlays: a standalone `kustomize`, else kubectl's built-in
    one (kubectl >= 1.14). Raises when neither is installed: the tests cannot render then."""
    # scripts/bootstrap installs kustomize into the venv where no kubectl exists.
    venv_bin = os.path.dirname(sys.executable)
    standalone = shutil.which("kustomize") or shutil.which("kustomize", path=venv_bin)
    if standalone:
        return [standalone, "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise RuntimeError(
        "neither `kustomize` nor `kubectl` is on PATH: install one to render k8s/ overlays"
    )


@functools.cache
def render(directory: Path) -> tuple[Resource, ...]:
    """The objects `kubectl apply -k directory` would send, in kustomize's order."""
    result = subprocess.run(
        [*kustomize_command(), str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize failed for {directory}:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_overlay(overlay: str) -> tuple[Resource, ...]:
    return render(K8S / "overlays" / overlay)


def of_kind(resources: tuple[Resource, ...], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: tuple[Resource, ...], kind: str, name: str) -> Resource:
    matches = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"expected one {kind} {name}, found {len(matches)}")
    return matches[0]


def config_map_by_prefix(resources: tuple[Resource, ...], prefix: str) -> Resource:
    """A generated ConfigMap, whose name kustomize suffixes with a content hash."""
    matches = [
        r
        for r in of_kind(resources, "ConfigMap")
        if r["metadata"]["name"].rpartition("-")[0] == prefix
    ]
    if len(matches) != 1:
        raise AssertionError(f"expected one ConfigMap {prefix}-<hash>, found {len(matches)}")
    return matches[0]


def topic_prefix(resources: tuple[Resource, ...]) -> str:
    """RELAYSTREAM_TOPIC_PREFIX as the rendered overlay sets it."""
    env = config_map_by_prefix(resources, "relaystream-env")["data"]
    prefix: str = env["RELAYSTREAM_TOPIC_PREFIX"]
    return prefix


def pod_spec(workload: Resource) -> Resource:
    spec: Resource = workload["spec"]["template"]["spec"]
    return spec


# Strimzi resources against the schemas of the fields we use (strimzi_schema.py).


@functools.cache
def strimzi_validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(SCHEMAS[kind])


def strimzi_errors(resource: Resource) -> list[str]:
    """Why `resource` would be rejected, or a field of it silently pruned, by Strimzi (v1beta2)."""
    kind = resource.get("kind")
    if kind not in STRIMZI_KINDS:
        return [f"not a Strimzi kind this repository uses: {kind}"]
    errors = []
    if resource.get("apiVersion") != "kafka.strimzi.io/v1beta2":
        errors.append(f"apiVersion {resource.get('apiVersion')} is not kafka.strimzi.io/v1beta2")
    for error in strimzi_validator(kind).iter_errors(resource):
        path = "/".join(str(part) for part in error.absolute_path)
        errors.append(f"{path or '<root>'}: {error.message}")
    return errors


# docker-compose.yml


@functools.cache
def compose() -> Resource:
    data: Resource = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def compose_service(name: str) -> Resource:
    service: Resource = compose()["services"][name]
    return service


# Containerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with backslash continuations joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def containerfile_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, with ARGs in FROM lines substituted."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = words[0]
            for arg, value in args.items():
                base = base.replace("${" + arg + "}", value).replace("$" + arg, value)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG":
                arg, _, default = rest.partition("=")
                args[arg] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def exec_form(args: str) -> list[str]:
    """A JSON (exec form) instruction argument; raises if it is the shell form."""
    value = json.loads(args)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AssertionError(f"not an exec-form argument list: {args}")
    return value


def shell_words(command: str) -> list[str]:
    return shlex.split(command)
