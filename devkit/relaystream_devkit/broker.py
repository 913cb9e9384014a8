"""A local single-node Apache Kafka broker (KRaft) for development and tests.

The jars come from Maven Central through `kafka-pom.xml` into a cache directory outside the
repository (or from an existing install named by KAFKA_HOME). The broker runs detached as one
combined broker+controller on loopback; its pid, rendered `server.properties`, JVM output and
log4j2 log live in a state directory, so `relaystream kafka status|stop` in another process
finds it again.

Layout of the state directory (default `./.relaystream`, env RELAYSTREAM_STATE_DIR):

    kafka/kafka.pid          pid of the running JVM
    kafka/broker.json        bootstrap address, ports and data dir of that JVM
    kafka/server.properties  the configuration it was started with
    kafka/logs/server.log    the broker's own log (log4j2)
    kafka/logs/kafka.out     JVM stdout/stderr (crashes before logging starts)
    kafka-data/              default data dir (the KRaft metadata log and topic partitions)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from relaystream.core.kafka.fencing import BROKER_ABORT_CHECK_INTERVAL_MS

KAFKA_VERSION = "4.1.1"
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
# Sized for a 2-core, 24 GiB development machine that also runs the four services.
DEFAULT_JVM_HEAP = ("-Xms512m", "-Xmx1g")
# Each node of a local cluster (cluster.py): three of them share that machine.
CLUSTER_NODE_JVM_HEAP = ("-Xms256m", "-Xmx512m")
MINIMUM_JAVA_MAJOR = 17

_INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"
_INSTALL_MAVEN = "apt-get install maven"
_MAVEN_OUTPUT_TAIL_LINES = 30

_T = TypeVar("_T")


class BrokerError(Exception):
    """The local broker cannot be set up, started or stopped; the message says how to fix it."""


class BrokerAlreadyRunning(BrokerError):
    """`start` was called while a broker started from the same state directory still runs."""

    def __init__(self, status: BrokerStatus) -> None:
        super().__init__(
            f"Kafka is already running (pid {status.pid}) at {status.bootstrap}; "
            f"log: {status.log_path}"
        )
        self.status = status


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str | None
    log_path: Path
    data_dir: Path | None


def default_cache_dir() -> Path:
    override = os.environ.get("RELAYSTREAM_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "relaystream"


def default_state_dir() -> Path:
    override = os.environ.get("RELAYSTREAM_STATE_DIR")
    return Path(override) if override else Path.cwd() / ".relaystream"


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's `Uuid.randomUuid()` makes it: base64url of 16 bytes."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Kafka rejects ids starting with '-' (they read as command-line flags).
        if not encoded.startswith("-"):
            return encoded


@dataclass(frozen=True)
class Quorum:
    """What every node of one KRaft cluster shares: its id, its controller voters and how
    many replicas the internal topics (offsets, transaction state) get.

    `voters` maps node id to controller port; a node that is a voter runs broker+controller
    in one JVM, any other node is a broker only. `Quorum.single(...)` is the one-node cluster
    `LocalKafka` runs by default.
    """

    voters: Mapping[int, int]
    cluster_id: str = field(default_factory=lambda: new_cluster_id())
    replicas: int = 1
    min_insync: int = 1

    @classmethod
    def single(cls, node_id: int, controller_port: int) -> Quorum:
        return cls(voters={node_id: controller_port})


def render_server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    node_id: int = 1,
    quorum: Quorum | None = None,
) -> str:
    """The configuration of one node on loopback; by default a single combined node."""
    quorum = quorum or Quorum.single(node_id, controller_port)
    voter = node_id in quorum.voters
    listeners = f"PLAINTEXT://{LOOPBACK}:{port}"
    if voter:
        listeners += f",CONTROLLER://{LOOPBACK}:{quorum.voters[node_id]}"
    voters = ",".join(f"{node}@{LOOPBACK}:{cport}" for node, cport in sorted(quorum.voters.items()))
    settings = {
        "process.roles": "broker,controller" if voter else "broker",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": listeners,
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        # Internal topics get as many replicas as the cluster has to give (one on one node).
        "offsets.topic.replication.factor": str(quorum.replicas),
        "transaction.state.log.replication.factor": str(quorum.replicas),
        "transaction.state.log.min.isr": str(quorum.min_insync),
        "share.coordinator.state.topic.replication.factor": str(quorum.replicas),
        "share.coordinator.state.topic.min.isr": str(quorum.min_insync),
        "default.replication.factor": str(quorum.replicas),
        "min.insync.replicas": str(quorum.min_insync),
        # Consumers in tests join one at a time; do not wait 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
        # Routing's fencing rests on how often the broker aborts timed-out transactions.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": str(
            BROKER_ABORT_CHECK_INTERVAL_MS
        ),
        # Topics are declared in core/kafka/topics.py and created by `relaystream topics ensure`;
        # a typo in a topic name must fail instead of creating a stray topic.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # The cleaner wakes up often so compaction is observable within seconds. How eagerly a
        # topic compacts (segment.ms, min.cleanable.dirty.ratio, delete.retention.ms) is set per
        # topic, not here.
        "log.cleaner.backoff.ms": "500",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _devkit_file(name: str) -> Path:
    return Path(str(resources.files(__package__ or "relaystream_devkit").joinpath(name)))


def _run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion even when the caller is already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    results: list[_T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(coroutine))
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    worker = threading.Thread(target=run, name="relaystream-kafka-probe")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return results[0]


async def broker_answers_metadata(
    bootstrap: str, timeout_s: float = 2.0, node_id: int | None = None
) -> bool:
    """Whether a broker at `bootstrap` answers a metadata request and lists itself (by
    `node_id` when given: in a cluster the others may answer for a node not registered yet)."""
    host, _, port = bootstrap.rpartition(":")
    # A plain connect first: aiokafka logs every refused connection as an error.
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(1, int(timeout_s * 1000))
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster = await admin.describe_cluster()
        brokers = cluster.get("brokers") or []
        if node_id is None:
            return bool(brokers)
        return any(broker.get("node_id") == node_id for broker in brokers)
    except Exception:  # any failure means "not ready yet"; the caller retries until a deadline
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def free_loopback_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1, all held open together so they differ."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((LOOPBACK, port)) == 0


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _pid_is_kafka(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) JVM running kafka.Kafka; guards against pid reuse."""
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state != "Z" and b"kafka.Kafka" in cmdline


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalKafka:
    """One local broker per state directory: fetch its jars, start, stop and inspect it.

    By default a single combined broker+controller; with `node_id` and a shared `Quorum` it is
    one node of a cluster (`LocalKafkaCluster` runs several).
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        cache_dir: Path | None = None,
        kafka_home: Path | None = None,
        maven_args: Sequence[str] | None = None,
        *,
        node_id: int = 1,
        jvm_heap: Sequence[str] = DEFAULT_JVM_HEAP,
    ) -> None:
        self.node_id = node_id
        self.jvm_heap = tuple(jvm_heap)
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.cache_dir = (cache_dir or default_cache_dir()).resolve()
        home = kafka_home or (
            Path(os.environ["KAFKA_HOME"]) if "KAFKA_HOME" in os.environ else None
        )
        self.kafka_home = home
        # Extra Maven arguments, e.g. "-s mirror-settings.xml" where Maven Central is mirrored.
        self.maven_args = tuple(
            maven_args
            if maven_args is not None
            else shlex.split(os.environ.get("RELAYSTREAM_MAVEN_ARGS", ""))
        )
        self._process: subprocess.Popen[bytes] | None = None

    # -- paths -----------------------------------------------------------------------------

    @property
    def _kafka_state(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def pid_file(self) -> Path:
        return self._kafka_state / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self._kafka_state / "logs"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def _out_path(self) -> Path:
        return self.log_dir / "kafka.out"

    @property
    def default_data_dir(self) -> Path:
        return self.state_dir / "kafka-data"

    @property
    def libs_dir(self) -> Path:
        if self.kafka_home is not None:
            return self.kafka_home / "libs"
        return self.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    # -- jars ------------------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """The directory of the broker's jars, downloading them with Maven when missing."""
        if self.kafka_home is not None:
            if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
                raise BrokerError(
                    f"KAFKA_HOME={self.kafka_home} has no libs/kafka_2.13-*.jar: point KAFKA_HOME "
                    "at an unpacked Apache Kafka distribution, or unset it to fetch the jars "
                    "with Maven"
                )
            return self.libs_dir
        pom = _devkit_file("kafka-pom.xml")
        marker = self.libs_dir.parent / "complete"
        pom_digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        if self.libs_dir.is_dir() and marker.is_file() and marker.read_text() == pom_digest:
            return self.libs_dir
        self._fetch_jars(pom, pom_digest, marker)
        return self.libs_dir

    def _fetch_jars(self, pom: Path, pom_digest: str, marker: Path) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(f"mvn not found: {_INSTALL_MAVEN} (or set KAFKA_HOME)")
        self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
        # Download next to the final place and rename, so an interrupted fetch never looks done.
        staging = self.libs_dir.parent / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            *self.maven_args,
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        completed = subprocess.run(
            command, cwd=self.libs_dir.parent, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = (completed.stdout + completed.stderr).splitlines()
            tail = "\n".join(output[-_MAVEN_OUTPUT_TAIL_LINES:])
            raise BrokerError(
                f"Maven could not fetch the Kafka {KAFKA_VERSION} jars (exit "
                f"{completed.returncode}); Maven Central must be reachable (or set KAFKA_HOME "
                f"to an unpacked Kafka). Command: {' '.join(command)}\n{tail}"
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        marker.write_text(pom_digest)

    # -- lifecycle -------------------------------------------------------------------------

    def status(self) -> BrokerStatus:
        pid = self._read_pid()
        running = pid is not None and _pid_is_kafka(pid)
        recorded = self._read_recorded()
        data_dir = recorded.get("data_dir")
        return BrokerStatus(
            running=running,
            pid=pid if running else None,
            bootstrap=recorded.get("bootstrap") if running else None,
            log_path=self.log_path,
            data_dir=Path(data_dir) if data_dir else None,
        )

    def is_running(self) -> bool:
        return self.status().running

    def start(
        self,
        port: int = DEFAULT_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        data_dir: Path | None = None,
        timeout_s: float = 90.0,
        quorum: Quorum | None = None,
    ) -> str:
        """Start the broker detached and wait until it answers; returns "127.0.0.1:PORT".

        Raises BrokerAlreadyRunning when this state directory's broker still runs, and
        BrokerError when java, the jars or a port is missing or the broker does not come up.
        """
        bootstrap = self.launch(port, controller_port, data_dir, quorum)
        self.wait_until_ready(timeout_s)
        return bootstrap

    def launch(
        self,
        port: int = DEFAULT_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        data_dir: Path | None = None,
        quorum: Quorum | None = None,
    ) -> str:
        """Start the JVM detached without waiting for it to answer; returns its bootstrap.

        The nodes of a cluster are launched first and waited for afterwards: a node only
        answers once a majority of the controller voters runs.
        """
        current = self.status()
        if current.running:
            raise BrokerAlreadyRunning(current)
        quorum = quorum or Quorum.single(self.node_id, controller_port)
        java = self._java()
        libs = self.ensure_jars()
        ports = [("--port", port)]
        if self.node_id in quorum.voters:
            ports.append(("--controller-port", quorum.voters[self.node_id]))
        for name, value in ports:
            if not _port_is_free(value):
                raise BrokerError(
                    f"port {value} on {LOOPBACK} is in use: choose another with {name}"
                )
        data_dir = (data_dir or self.default_data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        properties = self._kafka_state / "server.properties"
        properties.write_text(
            render_server_properties(
                port=port,
                controller_port=controller_port,
                data_dir=data_dir,
                node_id=self.node_id,
                quorum=quorum,
            )
        )
        classpath = f"{libs}/*"
        if not (data_dir / "meta.properties").exists():
            self._format_storage(java, classpath, properties, quorum.cluster_id)
        bootstrap = f"{LOOPBACK}:{port}"
        command = [
            java,
            *self.jvm_heap,
            "-XX:+UseG1GC",
            # C1 only: this broker lives for a dev session, a test run or a benchmark on a
            # small machine, where C2 compilation cost more CPU (35 s in its first two
            # minutes on 2 cores) than serving the pipeline. A long-lived production broker
            # keeps the JVM's default tiered compilation.
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={_devkit_file('log4j2.xml')}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]
        with self._out_path.open("wb") as out:
            # A new session: Ctrl-C in the starting terminal must not kill the detached broker.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        self._write_recorded(
            {
                "bootstrap": bootstrap,
                "node_id": self.node_id,
                "port": port,
                "controller_port": controller_port,
                "data_dir": str(data_dir),
            }
        )
        return bootstrap

    def kill(self) -> None:
        """SIGKILL, as when a machine dies: no controlled shutdown, no leadership handover."""
        pid = self._read_pid()
        if pid is None or not _pid_is_kafka(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_for_exit(pid, 30.0)
        self.pid_file.unlink(missing_ok=True)
        self._process = None

    def stop(self, timeout_s: float = 30.0) -> str:
        """Stop the broker with SIGTERM (SIGKILL after `timeout_s`); returns what happened."""
        pid = self._read_pid()
        if pid is None or not _pid_is_kafka(pid):
            self.pid_file.unlink(missing_ok=True)
            self._process = None
            return "Kafka is not running"
        os.kill(pid, signal.SIGTERM)
        stopped = self._wait_for_exit(pid, timeout_s)
        how = "stopped cleanly"
        if not stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_for_exit(pid, 10.0)
            how = f"did not stop within {timeout_s:.0f} s after SIGTERM and was killed"
        self.pid_file.unlink(missing_ok=True)
        self._process = None
        return f"Kafka (pid {pid}) {how}; log: {self.log_path}"

    # -- helpers ---------------------------------------------------------------------------

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if java is None or not Path(java).exists():
            raise BrokerError(f"java not found: {_INSTALL_JAVA} (or set JAVA_HOME)")
        version = subprocess.run(
            [java, "-version"], capture_output=True, text=True, check=False
        ).stderr
        match = re.search(r'version "(\d+)(?:\.(\d+))?', version)
        if match is not None:
            major = int(match.group(1))
            if major == 1 and match.group(2):  # "1.8" is Java 8
                major = int(match.group(2))
            if major < MINIMUM_JAVA_MAJOR:
                raise BrokerError(
                    f"Kafka {KAFKA_VERSION} needs Java {MINIMUM_JAVA_MAJOR}+, {java} is Java "
                    f"{major}: {_INSTALL_JAVA}"
                )
        return java

    def _format_storage(self, java: str, classpath: str, properties: Path, cluster_id: str) -> None:
        # controller.quorum.voters is set, so the node is formatted as a static voter
        # (no --standalone).
        command = [
            java,
            "-cp",
            classpath,
            f"-Dlog4j2.configurationFile={_devkit_file('log4j2.xml')}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(properties),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage failed (exit {completed.returncode}):\n"
                f"{completed.stdout}{completed.stderr}"
            )

    def wait_until_ready(self, timeout_s: float = 90.0) -> None:
        """Wait until the launched node answers metadata and lists itself; BrokerError (and
        stopped) when it exits or does not answer in time."""
        bootstrap = str(self._read_recorded()["bootstrap"])
        out_path = self._out_path
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"Kafka exited with code {self._process.returncode} while starting; "
                    f"log: {self.log_path}\n{_tail(out_path, 20)}\n{_tail(self.log_path, 20)}"
                )
            if _run_blocking(broker_answers_metadata(bootstrap, node_id=self.node_id)):
                return
            time.sleep(0.3)
        self.stop()
        raise BrokerError(
            f"Kafka did not answer at {bootstrap} within {timeout_s:.0f} s and was stopped; "
            f"log: {self.log_path}\n{_tail(self.log_path, 20)}"
        )

    def _wait_for_exit(self, pid: int, timeout_s: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            # Our own child: wait() also reaps it, so no zombie stays behind.
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_is_kafka(pid):
                return True
            time.sleep(0.1)
        return False

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _read_recorded(self) -> dict[str, Any]:
        try:
            recorded: dict[str, Any] = json.loads((self._kafka_state / "broker.json").read_text())
        except (OSError, ValueError):
            return {}
        return recorded

    def _write_recorded(self, recorded: dict[str, Any]) -> None:
        (self._kafka_state / "broker.json").write_text(json.dumps(recorded, indent=2) + "\n")


@contextlib.contextmanager
def temporary_broker(prefix: str = "bench-broker-") -> Iterator[str]:
    """A throwaway single broker on free loopback ports, for the stage benchmarks; yields its
    bootstrap address, and stops it and deletes its data on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as state:
        broker = LocalKafka(state_dir=Path(state))
        port, controller_port = free_loopback_ports(2)
        bootstrap = broker.start(
            port=port, controller_port=controller_port, data_dir=Path(state) / "data"
        )
        try:
            yield bootstrap
        finally:
            broker.stop()
