"""The score writer tells an outage (retry the batch) from a refusal (set the record aside)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from leadscore.core.errors import DatabaseUnavailableError
from leadscore.core.writer import RecordRejectedError, ScoreWriter


class FakeDatabase:
    """A persist function that stores numbers, refuses the `bad` ones as a real database
    would (the whole transaction fails), and is unreachable while `down`."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.down = False
        self.rows: list[int] = []
        self.calls = 0
        self.refused_down = 0  # calls that failed for the outage (counted once they have)
        self.delay = 0.0  # a database that answers, slowly

    async def persist(self, records: Sequence[int]) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.down:
            self.refused_down += 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError(111, "refused"))
        refused = [r for r in records if r in self.bad]
        if refused:
            error = IntegrityError if refused[0] % 2 else DataError
            raise error("INSERT", {}, ValueError(f"record {refused[0]} violates a constraint"))
        self.rows.extend(records)


async def wait_until(check: object, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_a_refused_record_is_set_aside_and_later_scores_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = FakeDatabase(bad={7})
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=100, interval_ms=5, durable=False, key=lambda r: r
    )
    writer.start()
    with caplog.at_level(logging.ERROR, logger="leadscore.core.writer"):
        await writer.submit(list(range(10)))
        await writer.barrier()
        # Later scores are not held up behind the refused one.
        await writer.submit(list(range(10, 20)))
        await writer.barrier()
    await writer.close()
    assert sorted(database.rows) == [r for r in range(20) if r != 7]
    assert writer.rejected == 1
    assert writer.written == 19
    assert [record for record, _ in writer.set_aside] == [7]
    assert "IntegrityError" in writer.set_aside[0][1]
    assert writer.unwritten(7) is None  # not offered to readers as if it were stored
    refusals = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(refusals) == 1
    # One attempt for the batch, one per record of it, one for the later batch: no retry loop.
    assert database.calls == 1 + 10 + 1


async def test_a_durable_score_the_database_refuses_is_not_acknowledged() -> None:
    database = FakeDatabase(bad={4})
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=100, interval_ms=1, durable=True
    )
    writer.start()
    await writer.submit([1, 2])
    with pytest.raises(RecordRejectedError):
        await writer.submit([3, 4])
    await writer.close()
    assert database.rows == [1, 2, 3]
    assert writer.rejected == 1


async def test_an_outage_keeps_the_batch_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    database = FakeDatabase(bad=set())
    database.down = True
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=100, interval_ms=1, durable=False, key=lambda r: r,
        wait_seconds=0.2,
    )  # fmt: skip
    writer.start()
    with caplog.at_level(logging.WARNING, logger="leadscore.core.writer"):
        await writer.submit([1, 2, 3])
        assert writer.unwritten(2) == 2  # readable while it waits for the database
        with pytest.raises(DatabaseUnavailableError):
            await writer.barrier()  # bounded: no request hangs on a dead database
        await wait_until(lambda: database.refused_down >= 4, seconds=3)
        assert writer.database.is_down
        database.down = False
        await wait_until(lambda: database.rows == [1, 2, 3], seconds=10)
    await writer.close()
    assert writer.rejected == 0
    assert writer.unwritten(2) is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("down:" in m for m in messages) == 1, messages
    assert sum("back up" in m for m in messages) == 1, messages
    assert not any(r.exc_info for r in caplog.records)  # no traceback per retry


async def test_a_durable_score_answers_503_within_the_bound_and_is_written_later() -> None:
    database = FakeDatabase(bad=set())
    database.down = True
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=100, interval_ms=1, durable=True, wait_seconds=0.3
    )
    writer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DatabaseUnavailableError):
        await writer.submit([5])
    assert loop.time() - started < 1.0
    database.down = False
    await wait_until(lambda: database.rows == [5], seconds=10)
    await writer.close()


@pytest.mark.parametrize("durable", [True, False])
async def test_a_slow_database_that_answers_delays_the_answer_instead_of_a_503(
    durable: bool,
) -> None:
    database = FakeDatabase(bad=set())
    database.delay = 0.5
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=100, interval_ms=1, durable=durable, wait_seconds=0.1
    )
    writer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await writer.submit([8])
    await writer.barrier()  # past the 0.1 s, but the database is not down: no 503
    assert loop.time() - started >= 0.5
    assert database.rows == [8]
    assert not writer.database.is_down
    await writer.close()


async def test_a_writer_still_catching_up_after_an_outage_answers_503_within_the_bound() -> None:
    database = FakeDatabase(bad=set())
    database.down = True
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=100, interval_ms=1, durable=False, wait_seconds=0.2
    )
    writer.start()
    await writer.submit([1])
    # Three attempts have failed (not merely started): now in a 1 s back-off.
    await wait_until(lambda: database.refused_down >= 3, seconds=3)
    database.down = False  # back, but the writer has not retried yet
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DatabaseUnavailableError):
        await writer.barrier()
    assert loop.time() - started < 0.6
    await wait_until(lambda: database.rows == [1], seconds=5)
    await writer.barrier()  # caught up: answered at once
    await writer.close()


async def test_a_shutdown_during_an_outage_gives_up_after_the_drain_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = FakeDatabase(bad=set())
    database.down = True
    writer: ScoreWriter[int] = ScoreWriter(
        database.persist, batch_max=2, interval_ms=1, durable=False
    )
    writer.start()
    await writer.submit([1, 2, 3, 4, 5])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.ERROR, logger="leadscore.core.writer"):
        await writer.close(drain_seconds=0.5)
    assert loop.time() - started < 1.5
    assert database.rows == []
    assert [r.getMessage() for r in caplog.records] == [
        "shutdown: 5 scores not written, the database stayed unreachable for 0.5 s"
    ]
