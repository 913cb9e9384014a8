"""`relaystream retry-schedule`: the retry delays a queue config gives until expiry."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from ..core.domain.durations import DurationError, duration_to_json, format_duration
from ..core.domain.queue_config import QueueConfig, QueueConfigError
from ..core.domain.retry import retry_schedule


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "retry-schedule",
        help="show the successive retry delays (without jitter) until a message expires",
        description="Durations are KumoMTA strings ('20m', '1 hour') or numbers of seconds.",
    )
    parser.add_argument("--retry-interval", default=None, metavar="D", help="default 20m")
    parser.add_argument("--max-retry-interval", default=None, metavar="D", help="default none")
    parser.add_argument("--max-age", default=None, metavar="D", help="default 7 days")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def _duration_argument(value: str | None) -> str | int | float | None:
    """A number on the command line means seconds, as it does in a config file."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def schedule(config: QueueConfig) -> dict[str, Any]:
    delays = retry_schedule(config)
    rows: list[dict[str, Any]] = []
    elapsed = timedelta(0)
    for attempt, delay in enumerate(delays, start=1):
        elapsed += delay
        rows.append(
            {
                "after_attempt": attempt,
                "delay_seconds": duration_to_json(delay),
                "delay": format_duration(delay),
                "next_attempt_at_seconds": duration_to_json(elapsed),
                "next_attempt_at": format_duration(elapsed),
            }
        )
    return {
        "retry_interval": duration_to_json(config.retry_interval),
        "max_retry_interval": None
        if config.max_retry_interval is None
        else duration_to_json(config.max_retry_interval),
        "max_age": duration_to_json(config.max_age),
        "attempts": len(delays) + 1,
        "retries": rows,
    }


def run(args: argparse.Namespace) -> int:
    fields = {
        "retry_interval": _duration_argument(args.retry_interval),
        "max_retry_interval": _duration_argument(args.max_retry_interval),
        "max_age": _duration_argument(args.max_age),
    }
    try:
        config = QueueConfig.from_mapping({k: v for k, v in fields.items() if v is not None})
    except (QueueConfigError, DurationError) as err:
        print(f"error: {err}")
        return 2
    result = schedule(config)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"attempt 1 immediately; max_age {format_duration(config.max_age)}")
    for row in result["retries"]:
        print(
            f"attempt {row['after_attempt'] + 1:>3} after {row['delay']:>12}"
            f"  (at {row['next_attempt_at']} after creation)"
        )
    print(f"then the message expires ({result['attempts']} attempts in all)")
    return 0
