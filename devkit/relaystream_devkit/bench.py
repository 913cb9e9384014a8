"""`relaystream bench`: end-to-end throughput and latency of the pipeline, next to Postfix.

The bench starts its own Kafka broker (state under its own directory), the four services as
`relaystream run NAME` child processes (as `relaystream dev` does) with a policy that routes
every domain to the bench's sink, the sink in a child process, and then, per scenario, sends
N messages over M SMTP sessions into ingest and waits until the sink has every recipient.
With `bootstrap` set it measures a running deployment instead (its policy must route to the
bench's sink port). With `compare_postfix` the same load goes through a throwaway local
Postfix relaying to the same sink, runs alternating, and the report gives the ratios.

Numbers per run: injection rate (messages accepted by the MTA per second), end-to-end rate
(recipients delivered per second, from the first message sent to the last arrival at the
sink), reception-to-delivery latency percentiles (relaystream: the log topic's Reception and
Delivery records; Postfix: its `delay=`), and per process CPU seconds per 1000 messages and
peak RSS. Nothing here asserts a number.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import yaml

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics

from .bench_load import (
    SCENARIOS,
    Injection,
    PostfixSinkProcess,
    Scenario,
    Sink,
    SinkProcess,
    inject_builtin,
    inject_smtp_source,
)
from .bench_log import BrokerLogWatch, TopicGrowth
from .bench_measure import (
    STAGES,
    ProcessUsage,
    UsageProbe,
    find_processes,
    percentile,
    reception_to_delivery,
    stage_medians,
)
from .bench_postfix import (
    LocalPostfix,
    install_postfix,
    postfix_directory_problem,
    postfix_problem,
)
from .broker import LocalKafka, free_loopback_ports, port_in_use
from .dev import SERVICE_NAMES, start_service, stop_services, wait_until_ready
from .fleet import render_sink_policy

GENERATORS = ("builtin", "smtp-source")
SINKS = ("builtin", "smtp-sink")
# A run is over when every recipient arrived, or when nothing arrived for this long.
IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BenchOptions:
    state_dir: Path
    messages: int = 1000
    concurrency: int = 10
    scenarios: tuple[str, ...] = ("1rcpt-1k",)
    repeats: int = 1
    # A fresh broker's JVM and the services' caches need this many to reach their steady
    # pace; with 50, the first measured run was about a fifth slower than the next ones.
    warmup_messages: int = 1000
    compare_postfix: bool = False
    install_postfix: bool = False
    generator: str = "builtin"
    # "smtp-sink": Postfix's reference sink (one-recipient scenarios: it counts messages).
    sink: str = "builtin"
    # Messages per second the builtin generator holds to (None: as fast as answered).
    rate: float | None = None
    # A running deployment: its broker, ingest SMTP address and topic prefix.
    bootstrap: str | None = None
    ingest: str = "127.0.0.1:2525"
    topic_prefix: str = "relaystream."
    sink_port: int | None = None
    # An existing broker for the bench's own services (tests); default: the bench starts one.
    kafka: str | None = None
    # The services' `kafka_compression` (None: the setting's default).
    compression: str | None = None


@dataclass(frozen=True)
class RunResult:
    system: str
    scenario: str
    messages: int
    recipients_expected: int
    recipients_delivered: int
    injection_rate: float
    end_to_end_rate: float
    latency_ms: dict[str, float]
    latency_source: str
    latency_samples: int
    # Median ms of each stage (bench_measure.STAGES); empty for Postfix.
    stage_ms: dict[str, float]
    usage: list[ProcessUsage]
    refused: int = 0
    first_error: str | None = None
    # What the run appended to the bench broker's log directory, per topic (own broker only).
    broker_log: list[TopicGrowth] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.recipients_delivered >= self.recipients_expected


@dataclass
class BenchReport:
    options: dict[str, object]
    runs: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        runs = [dict(asdict(run), complete=run.complete) for run in self.runs]
        return json.dumps({"options": self.options, "runs": runs, "notes": self.notes}, indent=2)


@dataclass(frozen=True)
class MeasuredLatencies:
    """Reception-to-delivery latencies of one run's messages, where they came from, and (for
    relaystream) the median of each stage."""

    milliseconds: list[float]
    source: str
    stage_ms: dict[str, float] = field(default_factory=dict)


class System(Protocol):
    """A mail system under test: where to send, what to watch, how to read latencies."""

    name: str
    smtp: tuple[str, int]
    processes: dict[str, int]
    trees: frozenset[str]
    # The broker's log directory, when the bench started the broker itself.
    broker_log: BrokerLogWatch | None

    async def latencies(self, tag: str, since: datetime, expected: int) -> MeasuredLatencies: ...


# -- relaystream -----------------------------------------------------------------------------


@dataclass
class Relaystream:
    """The pipeline under test, started by the bench or already running."""

    bootstrap: str
    topics: TopicCatalog
    smtp: tuple[str, int]
    processes: dict[str, int]
    name: str = "relaystream"
    trees: frozenset[str] = frozenset()
    broker_log: BrokerLogWatch | None = None

    async def latencies(self, tag: str, since: datetime, expected: int) -> MeasuredLatencies:
        topics = self.topics
        found = await reception_to_delivery(self.bootstrap, topics.log.name, tag, since, expected)
        stages = await stage_medians(
            self.bootstrap, topics.decisions.name, topics.attempts.name, found, since
        )
        return MeasuredLatencies(found.milliseconds, "log topic Reception->Delivery", stages)


class OwnPipeline:
    """Broker, topics, services started by the bench in `state_dir`; `stop()` ends them."""

    def __init__(
        self,
        state_dir: Path,
        sink_port: int,
        kafka: str | None = None,
        compression: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.sink_port = sink_port
        self.kafka = kafka
        self.compression = compression
        self.broker = LocalKafka(state_dir=state_dir)
        self.services: dict[str, subprocess.Popen[bytes]] = {}
        self.prefix = f"bench.{uuid.uuid4().hex[:8]}."

    def start(self) -> Relaystream:
        kafka, controller, smtp, http, admin, *health = free_loopback_ports(9)
        bootstrap = self.kafka or self._start_broker(kafka, controller)
        topics = declare_topics(TopicSettings.local(prefix=self.prefix))
        report = asyncio.run(ensure_topics(bootstrap, topics))
        if not report.ok:
            raise RuntimeError(f"topics: {report.drifts}")
        policy = self.state_dir / "bench-policy.lua"
        policy.write_text(render_sink_policy(self.sink_port, written_by="relaystream bench"))
        settings = {
            "kafka_bootstrap": bootstrap,
            "topic_prefix": self.prefix,
            "ingest": {"smtp_port": smtp, "http_port": http},
            "routing": {"policy_path": str(policy)},
            "scheduling": {"policy_path": str(policy), "admin_api_port": admin},
            # The sink is on loopback: a local smarthost needs the prohibited-destination switch.
            "delivery": {"allow_loopback": True, "tls_mode": "Disabled"},
        }
        if self.compression is not None:
            settings["kafka_compression"] = self.compression
        settings_path = self.state_dir / "bench-settings.yaml"
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        logs_dir = self.state_dir / "logs"
        logs_dir.mkdir(exist_ok=True)
        health_ports = dict(zip(SERVICE_NAMES, health, strict=False))
        print("bench: starting the four services ...", flush=True)
        for name in SERVICE_NAMES:
            log = (logs_dir / f"{name}.log").open("ab")
            self.services[name] = start_service(name, settings_path, health_ports[name], log)
        wait_until_ready(self.services, health_ports, logs_dir)
        pids = {name: process.pid for name, process in self.services.items()}
        broker_pid = self.broker.status().pid if self.kafka is None else None
        if broker_pid is not None:
            pids["broker"] = broker_pid
        watch = None
        if self.kafka is None:
            watch = BrokerLogWatch(self.broker.default_data_dir, self.prefix)
        return Relaystream(bootstrap, topics, ("127.0.0.1", smtp), pids, broker_log=watch)

    def _start_broker(self, port: int, controller_port: int) -> str:
        if self.broker.is_running():
            self.broker.stop()  # left over from an interrupted bench in this directory
        shutil.rmtree(self.broker.default_data_dir, ignore_errors=True)
        print(f"bench: starting Kafka in {self.state_dir} ...", flush=True)
        return self.broker.start(port=port, controller_port=controller_port, timeout_s=180)

    def stop(self) -> None:
        stop_services(self.services)
        if self.kafka is None:
            self.broker.stop()


def running_deployment(options: BenchOptions) -> Relaystream:
    """A deployment started elsewhere (e.g. `relaystream dev`); its processes found in /proc."""
    assert options.bootstrap is not None
    host, _, port = options.ingest.rpartition(":")
    pids: dict[str, int] = {}
    for name in SERVICE_NAMES:
        found = find_processes(f"relaystream\0run\0{name}\0".encode())
        if found:
            pids[name] = found[0]
    brokers = find_processes(b"kafka.Kafka")
    if brokers:
        pids["broker"] = brokers[0]
    topics = declare_topics(TopicSettings.local(prefix=options.topic_prefix))
    return Relaystream(options.bootstrap, topics, (host, int(port)), pids)


# -- Postfix ---------------------------------------------------------------------------------


@dataclass
class Postfix:
    instance: LocalPostfix
    smtp: tuple[str, int]
    processes: dict[str, int]
    name: str = "postfix"
    trees: frozenset[str] = frozenset({"postfix"})
    broker_log: BrokerLogWatch | None = None

    async def latencies(self, tag: str, since: datetime, expected: int) -> MeasuredLatencies:
        # postlogd writes asynchronously: give the last lines a moment.
        for _ in range(20):
            delays = self.instance.delivery_delays_ms(tag)
            if len(delays) >= expected:
                break
            await asyncio.sleep(0.25)
        return MeasuredLatencies(delays, "Postfix maillog delay= (10 ms resolution)")


def postfix_installed_if_asked(options: BenchOptions) -> str | None:
    """With --install-postfix, apt-get install Postfix when it is missing (its smtp-sink and
    smtp-source come with it); why Postfix cannot run here, or None."""
    problem = postfix_problem()
    if problem is not None and options.install_postfix and "not installed" in problem:
        print("bench: installing Postfix (apt-get install -y postfix) ...", flush=True)
        failure = install_postfix()
        problem = failure or postfix_problem()
    return problem


class PostfixDirectoryError(RuntimeError):
    """Postfix could not use the bench's state directory; raised before anything starts."""


