"""Background components: entered they run, left they stop, and a failed start stops the rest."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from leadscore.core.lifecycle import Background, Periodic


class Recorder(Background):
    """Records its start and close in a shared log; may refuse to start."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def close(self) -> None:
        self.log.append(f"close {self.name}")


async def test_a_failure_while_starting_stops_what_already_started_in_reverse() -> None:
    log: list[str] = []

    async def start_all() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for name in ("a", "b"):
                await stack.enter_async_context(Recorder(name, log))
            await stack.enter_async_context(Recorder("c", log, fail=True))

    with pytest.raises(RuntimeError, match="c cannot start"):
        await start_all()
    assert log == ["start a", "start b", "close b", "close a"]


async def test_periodic_outlives_a_failing_step_and_stops_when_closed() -> None:
    calls = 0
    errors: list[Exception] = []

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first step fails")

    async with Periodic("test", 0.01, step, on_error=errors.append):
        deadline = asyncio.get_running_loop().time() + 5
        while calls < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    assert calls >= 3
    assert [str(e) for e in errors] == ["first step fails"]
    stopped_at = calls
    await asyncio.sleep(0.05)
    assert calls == stopped_at, "a closed Periodic must not tick again"
