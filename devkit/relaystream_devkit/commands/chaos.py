"""`relaystream chaos`: kill -9 instances of every service under load; count what got lost."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..broker import BrokerError
from ..chaos import BROKER, ChaosPlan, default_kills, format_report, run_chaos
from ..cluster import LocalKafkaCluster, replication_for
from ..dev import SERVICE_NAMES
from ..scaling import format_scaling, run_scaling


def register(subparsers: Any) -> None:
    chaos = subparsers.add_parser(
        "chaos",
        help="fault run: several instances of each service, kill -9 under load, count losses",
        description=(
            "Starts a local cluster of BROKERS Kafka brokers (or uses --bootstrap), INSTANCES "
            "instances of every service and a sink, sends MESSAGES messages (each with an "
            "X-Chaos-Id header), SIGKILLs and restarts one instance at a time and, with 2 or "
            "more brokers, one broker, then counts at the sink. Exit 0 when nothing accepted "
            "was lost and duplicates stayed within what was in flight at the kills."
        ),
    )
    chaos.add_argument(
        "--brokers",
        type=int,
        default=3,
        help="Kafka brokers of the local cluster (default 3: replication 3, min.insync 2)",
    )
    chaos.add_argument("--instances", type=int, default=2, help="instances of each service")
    chaos.add_argument("--messages", type=int, default=20_000, help="messages to send")
    chaos.add_argument("--rate", type=float, default=200.0, help="messages offered per second")
    chaos.add_argument("--sessions", type=int, default=8, help="concurrent SMTP sessions")
    chaos.add_argument(
        "--kill",
        action="append",
        choices=(*SERVICE_NAMES, BROKER),
        help="a service to kill one instance of, or broker, in order; repeat it "
        "(default: each service once, and one broker with 2 or more brokers)",
    )
    chaos.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".relaystream/chaos"),
        help="accepted.txt, sink/, logs/ and the broker's data (default .relaystream/chaos)",
    )
    chaos.add_argument("--bootstrap", help="use this broker instead of starting one")
    chaos.add_argument("--json", type=Path, help="also write the report as JSON here")
    chaos.add_argument(
        "--compare-instances",
        action="store_true",
        help="first measure the end-to-end rate with 1 and 2 instances of each service and "
        "the delivery pause when an instance joins (no kills; under STATE_DIR/scaling)",
    )
    chaos.add_argument(
        "--burst",
        type=int,
        default=2000,
        help="messages per rate measurement of --compare-instances (default 2000)",
    )
    chaos.set_defaults(handler=chaos_command)


def chaos_command(args: argparse.Namespace) -> int:
    if min(args.brokers, args.instances, args.messages, args.sessions) < 1 or args.rate <= 0:
        print("relaystream chaos: --brokers, --instances, --messages, --sessions >= 1, --rate > 0")
        return 2
    brokers = 1 if args.bootstrap is not None else args.brokers
    kills = tuple(args.kill or default_kills(brokers))
    if BROKER in kills and (args.bootstrap is not None or brokers < 2):
        print("relaystream chaos: a broker kill needs a local cluster of 2 or more brokers")
        return 2
    plan = ChaosPlan(
        instances=args.instances,
        messages=args.messages,
        rate=args.rate,
        sessions=args.sessions,
        kills=kills,
    )
    state_dir: Path = args.state_dir
    shutil.rmtree(state_dir / "sink", ignore_errors=True)
    cluster = (
        None if args.bootstrap is not None else LocalKafkaCluster(state_dir / "kafka", brokers)
    )
    try:
        bootstrap = args.bootstrap
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(state_dir / "kafka", ignore_errors=True)
            replication = replication_for(brokers)
            print(
                f"chaos: starting {brokers} Kafka broker(s) in {state_dir / 'kafka'} (topics: "
                f"replication {replication.replicas}, min.insync.replicas "
                f"{replication.min_insync}) ...",
                flush=True,
            )
            bootstrap = cluster.start(timeout_s=240)
        scaling = None
        if args.compare_instances:
            shutil.rmtree(state_dir / "scaling", ignore_errors=True)
            scaling = asyncio.run(
                run_scaling(
                    bootstrap=bootstrap,
                    brokers=brokers,
                    state_dir=state_dir / "scaling",
                    prefix=f"scaling.{uuid.uuid4().hex[:8]}.",
                    burst=args.burst,
                    say=lambda text: print(text, flush=True),
                )
            )
        report = asyncio.run(
            run_chaos(
                plan,
                bootstrap=bootstrap,
                state_dir=state_dir,
                prefix=f"chaos.{uuid.uuid4().hex[:8]}.",
                cluster=cluster,
                say=lambda text: print(text, flush=True),
            )
        )
    except (BrokerError, RuntimeError) as error:
        print(f"relaystream chaos: {error}")
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
    print(format_report(report))
    document = json.loads(report.to_json())
    if scaling is not None:
        print(format_scaling(scaling))
        document["scaling"] = dataclasses.asdict(scaling)
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if report.ok else 1
