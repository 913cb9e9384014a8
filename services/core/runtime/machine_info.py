"""What identifies this process and its machine, in KumoMTA's `MachineInfoV1` shape."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import uuid
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any


def _os_release() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            fields[key] = value.strip().strip('"')
    return fields


def _cpu_brand() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    brands = {line.partition(":")[2].strip() for line in lines if line.startswith("model name")}
    return ",".join(sorted(brands)) or platform.processor() or platform.machine()


def _total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _container_runtime() -> str | None:
    if Path("/run/.containerenv").exists():
        return "podman"
    if Path("/.dockerenv").exists():
        return "docker"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    return None


def _machine_uid() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return ""


def _version() -> str:
    try:
        return metadata.version("relaystream")
    except metadata.PackageNotFoundError:
        return "unknown"


def machine_info(process_kind: str, node_id: str, online_since: datetime) -> dict[str, Any]:
    """`process_kind` is the service; `node_id` names this instance (stable across restarts
    when it comes from settings, e.g. the pod name)."""
    release = _os_release()
    mac = uuid.getnode()
    machine_uid = _machine_uid()
    return {
        "node_id": node_id,
        "hostname": socket.gethostname(),
        "mac_address": ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8)),
        "num_cores": os.cpu_count() or 0,
        "platform": f"{platform.system().lower()}/{platform.machine()}",
        "distribution": release.get("ID", platform.system().lower()),
        "os_version": release.get("PRETTY_NAME", platform.platform()),
        "kernel_version": platform.release() or None,
        "total_memory_bytes": _total_memory_bytes(),
        "cpu_brand": _cpu_brand(),
        "container_runtime": _container_runtime(),
        # A hash, never the raw machine-id (which some tools treat as confidential).
        "fingerprint": "machine_uid="
        + (hashlib.sha256(machine_uid.encode()).hexdigest()[:32] if machine_uid else "unknown"),
        "online_since": online_since.isoformat().replace("+00:00", "Z"),
        "process_kind": process_kind,
        "version": _version(),
    }
