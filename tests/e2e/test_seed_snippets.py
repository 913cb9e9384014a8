"""The founding document's techniques, each with its own Lua snippet unchanged, end to end.

The snippets are copied verbatim from ../shared/spec/SEED-routing.txt. The get_queue_config
snippet (mx_list with 10.0.0.1) and the `[20.83.209.56]` rewrite target addresses outside this
machine, which tests may never contact: their loopback equivalents run in test_pipeline.py.
"""

from __future__ import annotations

import smtplib

import pytest
from dnsmasq import DnsServer
from harness import MAIN_SINK, LogWatcher, Pipeline, Sinks, start_pipeline, types_of

ROUTING_DOMAIN_SNIPPET = """\
kumo.on('smtp_server_message_received', function(msg)
    msg:set_meta('routing_domain', 'my.smarthost.com')
end)
"""

QUEUE_REWRITE_SNIPPET = """\
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'my.smarthost.com')
end)
"""


def send(pipeline: Pipeline, sender: str, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", pipeline.smtp_port, timeout=30) as client:
        client.sendmail(sender, [recipient], f"Subject: seed\r\nTo: {recipient}\r\n\r\nhello\r\n")


@pytest.mark.parametrize(
    ("snippet", "expected_queue"),
    [
        (ROUTING_DOMAIN_SNIPPET, "example.com!my.smarthost.com"),
        (QUEUE_REWRITE_SNIPPET, "my.smarthost.com"),
    ],
    ids=["routing_domain", "queue_rewrite"],
)
async def test_a_seed_snippet_routes_through_the_smarthosts_mx(
    snippet: str,
    expected_queue: str,
    kafka_bootstrap: str,
    dns_server: DnsServer,
    sinks: Sinks,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pipeline = await start_pipeline(
        kafka_bootstrap, dns_server, sinks, tmp_path_factory.mktemp("seed"), snippet
    )
    watcher = LogWatcher(pipeline.bootstrap, pipeline.topics.log.name)
    watcher.start()
    try:
        recipient = f"user-{expected_queue.replace('!', '-')}@example.com"
        send(pipeline, "sender@example.org", recipient)
        records = await watcher.wait_for(
            lambda rs: "Delivery" in types_of(rs), recipient, within=120
        )
    finally:
        await watcher.stop()
        pipeline.stop()
    assert types_of(records) == ["Reception", "Delivery"]
    assert {r["queue"] for r in records} == {expected_queue}
    delivery = records[-1]
    # The smarthost's MX (mx.plain.test) was used, not example.com's (which has none).
    assert delivery["peer_address"] == {"name": "mx.plain.test", "addr": MAIN_SINK}
    assert sinks.received_by(recipient) == [MAIN_SINK]
