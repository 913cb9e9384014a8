"""`relaystream chaos`: kill -9 instances of every service under load; count what got lost."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..devkit.broker import BrokerError, LocalKafka, free_loopback_ports
from ..devkit.chaos import ChaosPlan, format_report, run_chaos
from ..devkit.fleet import SERVICE_NAMES


def register(subparsers: Any) -> None:
    chaos = subparsers.add_parser(
        "chaos",
        help="fault run: several instances of each service, kill -9 under load, count losses",
        description=(
            "Starts a local broker (or uses --bootstrap), INSTANCES instances of every service "
            "and a sink, sends MESSAGES messages (each with an X-Chaos-Id header), SIGKILLs and "
            "restarts one instance at a time, then counts at the sink. Exit 0 when nothing "
            "accepted was lost and duplicates stayed within what was in flight at the kills."
        ),
    )
    chaos.add_argument("--instances", type=int, default=2, help="instances of each service")
    chaos.add_argument("--messages", type=int, default=20_000, help="messages to send")
    chaos.add_argument("--rate", type=float, default=200.0, help="messages offered per second")
    chaos.add_argument("--sessions", type=int, default=8, help="concurrent SMTP sessions")
    chaos.add_argument(
        "--kill",
        action="append",
        choices=SERVICE_NAMES,
        help="a service to kill one instance of, in order; repeat it (default: each once)",
    )
    chaos.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".relaystream/chaos"),
        help="accepted.txt, sink/, logs/ and the broker's data (default .relaystream/chaos)",
    )
    chaos.add_argument("--bootstrap", help="use this broker instead of starting one")
    chaos.add_argument("--json", type=Path, help="also write the report as JSON here")
    chaos.set_defaults(handler=chaos_command)


def chaos_command(args: argparse.Namespace) -> int:
    if args.instances < 1 or args.messages < 1 or args.rate <= 0 or args.sessions < 1:
        print("relaystream chaos: --instances, --messages, --sessions >= 1 and --rate > 0")
        return 2
    plan = ChaosPlan(
        instances=args.instances,
        messages=args.messages,
        rate=args.rate,
        sessions=args.sessions,
        kills=tuple(args.kill or SERVICE_NAMES),
    )
    state_dir: Path = args.state_dir
    shutil.rmtree(state_dir / "sink", ignore_errors=True)
    broker = LocalKafka(state_dir=state_dir / "kafka")
    bootstrap = args.bootstrap
    try:
        if bootstrap is None:
            if broker.is_running():
                broker.stop()
            shutil.rmtree(broker.default_data_dir, ignore_errors=True)
            port, controller = free_loopback_ports(2)
            print(f"chaos: starting Kafka in {state_dir / 'kafka'} ...", flush=True)
            bootstrap = broker.start(port=port, controller_port=controller, timeout_s=180)
        report = asyncio.run(
            run_chaos(
                plan,
                bootstrap=bootstrap,
                state_dir=state_dir,
                prefix=f"chaos.{uuid.uuid4().hex[:8]}.",
                say=lambda text: print(text, flush=True),
            )
        )
    except (BrokerError, RuntimeError) as error:
        print(f"relaystream chaos: {error}")
        return 1
    finally:
        if args.bootstrap is None and broker.is_running():
            broker.stop()
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(report.to_json() + "\n")
    return 0 if report.ok else 1