def check_postfix_directory(directory: Path) -> None:
    """Create Postfix's directory and make sure its mail owner can reach it: otherwise its
    master dies on its lock file and the comparison asked for would be lost to a note."""
    directory.mkdir(parents=True, exist_ok=True)
    problem = postfix_directory_problem(directory)
    if problem is not None:
        raise PostfixDirectoryError(problem)


def start_postfix(options: BenchOptions, sink_port: int, notes: list[str]) -> Postfix | None:
    problem = postfix_installed_if_asked(options)
    if problem is not None:
        notes.append(f"no Postfix comparison: {problem}")
        return None
    instance = LocalPostfix(options.state_dir / "postfix", free_loopback_ports(1)[0], sink_port)
    try:
        instance.start()
    except RuntimeError as error:
        notes.append(f"no Postfix comparison: {error}")
        return None
    pid = instance.master_pid
    assert pid is not None
    return Postfix(instance, ("127.0.0.1", instance.smtp_port), {"postfix": pid})


# -- runs ------------------------------------------------------------------------------------


async def inject(
    options: BenchOptions, system: System, scenario: Scenario, messages: int, tag: str
) -> Injection:
    host, port = system.smtp
    if options.generator == "smtp-source":
        return await asyncio.to_thread(
            inject_smtp_source, host, port, scenario, messages, options.concurrency, tag
        )
    return await inject_builtin(
        host, port, scenario, messages, options.concurrency, tag, rate=options.rate
    )


