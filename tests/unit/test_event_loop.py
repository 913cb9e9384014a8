"""The services and the tests run on one event loop implementation."""

from __future__ import annotations

import asyncio

import uvloop

from relaystream.core.runtime import event_loop


async def test_tests_run_on_the_services_event_loop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


def test_run_returns_the_result_of_main_on_uvloop() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(main()).startswith("uvloop")
