"""`relaystream dev`: the whole system on this machine, for a newcomer, in one command.

It starts (or reuses) the local Kafka broker, ensures the topics, starts a sample destination
mail sink, writes a settings file for a local run, starts the four services as child processes
(`python -m relaystream run NAME`, exactly as in production), prints the endpoints, and on
Ctrl-C stops the services (SIGTERM, so they commit), the sink and the broker it started.

While it runs it supervises the services as an orchestrator would: one that exits (a crash, a
`kill -9`) is restarted after a back-off, and the terminal says which, how it ended and when it
is back. Each service keeps one static consumer-group instance id across its restarts, as the
manifests give each pod, so a restarted service takes its partitions back without a rebalance.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import yaml

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicSettings, declare_topics

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


def write_dev_settings(
    state_dir: Path, bootstrap: str, ports: DevPorts, policy_path: Path | None = None
) -> Path:
    """The settings file every local service reads (health ports are given per process).
    `policy_path`: the policy (default: the sample policy), which every service reads from
    routing's setting (ingest runs its reception events, scheduling its get_queue_config); its
    data files are read from its folder, so it is written as an absolute path."""
    policy = str((policy_path or sample_policy_path()).resolve())
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


def group_instance_id(name: str) -> str:
    """The static group membership id of a local service: the same across its restarts."""
    return f"dev-{name}"


def spawn_service(
    service: str,
    settings_path: Path,
    environment: Mapping[str, str],
    log: IO[bytes],
    preexec_fn: Callable[[], Any] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m relaystream run SERVICE`, as in production, with the settings file and the
    instance's own variables (health port, group instance id, ...) on top of ours."""
    env = {**os.environ, "RELAYSTREAM_CONFIG": str(settings_path), **environment}
    return subprocess.Popen(
        [sys.executable, "-m", "relaystream", "run", service],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )


def start_service(
    name: str, settings_path: Path, health_port: int, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    return spawn_service(
        name,
        settings_path,
        {
            "RELAYSTREAM_HTTP_BIND": f"127.0.0.1:{health_port}",
            "RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID": group_instance_id(name),
        },
        log,
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


def run_dev(
    state_dir: Path,
    ports: DevPorts = DevPorts(),
    keep_broker: bool = False,
    policy_path: Path | None = None,
) -> int:
    """Run everything until Ctrl-C (or SIGTERM); the exit code. `policy_path`: the operator's
    own routing policy instead of the sample one.

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
        return _run(broker, started_broker, processes, sink, state_dir, ports, policy_path)
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
    policy_path: Path | None,
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
    settings_path = write_dev_settings(state_dir, bootstrap, ports, policy_path)
    logs_dir = state_dir / "logs"
    logs_dir.mkdir(exist_ok=True)
    health_ports = {name: ports.first_health + i for i, name in enumerate(SERVICE_NAMES)}

    def start(name: str) -> subprocess.Popen[bytes]:
        with (logs_dir / f"{name}.log").open("ab") as log:  # the child has its own copy
            return start_service(name, settings_path, health_ports[name], log)

    for name in SERVICE_NAMES:
        processes[name] = start(name)
    # "running" only once every service is ready: ingest listens for SMTP by then.
    try:
        wait_until_ready(processes, health_ports, logs_dir)
    except RuntimeError as failure:
        print(f"dev: {failure}", file=sys.stderr, flush=True)
        return 1
    print_endpoints(bootstrap, ports, state_dir, processes, policy_path)
    return supervise(Supervisor(processes, start, health_ports, logs_dir))


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


@dataclass
class RestartBackoff:
    """How long to wait before restarting a service that exited: `first_s`, doubling with each
    exit up to `longest_s`, and `first_s` again once it had stayed up `stable_s`."""

    first_s: float = 1.0
    longest_s: float = 30.0
    stable_s: float = 60.0
    _next_s: float | None = field(default=None, init=False)

    def delay_after_exit(self, ran_for_s: float) -> float:
        if self._next_s is None or ran_for_s >= self.stable_s:
            self._next_s = self.first_s
        delay = self._next_s
        self._next_s = min(delay * 2, self.longest_s)
        return delay


def describe_exit(returncode: int) -> str:
    """How a process ended, from `Popen.returncode` (negative: killed by that signal)."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def answers_ready(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    """Restarts the services that exit, with a back-off per service, and says so.

    `processes` is the run's table of service processes: a restart replaces the entry, so the
    shutdown stops whichever process is current.
    """

    def __init__(
        self,
        processes: dict[str, subprocess.Popen[bytes]],
        start: Callable[[str], subprocess.Popen[bytes]],
        health_ports: dict[str, int],
        logs_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._processes = processes
        self._start = start
        self._health_ports = health_ports
        self._logs_dir = logs_dir
        self._clock = clock
        now = clock()
        self._started_at = dict.fromkeys(processes, now)
        self._backoff = {name: RestartBackoff() for name in processes}
        self._restart_at: dict[str, float] = {}
        self._recovering: set[str] = set()

    def check(self) -> None:
        """One look at every service: note exits, restart those whose back-off is over, and
        say when a restarted one is ready again."""
        now = self._clock()
        for name, process in self._processes.items():
            if name in self._restart_at:
                if now >= self._restart_at[name]:
                    del self._restart_at[name]
                    self._processes[name] = self._start(name)
                    self._started_at[name] = now
                    self._recovering.add(name)
                    _say(f"dev: {name} restarted (pid {self._processes[name].pid})")
                continue
            code = process.poll()
            if code is not None:
                self._recovering.discard(name)
                delay = self._backoff[name].delay_after_exit(now - self._started_at[name])
                self._restart_at[name] = now + delay
                _say(
                    f"dev: {name} {describe_exit(code)}; restarting it in {delay:.0f}s "
                    f"(log: {self._logs_dir / name}.log)"
                )
            elif name in self._recovering and answers_ready(self._health_ports[name]):
                self._recovering.discard(name)
                took = now - self._started_at[name]
                _say(f"dev: {name} is ready again, {took:.1f}s after its restart")


def supervise(supervisor: Supervisor, interval_s: float = 0.5) -> int:
    """Keep the services running until Ctrl-C or SIGTERM (both raise KeyboardInterrupt, see
    run_dev); the exit code."""
    try:
        while True:
            supervisor.check()
            time.sleep(interval_s)
    except KeyboardInterrupt:
        _say("\ndev: stopping the services ...")
        return 0


def print_endpoints(
    bootstrap: str,
    ports: DevPorts,
    state_dir: Path,
    processes: dict[str, subprocess.Popen[bytes]],
    policy_path: Path | None = None,
) -> None:
    pids = ", ".join(f"{name} {process.pid}" for name, process in processes.items())
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
        f"  policy         {(policy_path or sample_policy_path()).resolve()}\n"
        f"  service logs   {state_dir / 'logs'}\n"
        f"  service pids   {pids}\n"
        f"  health/metrics {health}\n"
        + (
            ""
            if policy_path is None
            else f"  (your policy routes the mail; the sink is routing_domain "
            f"'[127.0.0.1]:{ports.sink}')\n"
        )
        + "Try:  swaks --server 127.0.0.1:2525 --from me@example.org --to you@example.com\n"
        "      relaystream logs --follow\n"
        "A service that exits is restarted; Ctrl-C stops everything.\n",
        flush=True,
    )
