"""The whole pipeline as a user runs it: four `relaystream run` processes on a real broker.

`Pipeline` writes a settings file, ensures the topics under a fresh prefix, starts ingest,
routing, scheduling and delivery as child processes exactly as `relaystream dev` and the
Kubernetes Deployments do, and waits until each one reports ready on /readyz. A test can kill
(SIGKILL) and restart one of them. `LogWatcher` follows the log topic so tests can wait for
the records of the messages they sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from child_processes import ends_with_test_run
from delivery_sinks import SmtpSink, refused_port
from dnsmasq import DnsRecords, DnsServer, MxHost

from relaystream.core.domain.log_record import LogRecord, to_kumo_json
from relaystream.core.events.codec import decode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.replay import replay_topic
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream_devkit.broker import free_loopback_ports

SERVICES = ("ingest", "routing", "scheduling", "delivery")


@dataclass
class Pipeline:
    bootstrap: str
    prefix: str
    policy: Path
    workdir: Path
    nameserver: str
    destination_port: int
    extra_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.smtp_port, self.http_port, self.admin_port = free_loopback_ports(3)
        self.topics: TopicCatalog = declare_topics(
            TopicSettings(prefix=self.prefix, queue_partitions=3, partitions=3)
        )
        self.settings_path = self.workdir / "settings.yaml"

    def write_settings(self) -> None:
        settings: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "topic_prefix": self.prefix,
            "shutdown_grace_seconds": 10,
            "ingest": {"smtp_port": self.smtp_port, "http_port": self.http_port},
            "routing": {"policy_path": str(self.policy)},
            "scheduling": {
                "policy_path": str(self.policy),
                "tick_interval_seconds": 0.2,
                "admin_api_port": self.admin_port,
            },
            "delivery": {
                "nameservers": [self.nameserver],
                "allow_loopback": True,
                "smtp_port": self.destination_port,
                "tls_mode": "Disabled",
                "connect_timeout_seconds": 5,
                "idle_timeout_seconds": 1,
            },
        }
        for section, values in self.extra_settings.items():
            settings.setdefault(section, {}).update(values)
        self.settings_path.write_text(yaml.safe_dump(settings))

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_settings()
        report = await ensure_topics(self.bootstrap, self.topics)
        assert report.ok, report.drifts
        for name in SERVICES:
            self.start_service(name)
        await asyncio.gather(*(self.wait_ready(name) for name in SERVICES))

    def start_service(self, name: str) -> None:
        port = self.health_ports.get(name) or free_loopback_ports(1)[0]
        self.health_ports[name] = port
        env = dict(os.environ)
        env.update(
            RELAYSTREAM_CONFIG=str(self.settings_path),
            RELAYSTREAM_HTTP_BIND=f"127.0.0.1:{port}",
            RELAYSTREAM_KAFKA_CLIENT_ID=f"e2e-{name}",
        )
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "relaystream", "run", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=ends_with_test_run,
        )

    async def wait_ready(self, name: str, within: float = 180.0) -> None:
        url = f"http://127.0.0.1:{self.health_ports[name]}/readyz"
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                process = self.processes[name]
                if process.poll() is not None:
                    raise AssertionError(
                        f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.3)
        raise AssertionError(f"{name} not ready within {within}s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    async def restart(self, name: str) -> None:
        self.start_service(name)
        await self.wait_ready(name)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class LogWatcher:
    """Follows the log topic from the beginning; `wait_for` polls what it has seen."""

    bootstrap: str
    topic: str
    records: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _follow(self) -> None:
        async for replayed in replay_topic(self.bootstrap, self.topic, follow=True):
            if replayed.value is not None:
                _, value = decode(replayed.value, expected="LogRecord")
                self.records.append(to_kumo_json(LogRecord.from_avro(value)))

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def for_recipient(self, recipient: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["recipient"] == recipient]

    async def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        recipient: str,
        within: float = 60.0,
    ) -> list[dict[str, Any]]:
        """The records of `recipient` once `predicate` holds for them."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.task is not None and self.task.done():
                self.task.result()
            mine = self.for_recipient(recipient)
            if predicate(mine):
                return mine
            await asyncio.sleep(0.2)
        seen = [
            (r["type"], r["response"]["code"], r["response"]["content"])
            for r in self.for_recipient(recipient)
        ]
        raise AssertionError(f"no matching log records for {recipient} within {within}s: {seen}")


def types_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in records]


def has_final(records: list[dict[str, Any]]) -> bool:
    return any(r["type"] in {"Delivery", "Bounce", "Expiration", "Rejection"} for r in records)


POLICIES = Path(__file__).parent / "policies"
MAIN_SINK = "127.0.0.2"
MX_LIST_SINK = "127.0.0.3"

RECORDS = DnsRecords(
    mx=[
        MxHost("plain.test", "mx.plain.test", 10),
        MxHost("retry.test", "mx.plain.test", 10),
        MxHost("bounce.test", "mx.plain.test", 10),
        MxHost("hold.test", "mx.plain.test", 10),
        MxHost("override.test", "mx.plain.test", 10),
        MxHost("my.smarthost.com", "mx.plain.test", 10),
        # mx_list names are resolved for A/AAAA only: this MX must never be used.
        MxHost("smart.host.test", "mx.plain.test", 10),
    ],
    hosts={"mx.plain.test": [MAIN_SINK], "smart.host.test": [MX_LIST_SINK]},
    null_mx=["nullmx.test"],
    local_domains=("test",),
)


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def port_free_everywhere(hosts: list[str]) -> int:
    """A port that every sink address can listen on."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            for host in hosts:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(family) as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every sink address")


class Sinks:
    """The destination SMTP servers, all on one port: delivery's `smtp_port`."""

    def __init__(self, port: int, by_host: dict[str, SmtpSink]) -> None:
        self.port = port
        self.by_host = by_host

    def received_by(self, recipient: str) -> list[str]:
        return [
            host
            for host, sink in self.by_host.items()
            for message in sink.messages
            if recipient in message.recipients
        ]


def write_policy(workdir: Path, text: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "policy.lua"
    policy.write_text(text)
    return policy


async def start_pipeline(
    kafka_bootstrap: str,
    dns_server: DnsServer,
    sinks: Sinks,
    workdir: Path,
    policy_text: str,
    **extra: dict[str, object],
) -> Pipeline:
    policy = write_policy(workdir, policy_text)
    pipeline = Pipeline(
        bootstrap=kafka_bootstrap,
        prefix=f"e2e.{uuid.uuid4().hex[:8]}.",
        policy=policy,
        workdir=workdir,
        nameserver=dns_server.nameserver,
        destination_port=sinks.port,
        extra_settings=dict(extra),
    )
    await pipeline.start()
    return pipeline


@contextlib.asynccontextmanager
async def dedicated_pipeline(
    kafka_bootstrap: str, dns_server: DnsServer, sinks: Sinks, workdir: Path
) -> AsyncIterator[tuple[Pipeline, LogWatcher]]:
    """A pipeline of its own on the standard test policy, and a watcher of its log topic: for
    tests that kill or poison its services, so the other tests' pipeline is left alone."""
    template = (POLICIES / "pipeline.lua.template").read_text()
    policy = template.replace("{refused_port}", str(refused_port("127.0.0.4")))
    pipeline = await start_pipeline(kafka_bootstrap, dns_server, sinks, workdir, policy)
    watcher = LogWatcher(pipeline.bootstrap, pipeline.topics.log.name)
    watcher.start()
    try:
        yield pipeline, watcher
    finally:
        await watcher.stop()
        pipeline.stop()
