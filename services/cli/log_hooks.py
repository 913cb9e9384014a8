"""`relaystream log-hooks --policy FILE`: forwards the log topic to the policy's JSON log hooks
(KumoMTA's `log_hooks:new_json`), as a process of its own, until SIGINT or SIGTERM.

Each hook reads the log topic in its own consumer group and POSTs every record to its URL,
retrying a failed POST and committing only what was POSTed (core/log_hooks/forwarder.py).
Hooks with a Lua constructor (`new`) or disposition hooks are not run: loading the policy
warns about each. Exit status: 0 stopped by a signal, 2 the policy does not load or declares
no JSON hook.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from ..core.domain.log_hook import LogHookDeclaration, LogHookKind
from ..core.kafka.topics import TopicCatalog
from ..core.log_hooks.forwarder import forward_json_hooks
from ..core.policy import PolicyLoadError, policy_from_file
from ..core.runtime.logging import configure_logging
from .common import add_kafka_options, kafka_target


def register(subparsers: Any) -> None:
    hooks = subparsers.add_parser(
        "log-hooks",
        help="forward the log records to the policy's JSON log hooks (log_hooks:new_json)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hooks.add_argument("--policy", required=True, type=Path, help="the policy declaring them")
    add_kafka_options(hooks)
    hooks.add_argument(
        "--from-beginning",
        action="store_true",
        help="a hook forwarded for the first time starts at the oldest log record, not the next",
    )
    hooks.set_defaults(handler=log_hooks_command)


def log_hooks_command(args: argparse.Namespace) -> int:
    configure_logging("log-hooks")
    try:
        policy = policy_from_file(args.policy)
    except PolicyLoadError as error:
        print(f"relaystream log-hooks: {error}", file=sys.stderr)
        return 2
    hooks = [hook for hook in policy.log_hooks if hook.kind is LogHookKind.JSON]
    if not hooks:
        print(f"relaystream log-hooks: {args.policy} declares no new_json hook", file=sys.stderr)
        return 2
    bootstrap, topics = kafka_target(args)
    return asyncio.run(_forward(hooks, bootstrap, topics, args.from_beginning))


async def _forward(
    hooks: list[LogHookDeclaration], bootstrap: str, topics: TopicCatalog, from_beginning: bool
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await forward_json_hooks(hooks, bootstrap, topics, stop, start_at_beginning=from_beginning)
    return 0