async def run_once(
    options: BenchOptions, system: System, sink: Sink, scenario: Scenario, messages: int
) -> RunResult:
    tag = uuid.uuid4().hex[:12]
    # Log records are looked up from a little before the run (clock steps, broker time).
    since = datetime.now(UTC) - timedelta(seconds=5)
    probe = UsageProbe(system.processes, system.trees)
    before = sink.recipients
    if system.broker_log is not None:
        await asyncio.to_thread(system.broker_log.advance)  # the previous run's tail left out
    probe.start()
    injection = await inject(options, system, scenario, messages, tag)
    expected = injection.accepted * scenario.recipients
    await sink.wait_for(before + expected, IDLE_TIMEOUT_S)
    delivered = sink.recipients - before
    last_arrival = sink.last_arrival
    usage = probe.finish()
    broker_log = []
    if system.broker_log is not None:
        broker_log = await asyncio.to_thread(system.broker_log.settled)
    measured = await system.latencies(tag, since, expected)
    latencies = measured.milliseconds
    return RunResult(
        system=system.name,
        scenario=scenario.name,
        messages=messages,
        recipients_expected=expected,
        recipients_delivered=delivered,
        injection_rate=injection.rate,
        end_to_end_rate=delivered / max(last_arrival - injection.started, 1e-9),
        latency_ms={
            name: percentile(latencies, fraction)
            for name, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
        },
        latency_source=measured.source,
        latency_samples=len(latencies),
        stage_ms=measured.stage_ms,
        usage=usage,
        refused=injection.refused,
        first_error=injection.first_error,
        broker_log=broker_log,
    )


