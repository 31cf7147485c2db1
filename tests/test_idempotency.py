"""Idempotency keys over each cache backend: one action per key, the first answer replayed."""

from __future__ import annotations

import asyncio

import pytest

from leadscore.core.errors import InvalidInputError
from leadscore.core.idempotency import (
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    IdempotencyStore,
    Once,
)

from .test_cache import Backend, backend  # noqa: F401  (the parametrised backend fixture)


async def test_a_key_acts_once_and_replays_its_first_answer(backend: Backend) -> None:  # noqa: F811
    store = IdempotencyStore(backend.cache)
    once = Once.of("key-1", b'{"lead_id": "a"}')
    calls: list[int] = []

    async def act() -> bytes:
        calls.append(1)
        return f"answer {len(calls)}".encode()

    assert await store.run(7, "score", once, act) == b"answer 1"
    assert await store.run(7, "score", once, act) == b"answer 1"
    assert await store.run(8, "score", once, act) == b"answer 2"  # another team's key
    assert await store.run(7, "batch", once, act) == b"answer 3"  # another write
    assert len(calls) == 3
    with pytest.raises(IdempotencyKeyReusedError):
        await store.run(7, "score", Once.of("key-1", b'{"lead_id": "b"}'), act)


async def test_a_repeat_while_the_first_runs_is_told_to_retry(backend: Backend) -> None:  # noqa: F811
    store = IdempotencyStore(backend.cache)
    once = Once.of("key-2", b"body")
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow() -> bytes:
        started.set()
        await finish.wait()
        return b"done"

    first = asyncio.create_task(store.run(1, "score", once, slow))
    await started.wait()
    with pytest.raises(IdempotencyInProgressError) as error:
        await store.run(1, "score", once, slow)
    assert error.value.headers() == {"Retry-After": "1"}
    finish.set()
    assert await first == b"done"
    assert await store.run(1, "score", once, slow) == b"done"


async def test_a_failed_write_frees_its_key(backend: Backend) -> None:  # noqa: F811
    store = IdempotencyStore(backend.cache)
    once = Once.of("key-3", b"body")

    async def fail() -> bytes:
        raise RuntimeError("the database went away")

    async def succeed() -> bytes:
        return b"ok"

    with pytest.raises(RuntimeError):
        await store.run(1, "outcomes", once, fail)
    assert await store.run(1, "outcomes", once, succeed) == b"ok"


def test_keys_are_printable_ascii_up_to_255_characters() -> None:
    assert Once.of(None, b"") is None
    assert Once.of("k" * 255, b"") is not None
    for bad in ("", "k" * 256, "with space", "caf\u00e9"):
        with pytest.raises(InvalidInputError):
            Once.of(bad, b"")
