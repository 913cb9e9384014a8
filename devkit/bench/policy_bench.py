"""Policy evaluations per second, single core, for each founding snippet (tests/policies/seed_*).

Message snippets are timed through `on_message_received`; the get_queue_config snippet
through `get_queue_config` (the call the scheduler makes per queue). Run:

    .venv/bin/python devkit/bench/policy_bench.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from relaystream.core.policy import PolicyMessage, policy_from_file

POLICIES = Path(__file__).resolve().parents[2] / "tests" / "policies"
HEADERS = "From: a@example.org\r\nTo: b@example.com\r\nSubject: hello\r\n"


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second of `call`, measured over about `seconds` after a warm-up."""
    for _ in range(1000):
        call()
    count = 0
    batch = 1000
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            call()
        count += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    message = PolicyMessage(
        id="0192a8f0c1d2",
        sender="sender@example.org",
        recipient="user@example.com",
        meta={"tenant": "acme", "campaign": "spring", "reception_protocol": "ESMTP"},
        headers=HEADERS,
    )
    for path in sorted(POLICIES.glob("seed_*.lua")):
        policy = policy_from_file(path)
        if path.stem == "seed_mx_list":
            hosted = rate(
                partial(policy.get_queue_config, "domain.to.be.smart.hosted", "acme", None, None),
                args.seconds,
            )
            default = rate(
                partial(policy.get_queue_config, "example.com", "acme", None, None), args.seconds
            )
            print(f"{path.name:28} get_queue_config (mx_list)   {hosted:>10,.0f}/s")
            print(f"{path.name:28} get_queue_config (defaults)  {default:>10,.0f}/s")
        else:
            received = rate(partial(policy.on_message_received, "ESMTP", message), args.seconds)
            print(f"{path.name:28} on_message_received          {received:>10,.0f}/s")


if __name__ == "__main__":
    main()