async def run_scenarios(
    options: BenchOptions, systems: Sequence[System], sink: Sink, report: BenchReport
) -> None:
    for name in options.scenarios:
        scenario = SCENARIOS[name]
        for system in systems:
            if options.warmup_messages:
                await run_once(options, system, sink, scenario, options.warmup_messages)
        for repeat in range(options.repeats):
            # Alternating systems: drift (page cache, JIT, thermal) hits both alike.
            for system in systems:
                result = await run_once(options, system, sink, scenario, options.messages)
                report.runs.append(result)
                print(
                    f"bench: {scenario.name} #{repeat + 1} {system.name}: "
                    f"inject {result.injection_rate:.0f}/s, "
                    f"end-to-end {result.end_to_end_rate:.0f}/s, "
                    f"{result.recipients_delivered}/{result.recipients_expected} delivered",
                    flush=True,
                )


def bench_sink(options: BenchOptions, port: int) -> Sink:
    """The sink the options name; ValueError when it cannot count their scenarios."""
    if options.sink == "builtin":
        return SinkProcess(port)
    if options.sink != "smtp-sink":
        raise ValueError(f"unknown sink {options.sink!r}; known: {', '.join(SINKS)}")
    several = [name for name in options.scenarios if SCENARIOS[name].recipients != 1]
    if several:
        raise ValueError(
            f"smtp-sink counts messages, not recipients: it cannot measure {', '.join(several)}"
            " (use the builtin sink)"
        )
    return PostfixSinkProcess(port)


