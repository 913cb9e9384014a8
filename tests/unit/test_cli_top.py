"""`relaystream top`'s frame from two scrapes of Prometheus text (no service needed)."""

from __future__ import annotations

from relaystream.cli.top import Scrape, parse_samples, render

BEFORE = """
# TYPE scheduled_count gauge
scheduled_count{queue="a.example"} 10
scheduled_count{queue="b.example"} 4
# TYPE scheduled_count_total gauge
scheduled_count_total 14
# TYPE total_messages_delivered untyped
total_messages_delivered{service="smtp_client"} 100
total_messages_delivered{service="smtp_client:unspecified->mx.a@smtp_client"} 100
# TYPE total_messages_fail untyped
total_messages_fail{service="smtp_client"} 7
"""
AFTER_SCHEDULING = """
# TYPE scheduled_count gauge
scheduled_count{queue="a.example"} 30
scheduled_count{queue="b.example"} 2
# TYPE scheduled_count_total gauge
scheduled_count_total 32
# TYPE ready_count gauge
ready_count{service="smtp_client"} 5
# TYPE relaystream_kafka_consumer_lag_records gauge
relaystream_kafka_consumer_lag_records{group="delivery",topic="attempts",partition="0"} 7
relaystream_kafka_consumer_lag_records{group="delivery",topic="attempts",partition="1"} 5
"""
AFTER_DELIVERY = """
# TYPE total_messages_delivered untyped
total_messages_delivered{service="smtp_client"} 120
total_messages_delivered{service="smtp_client:unspecified->mx.a@smtp_client"} 120
# TYPE total_messages_fail untyped
total_messages_fail{service="smtp_client"} 3
# TYPE connection_count gauge
connection_count{service="smtp_client"} 4
"""


def test_a_frame_shows_rates_queues_and_lag_summed_over_endpoints() -> None:
    before = Scrape(0.0, parse_samples([BEFORE]), 1, 2)
    after = Scrape(10.0, parse_samples([AFTER_SCHEDULING, AFTER_DELIVERY]), 2, 2)
    frame = render(before, after, rows=1)
    assert "endpoints up 2/2" in frame[0]
    # Only the all-queues series counts: 20 more in 10 s. A counter that went down restarted.
    assert frame[1] == "received 0.0/s  delivered 2.0/s  deferred 0.0/s  failed 0.3/s"
    assert frame[2].startswith("scheduled 32 waiting in 2 queues, 5 released to delivery")
    assert frame[3] == "connections: smtp_client 4"
    assert frame[5].split() == ["QUEUE", "WAITING", "CHANGE/S"]
    assert frame[6].split() == ["a.example", "30", "+2.0"]  # rows=1: the largest only
    assert frame[8].split() == ["GROUP", "TOPIC", "LAG"]
    assert frame[9].split() == ["delivery", "attempts", "12"]
