"""Structured log lines: formats, the unit of work's fields, masking, one handler only."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from leadscore.core.logs import (
    HANDLER_NAME,
    ConsoleFormatter,
    JsonFormatter,
    annotate,
    bound,
    configure_logging,
    resolve_format,
    scrub,
)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.getLogger("leadscore.test").makeRecord(
        "leadscore.test", logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_a_json_line_has_the_units_fields_and_its_own() -> None:
    with bound(request_id="r-1", team=7):
        annotate(webhook="evt-9")
        line = json.loads(JsonFormatter().format(record("applied %d", 3, provider="webhook")))
    assert line["msg"] == "applied 3"
    assert (line["request_id"], line["team"], line["webhook"]) == ("r-1", 7, "evt-9")
    assert line["provider"] == "webhook"
    assert line["level"] == "warning"
    assert line["logger"] == "leadscore.test"
    assert line["ts"].endswith("Z")


def test_outside_a_unit_a_line_has_no_fields_and_annotate_is_free() -> None:
    annotate(team=1)  # nothing bound: ignored
    line = json.loads(JsonFormatter().format(record("plain")))
    assert "team" not in line
    assert "request_id" not in line


def test_nested_units_and_tasks_inherit_their_parents_fields() -> None:
    async def child() -> dict[str, object]:
        with bound(job="j1"):
            return json.loads(JsonFormatter().format(record("in the job")))

    async def parent() -> dict[str, object]:
        with bound(request_id="r-2"):
            return await asyncio.create_task(child())

    line = asyncio.run(parent())
    assert (line["request_id"], line["job"]) == ("r-2", "j1")


@pytest.mark.parametrize(
    "secret",
    ["sarah.chen@example.com", "+1-555-0123", "(512) 555-0123",
     "lsk_0123456789ab_" + "Zx9" * 14, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
     "Q2hhbmdlTWVQbGVhc2VUaGlzSXNBU2lnbmluZ1NlY3JldA1x"],
)  # fmt: skip
def test_secrets_and_contacts_are_masked_in_both_formats(secret: str) -> None:
    line = record("upstream said: %s (retrying)", secret)
    for formatter in (JsonFormatter(), ConsoleFormatter()):
        text = formatter.format(line)
        assert secret not in text
        assert "[redacted]" in text


def test_ids_and_times_are_not_mistaken_for_secrets() -> None:
    text = "job 0123456789ab at 2026-01-24T10:30:00Z, batch 0123456789abcdef0123456789abcdef"
    assert scrub(text) == text


def test_console_lines_read_as_text() -> None:
    with bound(request_id="r-3"):
        text = ConsoleFormatter().format(record("scored %s", "lead_1", ms=1.5))
    assert " WARNING leadscore.test: scored lead_1 request_id=r-3 ms=1.5" in text
    assert not text.startswith("{")


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    try:
        assert configure_logging("json") == "json"
        assert configure_logging("console") == "console"
        ours = [h for h in root.handlers if h.name == HANDLER_NAME]
        assert len(ours) == 1
        logging.getLogger("leadscore.test").info("hello")
        assert "INFO    leadscore.test: hello" in capsys.readouterr().err
    finally:
        for handler in [h for h in root.handlers if h.name == HANDLER_NAME]:
            root.removeHandler(handler)


def test_the_default_format_follows_the_terminal() -> None:
    # Under pytest standard error is captured, not a terminal: JSON for a log shipper.
    assert resolve_format(None) == "json"
    assert resolve_format("console") == "console"