def run_bench(options: BenchOptions) -> BenchReport:
    """Start what the options ask for, run every scenario, stop it all; the report."""
    unknown = [name for name in options.scenarios if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    options.state_dir.mkdir(parents=True, exist_ok=True)
    report = BenchReport(options={k: str(v) for k, v in asdict(options).items()})
    if options.compare_postfix or options.sink == "smtp-sink" or options.generator == "smtp-source":
        # Postfix's tools, before the sink and the generator look for them.
        postfix_installed_if_asked(options)
    if options.compare_postfix:
        check_postfix_directory(options.state_dir / "postfix")
    sink_port = options.sink_port or free_loopback_ports(1)[0]
    sink = bench_sink(options, sink_port)
    own: OwnPipeline | None = None
    postfix: Postfix | None = None
    try:
        sink.start()
        if options.bootstrap is None:
            own = OwnPipeline(options.state_dir, sink_port, options.kafka, options.compression)
            relaystream = own.start()
        else:
            relaystream = running_deployment(options)
        systems: list[System] = [relaystream]
        if options.compare_postfix:
            postfix = start_postfix(options, sink_port, report.notes)
            if postfix is not None:
                systems.append(postfix)
        for system in systems:
            system.processes["sink"] = sink.pid or 0
        asyncio.run(run_scenarios(options, systems, sink, report))
    finally:
        if postfix is not None:
            postfix.instance.stop()
        if own is not None:
            own.stop()
        sink.stop()
    return report


# -- the report ------------------------------------------------------------------------------


def _spread(values: Sequence[float], digits: int = 0) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def format_report(report: BenchReport) -> str:
    lines: list[str] = []
    scenarios = list(dict.fromkeys(run.scenario for run in report.runs))
    for scenario in scenarios:
        runs = [run for run in report.runs if run.scenario == scenario]
        first = runs[0]
        per_message = first.recipients_expected // max(1, first.messages)
        repeats = len(runs) // len({r.system for r in runs})
        lines.append(
            f"\n== {scenario}: {first.messages} messages, {per_message} recipient(s) each; "
            f"median (min-max) over {repeats} run(s)"
        )
        lines.append(
            f"  {'system':<12} {'inject msg/s':>22} {'end-to-end rcpt/s':>22} "
            f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        )
        systems = list(dict.fromkeys(run.system for run in runs))
        for system in systems:
            mine = [run for run in runs if run.system == system]
            latency = {
                key: statistics.median(run.latency_ms[key] for run in mine)
                for key in ("p50", "p95", "p99")
            }
            lines.append(
                f"  {system:<12} {_spread([r.injection_rate for r in mine]):>22} "
                f"{_spread([r.end_to_end_rate for r in mine]):>22} "
                f"{latency['p50']:>8.0f} {latency['p95']:>8.0f} {latency['p99']:>8.0f}"
            )
            incomplete = [r for r in mine if not r.complete]
            if incomplete:
                worst = incomplete[0]
                lines.append(
                    f"    INCOMPLETE: {worst.recipients_delivered}/{worst.recipients_expected} "
                    f"delivered, {worst.refused} refused ({worst.first_error})"
                )
            usage_names = [usage.name for usage in mine[0].usage]
            parts = []
            for name in usage_names:
                cpu = [
                    1000 * u.cpu_seconds / max(1, r.messages)
                    for r in mine
                    for u in r.usage
                    if u.name == name
                ]
                peak = max(u.peak_rss_kib for r in mine for u in r.usage if u.name == name)
                parts.append(f"{name} {statistics.median(cpu):.2f} s, {peak / 1024:.0f} MiB")
            lines.append("    CPU per 1000 msgs, peak RSS: " + "; ".join(parts))
            lines.extend(broker_log_lines(mine))
            staged = [run.stage_ms for run in mine if run.stage_ms]
            if staged:
                stages = ", ".join(
                    f"{stage} {statistics.median(run[stage] for run in staged):.0f}"
                    for stage in STAGES
                )
                lines.append(f"    stage medians, ms: {stages}")
        if len(systems) == 2:
            lines.append(ratio_line(runs, systems[0], systems[1]))
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)


def broker_log_lines(runs: Sequence[RunResult]) -> list[str]:
    """Per message, medians over the runs: what each topic's log gained (bytes, records,
    transaction markers, batches); nothing when the bench did not start the broker."""
    logged = [run for run in runs if run.broker_log]
    if not logged:
        return []

    def per_message(topic: str | None, attribute: str) -> float:
        return statistics.median(
            sum(int(getattr(g, attribute)) for g in run.broker_log if topic in (None, g.topic))
            / max(1, run.messages)
            for run in logged
        )

    topics = list(dict.fromkeys(g.topic for run in logged for g in run.broker_log))
    lines = [
        f"    broker log per message: {per_message(None, 'bytes'):.0f} bytes, "
        f"{per_message(None, 'records'):.2f} records, {per_message(None, 'markers'):.2f} "
        f"transaction markers, {per_message(None, 'batches'):.2f} batches"
    ]
    for topic in topics:
        lines.append(
            f"      {topic:<22} {per_message(topic, 'bytes'):>8.0f} B "
            f"{per_message(topic, 'records'):>6.2f} rec {per_message(topic, 'markers'):>6.2f} "
            f"mark {per_message(topic, 'batches'):>6.2f} batch "
            f"({per_message(topic, 'compressed_batches'):.2f} compressed)"
        )
    return lines


