"""After a kill -9 and a restart, each service says it is ready as soon as it can work again.

`relaystream run NAME` processes on a real broker. A killed member leaves no LeaveGroup: under
dynamic membership its partitions wait for its session to expire (30 s) before the group can
rebalance, and a restarted consumer waits with them. So:

- ingest is ready once SMTP and HTTP accept mail with the producer connected, whatever its
  `submit` consumer is doing (the consumer is listed as "waiting" by /readyz meanwhile);
- routing, scheduling and delivery need their partitions to work, and under the static
  membership the manifests give them (a stable group instance id) they get them back at once.

The bound is generous for a restart (about a second on a quiet machine) and well below the
30 s session timeout that a restart waited for before.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from routing_support import create_topics
from service_process import ServiceProcess

from relaystream_devkit.broker import free_loopback_ports

READY_AGAIN_WITHIN_S = 15.0


def readiness(service: ServiceProcess) -> tuple[int, dict[str, object]] | None:
    """The /readyz status and body, None while nothing answers."""
    try:
        url = f"http://127.0.0.1:{service.port}/readyz"
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None


async def seconds_until_ready(
    service: ServiceProcess, within: float
) -> tuple[float, dict[str, object]]:
    """Seconds from now until /readyz answers 200, and that answer's body."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        assert service.process is not None and service.process.poll() is None, "service exited"
        answer = await asyncio.to_thread(readiness, service)
        if answer is not None and answer[0] == 200:
            return time.monotonic() - start, answer[1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{service.service} not ready within {within:.0f}s: {answer}")


async def until_joined(ingest: ServiceProcess) -> None:
    """Until ingest is ready and its submit consumer a member of its group."""
    for _ in range(300):
        if await asyncio.to_thread(readiness, ingest) == (200, {"ready": True}):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"ingest's submit consumer did not join: {readiness(ingest)}")


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "service.log"
    yield path
    if path.exists():
        # Shown by pytest when the test failed: what the service said.
        sys.stdout.write(path.read_text(errors="replace")[-20_000:])


async def test_ingest_is_ready_as_soon_as_it_accepts_mail_after_a_kill(
    kafka_bootstrap: str, topic_prefix: str, log_path: Path
) -> None:
    await create_topics(kafka_bootstrap, topic_prefix)
    smtp_port, http_port = free_loopback_ports(2)
    # No group instance id: the killed member's `submit` partitions stay with it for its session.
    ingest = ServiceProcess(
        "ingest",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={
            "RELAYSTREAM_INGEST_SMTP_PORT": str(smtp_port),
            "RELAYSTREAM_INGEST_HTTP_PORT": str(http_port),
        },
    )
    try:
        ingest.start()
        await until_joined(ingest)
        ingest.kill()
        ingest.start()
        _, body = await seconds_until_ready(ingest, READY_AGAIN_WITHIN_S)
        # Still in the old member's session: the submit consumer is shown, not hidden.
        assert body == {"ready": True, "waiting": ["submit-consumer"]}
        # Ready means serving: the 250 comes after Kafka acknowledged the message.
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            refused = client.sendmail(
                "me@example.org", ["you@example.com"], "Subject: x\r\n\r\nx\r\n"
            )
        assert refused == {}
    finally:
        ingest.close()


@pytest.mark.parametrize("service", ["routing", "scheduling", "delivery"])
async def test_a_static_member_is_ready_again_at_once_after_a_kill(
    kafka_bootstrap: str, topic_prefix: str, log_path: Path, service: str
) -> None:
    await create_topics(kafka_bootstrap, topic_prefix)
    process = ServiceProcess(
        service,
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={
            # What the manifests set from the pod name.
            "RELAYSTREAM_KAFKA_GROUP_INSTANCE_ID": f"{service}-0",
            "RELAYSTREAM_SCHEDULING_ADMIN_API_ENABLED": "false",
        },
    )
    try:
        process.start()
        await process.wait_ready()
        process.kill()
        process.start()
        await seconds_until_ready(process, READY_AGAIN_WITHIN_S)
    finally:
        process.close()
