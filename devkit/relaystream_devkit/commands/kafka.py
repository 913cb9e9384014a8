"""`relaystream kafka start|stop|status|fetch`: the local single-node broker (devkit).

A second `start` while the broker of the same state directory runs prints where it runs and
exits 0, so scripts can call `start` unconditionally.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..broker import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_PORT,
    BrokerAlreadyRunning,
    BrokerError,
    LocalKafka,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "kafka",
        help="run a local single-node Apache Kafka broker",
        description="A local Apache Kafka (KRaft) broker from Maven Central jars, on loopback. "
        "State (pid, logs, default data) lives in ./.relaystream or RELAYSTREAM_STATE_DIR; "
        "jars in ~/.cache/relaystream or RELAYSTREAM_CACHE_DIR, or KAFKA_HOME/libs.",
    )
    actions = parser.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)

    start = actions.add_parser("start", help="start the broker detached and wait until it answers")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help="client port (9092)")
    start.add_argument(
        "--controller-port",
        type=int,
        default=DEFAULT_CONTROLLER_PORT,
        help="KRaft controller port (9093)",
    )
    start.add_argument(
        "--data-dir", type=Path, default=None, help="data dir (default <state dir>/kafka-data)"
    )
    start.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for the broker to answer"
    )
    start.set_defaults(handler=run_start)

    stop = actions.add_parser("stop", help="stop the broker (SIGTERM, then wait)")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait before SIGKILL")
    stop.set_defaults(handler=run_stop)

    status = actions.add_parser("status", help="say whether the broker runs, and where")
    status.set_defaults(handler=run_status)

    fetch = actions.add_parser("fetch", help="only download the Kafka jars into the cache")
    fetch.set_defaults(handler=run_fetch)


def run_start(args: argparse.Namespace) -> int:
    broker = LocalKafka()
    try:
        bootstrap = broker.start(
            port=args.port,
            controller_port=args.controller_port,
            data_dir=args.data_dir,
            timeout_s=args.timeout,
        )
    except BrokerAlreadyRunning as running:
        print(running)
        return 0
    except BrokerError as error:
        print(f"relaystream kafka start: {error}", file=sys.stderr)
        return 1
    print(f"Kafka is running at {bootstrap} (pid {broker.status().pid})")
    print(f"log: {broker.log_path}")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    print(LocalKafka().stop(timeout_s=args.timeout))
    return 0


def run_status(args: argparse.Namespace) -> int:
    status = LocalKafka().status()
    if status.running:
        print(f"running: pid {status.pid}, bootstrap {status.bootstrap}")
    else:
        print("stopped")
    print(f"log: {status.log_path}")
    if status.data_dir is not None:
        print(f"data: {status.data_dir}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    try:
        libs = LocalKafka().ensure_jars()
    except BrokerError as error:
        print(f"relaystream kafka fetch: {error}", file=sys.stderr)
        return 1
    print(f"Kafka jars: {libs}")
    return 0
