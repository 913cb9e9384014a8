"""The README's first command, `relaystream dev`, run as a newcomer runs it.

It starts its own broker and the four services on the fixed local ports, says it is running,
relays a message to its sample sink, shows it in `relaystream logs`, and a Ctrl-C (SIGINT to
the whole foreground process group, as a terminal sends it) stops everything it started. So
does a SIGTERM while it is still starting. A service killed with SIGKILL is restarted, says so,
and the mail accepted meanwhile reaches the sink.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_processes import ends_with_test_run

from relaystream_devkit.broker import port_in_use
from relaystream_devkit.dev import DevPorts

PORTS = DevPorts()
LISTENING = {
    "SMTP": PORTS.smtp,
    "HTTP injection": PORTS.http,
    "Kafka": PORTS.kafka,
    "Kafka controller": PORTS.kafka_controller,
    "sink": PORTS.sink,
    **{f"health {i}": PORTS.first_health + i for i in range(4)},
}
# The first run on a machine may fetch the broker's jars; the broker then needs its JVM.
RUNNING_WITHIN_S = 300.0
STOPPED_WITHIN_S = 120.0
BODY = "Subject: dev check\r\n\r\n.a line that starts with a dot\r\nthe end\r\n"


def newcomer_environment() -> dict[str, str]:
    """This environment without RELAYSTREAM_* settings: a newcomer's shell has none."""
    return {key: value for key, value in os.environ.items() if not key.startswith("RELAYSTREAM_")}


class Output:
    """The command's stdout, read on a thread so that the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, Path]]:
    busy = [f"{name} {port}" for name, port in LISTENING.items() if port_in_use(port)]
    assert not busy, f"stop whatever listens on the local ports first: {', '.join(busy)}"
    state_dir = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "relaystream", "dev", "--state-dir", str(state_dir)],
        cwd=tmp_path,
        env=newcomer_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=ends_with_test_run,  # stops what it started if the run is killed
    )
    output = Output(process)
    try:
        yield process, output, state_dir
    finally:
        if process.poll() is None:  # the test failed before its Ctrl-C: clean up
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(STOPPED_WITHIN_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def service_pid(dev_pid: int, service: str) -> int:
    """The pid of dev's child process `relaystream run SERVICE`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if ppid == dev_pid and command[-3:-1] == [b"run", service.encode()]:
                return int(entry.name)
    raise AssertionError(f"no {service} process under dev ({dev_pid})")


def assert_nothing_listens(output: Output) -> None:
    still = [f"{name} {port}" for name, port in LISTENING.items() if port_in_use(port)]
    assert not still, f"still listening: {', '.join(still)}\n{output.text}"


def arrived(sink: Path, text: bytes) -> bool:
    return any(text in path.read_bytes() for path in sink.glob("*.eml"))


def test_dev_relays_a_message_to_its_sink_and_ctrl_c_stops_everything(
    dev: tuple[subprocess.Popen[str], Output, Path],
) -> None:
    process, output, state_dir = dev
    assert output.wait_for("relaystream is running", RUNNING_WITHIN_S), output.text

    with smtplib.SMTP("127.0.0.1", PORTS.smtp, timeout=30) as client:
        refused = client.sendmail("me@example.org", ["you@example.com"], BODY)
    assert refused == {}

    sink = state_dir / "sink"
    deadline = time.monotonic() + 60
    while not arrived(sink, b"the end") and time.monotonic() < deadline:
        time.sleep(0.2)
    delivered = [path.read_bytes() for path in sink.glob("*.eml")]
    assert len(delivered) == 1, output.text
    # Dot-stuffed on both hops and unstuffed again: the line arrives as it was written.
    assert b"\r\n\r\n.a line that starts with a dot\r\nthe end\r\n" in delivered[0]

    # Delivery logs its record after the sink's 250: it may land a moment after the mail.
    deadline = time.monotonic() + 30
    while True:
        logs = subprocess.run(
            [sys.executable, "-m", "relaystream", "logs"],
            cwd=state_dir.parent,
            env=newcomer_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert logs.returncode == 0, logs.stderr
        kinds = [line.split()[1] for line in logs.stdout.splitlines() if line.strip()]
        if kinds == ["Reception", "Delivery"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert kinds == ["Reception", "Delivery"], logs.stdout

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(STOPPED_WITHIN_S) == 0, output.text
    assert output.wait_for("dev: stopped", 5), output.text
    assert_nothing_listens(output)


def test_a_sigterm_while_dev_is_starting_stops_what_it_started(
    dev: tuple[subprocess.Popen[str], Output, Path],
) -> None:
    process, output, _ = dev
    deadline = time.monotonic() + RUNNING_WITHIN_S
    while not port_in_use(PORTS.kafka) and time.monotonic() < deadline:
        assert process.poll() is None, output.text
        time.sleep(0.1)
    assert not output.wait_for("relaystream is running", 0), "too late: it is running already"

    process.terminate()  # SIGTERM to dev alone, as `kill` or an orchestrator sends it

    assert process.wait(STOPPED_WITHIN_S) == 130, output.text
    assert output.wait_for("dev: stopped", 5), output.text
    assert_nothing_listens(output)


def test_dev_restarts_a_killed_service_and_the_mail_still_arrives(
    dev: tuple[subprocess.Popen[str], Output, Path],
) -> None:
    process, output, state_dir = dev
    assert output.wait_for("relaystream is running", RUNNING_WITHIN_S), output.text
    routing = service_pid(process.pid, "routing")

    os.kill(routing, signal.SIGKILL)
    # Accepted while routing is down: it waits on `accepted` for the restarted routing.
    with smtplib.SMTP("127.0.0.1", PORTS.smtp, timeout=30) as client:
        refused = client.sendmail("me@example.org", ["you@example.com"], BODY)
    assert refused == {}

    assert output.wait_for("dev: routing was killed by SIGKILL; restarting it in 1s", 30), (
        output.text
    )
    assert output.wait_for("dev: routing restarted", 30), output.text
    assert service_pid(process.pid, "routing") != routing
    assert output.wait_for("dev: routing is ready again", 60), output.text
    sink = state_dir / "sink"
    deadline = time.monotonic() + 60
    while not arrived(sink, b"the end") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert arrived(sink, b"the end"), output.text

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(STOPPED_WITHIN_S) == 0, output.text
    assert output.wait_for("dev: stopped", 5), output.text
    assert_nothing_listens(output)
