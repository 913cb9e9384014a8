"""`relaystream bench` on a small real run: 20 messages through the four real services.

Proves the harness works end to end (load generator, services, sink, log-topic latencies,
/proc accounting) and prints the report. Timings are printed, never asserted.
"""

from __future__ import annotations

from pathlib import Path

from relaystream_devkit.bench import BenchOptions, format_report, run_bench
from relaystream_devkit.bench_measure import STAGES

SERVICES = {"ingest", "routing", "scheduling", "delivery"}
RATE = 100.0  # messages per second; the 20th message leaves 19/RATE s after the first


def test_twenty_messages_arrive_and_the_report_has_its_fields(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    options = BenchOptions(
        state_dir=tmp_path,
        messages=20,
        concurrency=4,
        scenarios=("1rcpt-1k", "10rcpt-10dom-1k"),
        warmup_messages=0,
        kafka=kafka_bootstrap,
        rate=RATE,
    )

    report = run_bench(options)
    print(format_report(report))

    assert [run.scenario for run in report.runs] == ["1rcpt-1k", "10rcpt-10dom-1k"]
    for run in report.runs:
        assert run.system == "relaystream"
        assert run.refused == 0, run.first_error
        assert (
            run.recipients_delivered
            == run.recipients_expected
            == 20 * (10 if run.scenario == "10rcpt-10dom-1k" else 1)
        )
        assert run.injection_rate > 0 and run.end_to_end_rate > 0
        # Paced: never faster than the rate asked for (a bound no slow machine can break).
        messages_sent = 20
        assert run.injection_rate <= RATE * messages_sent / (messages_sent - 1)
        assert set(run.latency_ms) == {"p50", "p95", "p99"}
        # Every delivered recipient has its Reception and Delivery log records paired.
        assert run.latency_samples == run.recipients_expected
        # Split at the routing decision and the release: hops in order, none negative.
        assert list(run.stage_ms) == list(STAGES)
        assert all(milliseconds >= 0 for milliseconds in run.stage_ms.values())
        usage = {u.name: u for u in run.usage}
        assert SERVICES | {"sink"} <= set(usage)
        assert all(usage[name].peak_rss_kib > 0 for name in SERVICES)
