"""`relaystream dev`: the whole system on this machine, for a newcomer, in one command.

It starts (or reuses) the local Kafka broker, ensures the topics, starts a sample destination
mail sink, writes a settings file for a local run, starts the four services as child processes
(`python -m relaystream run NAME`, exactly as in production), prints the endpoints, and on
Ctrl-C stops the services (SIGTERM, so they commit), the sink and the broker it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

import yaml

from ..core.kafka.admin import ensure_topics
from ..core.kafka.topics import TopicSettings, declare_topics
from .broker import LocalKafka
from .sink import MailSink

SERVICE_NAMES = ("ingest", "routing", "scheduling", "delivery")


@dataclass(frozen=True)
class DevPorts:
    """Loopback ports of a local run. The sample policy smarthosts to the sink's port."""

    kafka: int = 9092
    kafka_controller: int = 9093
    smtp: int = 2525
    http: int = 8025
    sink: int = 2526
    first_health: int = 9101


def sample_policy_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("sample-policy.lua")))


def write_dev_settings(state_dir: Path, bootstrap: str, ports: DevPorts) -> Path:
    """The settings file every local service reads (health ports are given per process)."""
    policy = str(sample_policy_path())
    settings = {
        "kafka_bootstrap": bootstrap,
        "ingest": {"smtp_port": ports.smtp, "http_port": ports.http},
        "routing": {"policy_path": policy},
        "scheduling": {"policy_path": policy},
        # The sink is on loopback: a local smarthost needs the prohibited-destination switch.
        "delivery": {"allow_loopback": True, "tls_mode": "Disabled"},
    }
    path = state_dir / "dev-settings.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def start_service(
    name: str, settings_path: Path, health_port: int, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["RELAYSTREAM_HTTP_BIND"] = f"127.0.0.1:{health_port}"
    env["RELAYSTREAM_CONFIG"] = str(settings_path)
    return subprocess.Popen(
        [sys.executable, "-m", "relaystream", "run", name],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_services(processes: dict[str, subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _say(f"dev: {name} did not stop within {grace_s:.0f}s; killing it")
            process.kill()
            process.wait()


def run_dev(state_dir: Path, ports: DevPorts = DevPorts(), keep_broker: bool = False) -> int:
    """Run everything until Ctrl-C (or SIGTERM); the exit code.

    Either signal, at any point (the broker still starting included), stops what was started.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    broker = LocalKafka(state_dir=state_dir)
    started_broker = not broker.is_running()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    sink = MailSink(port=ports.sink, directory=state_dir / "sink")
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(broker, started_broker, processes, sink, state_dir, ports)
    except KeyboardInterrupt:
        _say("\ndev: interrupted while starting")
        return 130
    finally:
        # A second signal must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _stop_all(broker, started_broker and not keep_broker, processes, sink)
        finally:
            for number, handler in previous.items():
                # None: a handler not set from Python cannot be put back; the default then.
                signal.signal(number, signal.SIG_DFL if handler is None else handler)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops a run as Ctrl-C does."""
    raise KeyboardInterrupt


def _run(
    broker: LocalKafka,
    started_broker: bool,
    processes: dict[str, subprocess.Popen[bytes]],
    sink: MailSink,
    state_dir: Path,
    ports: DevPorts,
) -> int:
    if started_broker:
        print("dev: starting Kafka (first run fetches the jars from Maven Central) ...", flush=True)
        bootstrap = broker.start(port=ports.kafka, controller_port=ports.kafka_controller)
    else:
        bootstrap = broker.status().bootstrap or f"127.0.0.1:{ports.kafka}"
        print(f"dev: reusing the running Kafka broker at {bootstrap}", flush=True)
    report = asyncio.run(ensure_topics(bootstrap, declare_topics(TopicSettings.local())))
    if not report.ok:
        for drift in report.drifts:
            print(f"dev: topic drift: {drift}", file=sys.stderr)
    sink.start()
    settings_path = write_dev_settings(state_dir, bootstrap, ports)
    logs_dir = state_dir / "logs"
    logs_dir.mkdir(exist_ok=True)
    health_ports = {name: ports.first_health + i for i, name in enumerate(SERVICE_NAMES)}
    for name in SERVICE_NAMES:
        log = (logs_dir / f"{name}.log").open("ab")
        processes[name] = start_service(name, settings_path, health_ports[name], log)
    # "running" only once every service is ready: ingest listens for SMTP by then.
    try:
        wait_until_ready(processes, health_ports, logs_dir)
    except RuntimeError as failure:
        print(f"dev: {failure}", file=sys.stderr, flush=True)
        return 1
    print_endpoints(bootstrap, ports, state_dir)
    return supervise(processes)


def _stop_all(
    broker: LocalKafka,
    stop_broker: bool,
    processes: dict[str, subprocess.Popen[bytes]],
    sink: MailSink,
) -> None:
    stop_services(processes)
    with contextlib.suppress(Exception):
        sink.stop()
    if stop_broker:
        _say("dev: stopping Kafka")
        broker.stop()
    _say("dev: stopped")


def wait_until_ready(
    processes: dict[str, subprocess.Popen[bytes]],
    health_ports: dict[str, int],
    logs_dir: Path,
    timeout_s: float = 180.0,
) -> None:
    """Poll each service's /readyz; RuntimeError if a service exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    waiting = set(processes)
    while waiting:
        for name in sorted(waiting):
            code = processes[name].poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with {code}; log: {logs_dir / name}.log")
            url = f"http://127.0.0.1:{health_ports[name]}/readyz"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        waiting.discard(name)
            except (urllib.error.URLError, OSError):
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {timeout_s:.0f}s: {', '.join(sorted(waiting))}")
        time.sleep(0.3)


def _say(text: str) -> None:
    """Progress on stdout; a closed stdout (say `| tee` killed by the same Ctrl-C) must not
    keep the shutdown from stopping Kafka."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


def supervise(processes: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait for Ctrl-C or SIGTERM (both raise KeyboardInterrupt, see run_dev); a service that
    exits on its own ends the run."""
    try:
        while True:
            for name, process in processes.items():
                code = process.poll()
                if code is not None:
                    print(f"dev: {name} exited with status {code}; see its log", flush=True)
                    return 1
            with contextlib.suppress(subprocess.TimeoutExpired):
                next(iter(processes.values())).wait(timeout=0.5)
    except KeyboardInterrupt:
        _say("\ndev: stopping the services ...")
        return 0


def print_endpoints(bootstrap: str, ports: DevPorts, state_dir: Path) -> None:
    health = ", ".join(
        f"{name} http://127.0.0.1:{ports.first_health + i}/metrics"
        for i, name in enumerate(SERVICE_NAMES)
    )
    print(
        "\nrelaystream is running:\n"
        f"  SMTP           127.0.0.1:{ports.smtp}   (relay allowed from loopback)\n"
        f"  HTTP injection http://127.0.0.1:{ports.http}/api/inject/v1\n"
        f"  Kafka          {bootstrap}\n"
        f"  mail sink      127.0.0.1:{ports.sink}   (messages in {state_dir / 'sink'})\n"
        f"  policy         {sample_policy_path()}\n"
        f"  service logs   {state_dir / 'logs'}\n"
        f"  health/metrics {health}\n"
        "Try:  swaks --server 127.0.0.1:2525 --from me@example.org --to you@example.com\n"
        "      relaystream logs --follow\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
