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