def pair_ratios(runs: list[RunResult], left: str, right: str, attribute: str) -> list[float]:
    """Per repeat (runs alternate), left/right of one rate attribute, ascending."""
    pairs = zip(
        [r for r in runs if r.system == left],
        [r for r in runs if r.system == right],
        strict=False,
    )
    return sorted(getattr(a, attribute) / max(getattr(b, attribute), 1e-9) for a, b in pairs)


def ratio_line(runs: list[RunResult], left: str, right: str) -> str:
    """Per repeat (runs alternate), left/right of the rates; min/median/max over repeats."""
    parts = []
    for label, attribute in (("injection", "injection_rate"), ("end-to-end", "end_to_end_rate")):
        ratios = pair_ratios(runs, left, right, attribute)
        parts.append(f"{label} {min(ratios):.2f}/{statistics.median(ratios):.2f}/{max(ratios):.2f}")
    return f"  {left}/{right} ratio (min/median/max): " + ", ".join(parts)


def cpu_per_1000(run: RunResult) -> float:
    """CPU seconds per 1000 messages of the system under test: every process but the sink
    (relaystream: the four services and the broker; Postfix: all its daemons)."""
    used = sum(usage.cpu_seconds for usage in run.usage if usage.name != "sink")
    return 1000 * used / max(1, run.messages)


def summaries(
    report: BenchReport, options: BenchOptions, commit: str | None
) -> list[dict[str, object]]:
    """One summary per scenario, to compare a run with the last at a glance: the median
    end-to-end ratio of the first system to the second (None without a comparison), and per
    system the median end-to-end rate (recipients/s: messages/s in one-recipient scenarios)
    and CPU seconds per 1000 messages."""
    result: list[dict[str, object]] = []
    for scenario in dict.fromkeys(run.scenario for run in report.runs):
        runs = [run for run in report.runs if run.scenario == scenario]
        systems = list(dict.fromkeys(run.system for run in runs))
        ratio = None
        if len(systems) == 2:
            ratios = pair_ratios(runs, systems[0], systems[1], "end_to_end_rate")
            ratio = round(statistics.median(ratios), 3)
        mine = {system: [run for run in runs if run.system == system] for system in systems}
        result.append(
            {
                "scenario": scenario,
                "median_ratio": ratio,
                "median_msgs_per_s": {
                    system: round(statistics.median(r.end_to_end_rate for r in own), 1)
                    for system, own in mine.items()
                },
                "cpu_s_per_1000_msgs": {
                    system: round(statistics.median(cpu_per_1000(r) for r in own), 3)
                    for system, own in mine.items()
                },
                "repeats": len(runs) // len(systems),
                "messages": runs[0].messages,
                "concurrency": options.concurrency,
                "sink": options.sink,
                "complete": all(run.complete for run in runs),
                "commit": commit,
            }
        )
    return result


def source_commit() -> str | None:
    """The checkout's commit (`-dirty` when it has changes); None outside a git checkout."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if described.returncode != 0:
        return None
    return described.stdout.strip() or None


def exit_status(report: BenchReport, options: BenchOptions) -> int:
    """0 when every run delivered everything and the comparison asked for took place."""
    if not report.runs or not all(run.complete for run in report.runs):
        return 1
    if options.compare_postfix and not any(run.system == "postfix" for run in report.runs):
        return 1  # the note says why; a comparison asked for is not skipped silently
    return 0


def main(options: BenchOptions, report_path: Path | None = None, json_summary: bool = False) -> int:
    if options.bootstrap is not None and options.sink_port and port_in_use(options.sink_port):
        print(
            f"bench: port {options.sink_port} is taken (the deployment's own sink?): stop it, "
            "or route the deployment's policy to a free --sink-port",
            file=sys.stderr,
        )
        return 2
    report = run_bench(options)
    print(format_report(report), flush=True)
    if report_path is not None:
        report_path.write_text(report.to_json())
    if json_summary:
        commit = source_commit()
        for summary in summaries(report, options, commit):
            print(json.dumps(summary, separators=(",", ":")), flush=True)
    return exit_status(report, options)
