"""Background components: each is an async context manager, entered on the app's exit stack.

`async with component:` starts it and, however the block ends, stops it; the lifespan enters
every component on one `AsyncExitStack`, so a failure while starting stops, in reverse order,
everything that had started.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Self

log = logging.getLogger(__name__)


class Background:
    """A component with work in the background: entering starts it, leaving closes it."""

    def start(self) -> Awaitable[None] | None:
        """Start the background work (inside the running loop)."""
        return None

    async def close(self) -> None:
        """Stop the background work and release what it holds."""

    async def __aenter__(self) -> Self:
        started = self.start()
        if inspect.isawaitable(started):
            await started
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Periodic(Background):
    """Runs `step` every `interval` seconds until closed; a failing step is logged, not fatal.

    Examples
    --------
    >>> import asyncio
    >>> async def demo() -> int:
    ...     ticks = []
    ...     async def step() -> None:
    ...         ticks.append(1)
    ...     async with Periodic("demo", 0.01, step):
    ...         await asyncio.sleep(0.05)
    ...     return len(ticks)
    >>> asyncio.run(demo()) >= 2
    True
    """

    def __init__(
        self,
        name: str,
        interval: float,
        step: Callable[[], Awaitable[object]],
        *,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self._step = step
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking: the first step runs one interval from now."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._step()
            except Exception as exc:  # the task must outlive one failed step
                if self._on_error is not None:
                    self._on_error(exc)
                else:
                    log.exception("%s failed; trying again in %.1f s", self.name, self.interval)

    async def close(self) -> None:
        """Stop ticking; a step in progress is cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Pump(Background):
    """Drains a queue that lives elsewhere (a table): runs `step` when woken or every
    `interval` seconds, and again at once while `step` reports more work; a failing step is
    logged and retried after `interval`.

    Examples
    --------
    >>> import asyncio
    >>> async def demo() -> list[int]:
    ...     queue = [1, 2, 3]
    ...     taken: list[int] = []
    ...     async def step() -> bool:
    ...         if queue:
    ...             taken.append(queue.pop(0))
    ...         return bool(queue)
    ...     async with Pump("demo", 60.0, step) as pump:
    ...         pump.wake()
    ...         await asyncio.sleep(0.05)
    ...     return taken
    >>> asyncio.run(demo())
    [1, 2, 3]
    """

    def __init__(
        self,
        name: str,
        interval: float,
        step: Callable[[], Awaitable[bool]],
        *,
        outage: Callable[[Exception], bool] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self._step = step
        #: Says whether a step's error is an outage already reported elsewhere (the database
        #: down): such errors are retried quietly, any other is logged with its traceback.
        self._outage = outage
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run a step now (new work was committed here)."""
        self._woken.set()

    def start(self) -> None:
        """Start draining: a first step runs at once (work left by a previous run)."""
        self._woken.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.interval)
            self._woken.clear()
            more = True
            while more:
                try:
                    more = await self._step()
                except Exception as exc:  # the task must outlive one failed step
                    if self._outage is None or not self._outage(exc):
                        log.exception("%s failed; trying again in %.1f s", self.name,
                                      self.interval)  # fmt: skip
                    more = False

    async def close(self) -> None:
        """Stop draining; a step in progress is cancelled (what it held is released by its
        lease)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
