"""How long each service takes to come back after a kill -9: to /readyz 200 and to serving.

    .venv/bin/python devkit/bench/restart_bench.py [--bootstrap 127.0.0.1:9092] [--repeats 2]
        [--dynamic]

Starts the four services as `relaystream run NAME` processes (as `relaystream dev` does, with
its settings and sample policy, on free ports and fresh topics), a sample sink, and then for
each service in turn: SIGKILL, start it again at once, and time from that start until its
/readyz answers 200, and until it serves: for ingest an SMTP 250, for the others a message
sent right after the start that reaches the sink (routing, scheduling and delivery must each
handle it). Each service gets `RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID=bench-NAME` (static group
membership, what the manifests set); --dynamic leaves it unset.
Without --bootstrap a temporary broker is started (the JVM needs tens of seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicSettings, declare_topics
from relaystream_devkit.broker import LocalKafka, free_loopback_ports
from relaystream_devkit.dev import (
    SERVICE_NAMES,
    DevPorts,
    sample_policy_path,
    write_dev_settings,
)
from relaystream_devkit.sink import MailSink

SERVE_WITHIN_S = 120.0


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def send(smtp_port: int, marker: str) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            body = f"Subject: {marker}\r\n\r\nx\r\n"
            client.sendmail("me@example.org", ["you@example.com"], body)
        return True
    except (OSError, smtplib.SMTPException):
        return False


def arrived(sink_dir: Path, marker: str) -> bool:
    return any(marker.encode() in path.read_bytes() for path in sink_dir.glob("*.eml"))


class Services:
    def __init__(
        self, workdir: Path, settings_path: Path, policy: Path, prefix: str, dynamic: bool
    ) -> None:
        self.workdir = workdir
        self.settings_path = settings_path
        self.policy = policy
        self.prefix = prefix
        self.dynamic = dynamic
        self.health = dict(zip(SERVICE_NAMES, free_loopback_ports(len(SERVICE_NAMES)), strict=True))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYSTREAM_")}
        env["RELAYSTREAM_CONFIG"] = str(self.settings_path)
        env["RELAYSTREAM_TOPIC_PREFIX"] = self.prefix
        env["RELAYSTREAM_ROUTING_POLICY_PATH"] = str(self.policy)
        env["RELAYSTREAM_SCHEDULING_POLICY_PATH"] = str(self.policy)
        env["RELAYSTREAM_HTTP_BIND"] = f"127.0.0.1:{self.health[name]}"
        if not self.dynamic:
            env["RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID"] = f"bench-{name}"
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "relaystream", "run", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()


def wait(condition: object, within: float) -> float | None:
    """Seconds until `condition()` held, None if it did not within `within`."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def measure(services: Services, name: str, smtp_port: int, sink_dir: Path) -> tuple[float, float]:
    """Seconds from the restart to /readyz 200, and to serving."""
    services.kill(name)
    started = time.monotonic()
    services.start(name)
    marker = f"restart-{name}-{uuid.uuid4().hex}"
    if name != "ingest":
        assert send(smtp_port, marker), "ingest refused the message"
    readiness: list[float] = []
    serving: list[float] = []
    while time.monotonic() - started < SERVE_WITHIN_S and not (readiness and serving):
        if not readiness and ready(services.health[name]):
            readiness.append(time.monotonic() - started)
        if not serving and (
            send(smtp_port, marker) if name == "ingest" else arrived(sink_dir, marker)
        ):
            serving.append(time.monotonic() - started)
        time.sleep(0.1)
    assert readiness and serving, f"{name} did not come back"
    return readiness[0], serving[0]


def run(bootstrap: str, workdir: Path, repeats: int, dynamic: bool) -> None:
    smtp, http, sink_port = free_loopback_ports(3)
    ports = DevPorts(kafka=0, kafka_controller=0, smtp=smtp, http=http, sink=sink_port)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    asyncio.run(ensure_topics(bootstrap, declare_topics(TopicSettings.local(prefix=prefix))))
    sink_dir = workdir / "sink"
    sink = MailSink(port=sink_port, directory=sink_dir, quiet=True)
    sink.start()
    settings_path = write_dev_settings(workdir, bootstrap, ports)
    # The sample policy smarthosts to the sink's default port; this run's sink has another.
    policy = workdir / "policy.lua"
    policy.write_text(sample_policy_path().read_text().replace(":2526'", f":{sink_port}'"))
    services = Services(workdir, settings_path, policy, prefix, dynamic)
    try:
        for name in SERVICE_NAMES:
            services.start(name)
        for name in SERVICE_NAMES:
            assert wait(lambda n=name: ready(services.health[n]), 180) is not None, name
        assert send(ports.smtp, "warm-up")
        assert wait(lambda: arrived(sink_dir, "warm-up"), 60) is not None, "warm-up not delivered"
        print("membership:", "dynamic" if dynamic else "static (group.instance.id)")
        print(f"{'service':<12}{'ready s':>10}{'serving s':>12}")
        for _ in range(repeats):
            for name in SERVICE_NAMES:
                became_ready, served = measure(services, name, ports.smtp, sink_dir)
                print(f"{name:<12}{became_ready:>10.1f}{served:>12.1f}", flush=True)
    finally:
        services.stop_all()
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dynamic", action="store_true", help="no group.instance.id")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp:
        workdir = Path(tmp)
        if args.bootstrap:
            run(args.bootstrap, workdir, args.repeats, args.dynamic)
            return
        broker = LocalKafka(state_dir=workdir / "kafka")
        kafka, controller = free_loopback_ports(2)
        bootstrap = broker.start(port=kafka, controller_port=controller)
        try:
            run(bootstrap, workdir, args.repeats, args.dynamic)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
