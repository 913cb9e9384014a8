"""Options shared by the commands that talk to a running deployment's Kafka."""

from __future__ import annotations

import argparse

from ..core.kafka.topics import TopicCatalog, deployment_topics
from ..core.runtime.settings import load_settings


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers (default: RELAYSTREAM_KAFKA_BOOTSTRAP or the settings "
        "file named by RELAYSTREAM_CONFIG, else 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="topic name prefix, may be empty (default: RELAYSTREAM_TOPIC_PREFIX or the "
        "settings file, else 'relaystream.')",
    )


def kafka_target(args: argparse.Namespace) -> tuple[str, TopicCatalog]:
    """The bootstrap servers and topic names the options (or the settings) name."""
    runtime = load_settings().runtime
    bootstrap = args.bootstrap or runtime.kafka_bootstrap
    prefix = runtime.topic_prefix if args.prefix is None else args.prefix
    return bootstrap, deployment_topics(prefix)


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows (the first: headers) as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
