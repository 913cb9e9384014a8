"""Local deployments of the four services, one or several instances of each, on loopback.

A `Fleet` writes one settings file, ensures the topics under its prefix and runs every
instance as `python -m relaystream run NAME`, exactly as in production. Each instance has what
a Kubernetes pod would have of its own: a static group membership id (`routing-1`, ...), from
which routing and ingest derive their transactional ids, a health port and, for ingest, its
own SMTP and HTTP ports. The bench runs one instance of each, `relaystream chaos` several, and
kills and restarts them.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics

from .broker import free_loopback_ports
from .cluster import topic_settings_for
from .dev import SERVICE_NAMES, answers_ready, spawn_service, stop_services


def render_sink_policy(sink_port: int, *, written_by: str) -> str:
    """Every domain smarthosted to a loopback sink (a domain literal: no DNS)."""
    return (
        f"-- Written by {written_by}: every message goes to the sink.\n"
        f"local SINK = '[127.0.0.1]:{sink_port}'\n"
        "local function to_the_sink(msg)\n"
        "  msg:set_meta('routing_domain', SINK)\n"
        "end\n"
        "kumo.on('smtp_server_message_received', to_the_sink)\n"
        "kumo.on('http_message_generated', to_the_sink)\n"
        "kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)\n"
        "  return kumo.make_queue_config {}\n"
        "end)\n"
    )


@dataclass(frozen=True)
class Instance:
    """One process of a service: `routing-1` is instance 1 of routing."""

    service: str
    index: int
    health_port: int
    smtp_port: int | None = None
    http_port: int | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    def environment(self) -> dict[str, str]:
        env = {
            "RELAYSTREAM_HTTP_BIND": f"127.0.0.1:{self.health_port}",
            "RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID": self.name,
            "RELAYSTREAM_KAFKA_CLIENT_ID": self.name,
        }
        if self.smtp_port is not None:
            env["RELAYSTREAM_INGEST_SMTP_PORT"] = str(self.smtp_port)
        if self.http_port is not None:
            env["RELAYSTREAM_INGEST_HTTP_PORT"] = str(self.http_port)
        return env


@dataclass
class Fleet:
    """Instances of the four services on one broker or cluster; see the module doc."""

    bootstrap: str
    prefix: str
    state_dir: Path
    policy: Path
    instances: int = 1
    partitions: int = 6
    # Brokers behind `bootstrap`: the topics get the replication that many can give.
    brokers: int = 1
    # Run in each child before exec (tests make children die with the test run).
    preexec_fn: Callable[[], Any] | None = None
    extra_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics: TopicCatalog = declare_topics(
            topic_settings_for(
                self.brokers,
                TopicSettings(
                    prefix=self.prefix, partitions=self.partitions, queue_partitions=self.partitions
                ),
            )
        )
        self.logs_dir = self.state_dir / "logs"
        self.settings_path = self.state_dir / "settings.yaml"
        self.members: dict[str, Instance] = {}
        for service in SERVICE_NAMES:
            for index in range(self.instances):
                if service == "ingest":
                    health, smtp, http = free_loopback_ports(3)
                    member = Instance(service, index, health, smtp, http)
                else:
                    (health,) = free_loopback_ports(1)
                    member = Instance(service, index, health)
                self.members[member.name] = member

    def of(self, service: str) -> list[Instance]:
        return [m for m in self.members.values() if m.service == service]

    def smtp_addresses(self, running: bool = False) -> list[tuple[str, int]]:
        """Every ingest instance's SMTP address (`running`: of those started and not exited)."""
        return [
            ("127.0.0.1", m.smtp_port)
            for m in self.of("ingest")
            if m.smtp_port and (not running or self._runs(m.name))
        ]

    def _runs(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def group_of(self, service: str) -> str:
        """The consumer group of scheduling or delivery (named so in their service modules)."""
        return f"{self.prefix}{service}"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, within_s: float = 180.0, names: list[str] | None = None) -> None:
        """Ensure the topics, start every instance (or those `names`), wait until ready."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._write_settings()
        report = await ensure_topics(self.bootstrap, self.topics)
        if not report.ok:
            raise RuntimeError(f"topics: {report.drifts}")
        chosen = list(self.members) if names is None else names
        for name in chosen:
            self.start_instance(name)
        await asyncio.gather(*(self.wait_ready(name, within_s) for name in chosen))

    def _write_settings(self) -> None:
        settings: dict[str, dict[str, Any] | str] = {
            "kafka_bootstrap": self.bootstrap,
            "topic_prefix": self.prefix,
            "routing": {"policy_path": str(self.policy)},
            # One admin API per deployment is enough here: the instances would share its port.
            "scheduling": {"policy_path": str(self.policy), "admin_api_enabled": False},
            # The sink is on loopback: a local smarthost needs the prohibited-destination switch.
            "delivery": {"allow_loopback": True, "tls_mode": "Disabled"},
        }
        for section, values in self.extra_settings.items():
            own = settings.setdefault(section, {})
            assert isinstance(own, dict)
            own.update(values)
        self.settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))

    def start_instance(self, name: str) -> None:
        member = self.members[name]
        with (self.logs_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = spawn_service(
                member.service, self.settings_path, member.environment(), log, self.preexec_fn
            )

    def is_ready(self, name: str) -> bool:
        return answers_ready(self.members[name].health_port)

    async def wait_ready(self, name: str, within_s: float = 180.0) -> float:
        """Seconds until `name` answered ready; RuntimeError if it exits or time runs out."""
        started = time.monotonic()
        while not await asyncio.to_thread(self.is_ready, name):
            code = self.processes[name].poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with {code}; log: {self.log_path(name)}")
            if time.monotonic() - started > within_s:
                raise RuntimeError(f"{name} not ready within {within_s:.0f}s")
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, no commit, as when a node dies."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, grace_s: float = 30.0) -> None:
        stop_services(self.processes, grace_s)
