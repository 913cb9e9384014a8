"""`relaystream topics ensure|list`: the declared topics (core/kafka/topics.py) on a cluster."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..core.kafka.admin import TopicAdminError, ensure_topics
from ..core.kafka.topics import TopicSettings, declare_topics
from ..core.runtime.settings import load_settings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("topics", help="create and inspect the declared Kafka topics")
    actions = parser.add_subparsers(dest="topics_command", metavar="ACTION", required=True)

    ensure = actions.add_parser(
        "ensure",
        help="create missing topics; report (never change) topics whose settings differ",
        description="Creates every declared topic that is missing. An existing topic whose "
        "partition count, replication factor or declared configs differ is reported and left "
        "alone; the exit code is then 2.",
    )
    ensure.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help=DEFAULT_BOOTSTRAP)
    _add_layout_arguments(ensure)
    ensure.set_defaults(handler=run_ensure)

    listing = actions.add_parser("list", help="show the declared topics and their settings")
    _add_layout_arguments(listing)
    listing.set_defaults(handler=run_list)


def _add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TopicSettings.local()
    parser.add_argument(
        "--prefix",
        default=None,
        help="name prefix, may be empty (default: the settings' topic_prefix, as the services "
        "use it: RELAYSTREAM_TOPIC_PREFIX or the settings file, else 'relaystream.')",
    )
    parser.add_argument(
        "--production",
        action="store_true",
        help="production sizing (3 replicas, min.insync.replicas 2) instead of local (1/1)",
    )
    parser.add_argument("--replication-factor", type=int, default=None)
    parser.add_argument("--min-insync-replicas", type=int, default=None)
    parser.add_argument(
        "--queue-partitions",
        type=int,
        default=None,
        help=f"partitions of queued, attempts and outcomes (local: {defaults.queue_partitions})",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        help=f"partitions of the other data topics (local: {defaults.partitions})",
    )


def _settings(args: argparse.Namespace) -> TopicSettings:
    prefix = load_settings().runtime.topic_prefix if args.prefix is None else args.prefix
    base = TopicSettings.production(prefix) if args.production else TopicSettings.local(prefix)
    return TopicSettings(
        prefix=base.prefix,
        replication_factor=args.replication_factor or base.replication_factor,
        min_insync_replicas=args.min_insync_replicas or base.min_insync_replicas,
        queue_partitions=args.queue_partitions or base.queue_partitions,
        partitions=args.partitions or base.partitions,
        control_partitions=base.control_partitions,
    )


def run_ensure(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        report = asyncio.run(ensure_topics(args.bootstrap, declare_topics(settings)))
    except (ValueError, TopicAdminError) as error:
        print(f"relaystream topics ensure: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # connection failures: say where we tried
        print(
            f"relaystream topics ensure: cannot reach Kafka at {args.bootstrap}: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    for name in report.created:
        print(f"created  {name}")
    for name in report.matching:
        print(f"ok       {name}")
    for drift in report.drifts:
        print(f"DIFFERS  {drift}")
    if not report.ok:
        print(
            f"{len(report.drifts)} setting(s) differ from the declaration; "
            "existing topics were left unchanged",
            file=sys.stderr,
        )
        return 2
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        catalog = declare_topics(_settings(args))
    except ValueError as error:
        print(f"relaystream topics list: {error}", file=sys.stderr)
        return 1
    print(f"{'topic':<28} {'partitions':>10} {'replicas':>8}  configs")
    for spec in catalog:
        configs = " ".join(f"{key}={value}" for key, value in spec.configs().items())
        print(f"{spec.name:<28} {spec.partitions:>10} {spec.replication_factor:>8}  {configs}")
    return 0
