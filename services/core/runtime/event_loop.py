"""The event loop every service runs on: uvloop.

The services spend most of their CPU in the event loop's socket and callback machinery (Kafka
requests, SMTP lines, futures resolved per batch); libuv's loop does that work in C. Under
`relaystream bench` (1rcpt-10k) it cut each service's CPU per message by about a fifth. The
tests run on the same loop (tests/conftest.py), so what they prove holds for production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the services' event loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
