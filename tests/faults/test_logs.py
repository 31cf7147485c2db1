"""An outage logs when it starts, a count every 30 s, and when it ends: not a line per failure."""

from __future__ import annotations

import logging

import pytest

from leadscore.core.logs import DependencyLog


def test_an_outage_is_three_kinds_of_line_not_one_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    state = DependencyLog(logging.getLogger("test.faults"), "database", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.faults"):
        state.up()  # nothing was down: silent
        for _ in range(70):  # 70 s of failures, ten a second
            for _ in range(10):
                state.down("ConnectionRefusedError: refused")
            now[0] += 1.0
        state.up()
        state.up()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0] == "database down: ConnectionRefusedError: refused"
    assert lines[1].startswith("database still down after 30 s: 300 refused in the last 30 s")
    assert lines[2].startswith("database still down after 60 s: 300 refused")
    assert lines[3] == "database back up after 70.0 s; 700 refused during the outage"
    assert not state.is_down
    state.down("again")
    assert state.is_down
    assert caplog.records[-1].getMessage() == "database down: again"
