"""Logs: outages as state changes, and structured lines (JSON or console) that carry the
request, team, webhook or training job they belong to, with secrets and personal data masked.

A traceback per refused request or per retry turned a 40 s database outage into 62 MB of
logs; what an operator needs is when it started, how much it refused, and when it ended.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from datetime import UTC, datetime, timezone
from typing import Final, Literal, TextIO

import orjson

REPORT_SECONDS: Final = 30.0


class DependencyLog:
    """The up/down state of one dependency (database, redis) as this process sees it."""

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        *,
        every: float = REPORT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.name = name
        self.every = every
        self._clock = clock
        self.is_down = False
        self.down_since = 0.0
        self.refused = 0  # failures seen since the outage began
        self._reported_at = 0.0
        self._reported_refused = 0

    def down(self, reason: str, *, refused: int = 1) -> None:
        """A failure: logged when it starts an outage, otherwise counted and summed periodically."""
        now = self._clock()
        self.refused += refused
        if not self.is_down:
            self.is_down = True
            self.down_since = self._reported_at = now
            self._reported_refused = self.refused
            self.logger.warning("%s down: %s", self.name, reason)
            return
        if now - self._reported_at >= self.every:
            self.logger.warning(
                "%s still down after %.0f s: %d refused in the last %.0f s (%s)",
                self.name,
                now - self.down_since,
                self.refused - self._reported_refused,
                now - self._reported_at,
                reason,
            )
            self._reported_at = now
            self._reported_refused = self.refused

    def up(self) -> None:
        """A success: logs the end of an outage once; free when nothing was down."""
        if not self.is_down:
            return
        self.is_down = False
        self.logger.warning(
            "%s back up after %.1f s; %d refused during the outage",
            self.name,
            self._clock() - self.down_since,
            self.refused,
        )
        self.refused = 0


# -- structured logs ------------------------------------------------------------------------

#: The fields of the unit of work in progress (request id, team, webhook, job): every line
#: logged while it runs carries them. One mutable dict per unit, so a field learnt deep in
#: the call (the team, once authenticated) reaches the access line written after it.
_fields: ContextVar[dict[str, object] | None] = ContextVar("leadscore_log_fields", default=None)
#: Log record attributes that are not a line's own `extra` fields.
_RECORD_KEYS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: What must never reach a log, whatever a message interpolates: e-mail addresses, bearer
#: tokens (JWT), API keys, long opaque secrets (signing secrets, Fernet keys: 43+ characters,
#: longer than a uuid or a model version), phone numbers (+1…, or 555-555-0123 shapes).
_SECRETS: Final = re.compile(
    r"[\w.+-]+@[\w-]+\.[\w.-]+"
    r"|eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"
    r"|lsk_[\w-]+"
    r"|(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{40,}=*"
    r"|\+\d[\d ().-]{6,}\d"
    r"|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b"
)
HANDLER_NAME: Final = "leadscore"
LogFormat = Literal["console", "json"]


def log_context() -> dict[str, object] | None:
    """The fields of the unit of work in progress, if one is bound."""
    return _fields.get()


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[dict[str, object]]:
    """Bind fields for the lines logged inside (a request, a webhook, a training job); nested
    units see their parent's fields too, and tasks started inside inherit them."""
    parent = _fields.get()
    token = _fields.set({**(parent or {}), **fields})
    try:
        yield _fields.get() or {}
    finally:
        _fields.reset(token)


def bind(fields: dict[str, object]) -> Token[dict[str, object] | None]:
    """Start a unit of work with these fields (the access layer's cheaper `bound`)."""
    return _fields.set(fields)


def unbind(token: Token[dict[str, object] | None]) -> None:
    """End the unit of work `bind` started."""
    _fields.reset(token)


def annotate(**fields: object) -> None:
    """Add fields to the unit of work in progress (the team once it is known); free outside."""
    current = _fields.get()
    if current is not None:
        current.update(fields)


def scrub(text: str) -> str:
    """The text with e-mail addresses, tokens, secrets and phone numbers masked."""
    return _SECRETS.sub("[redacted]", text)


#: Loggers whose messages are built only from our own constants (method, route template,
#: status): the secret masking is skipped for them, the access line being the hot path.
_TRUSTED: Final = frozenset({"leadscore.access"})


def _fields_of(record: logging.LogRecord) -> dict[str, object]:
    """The unit of work's fields, then the record's own `extra` fields."""
    own = vars(record)
    extra = own.keys() - _RECORD_KEYS
    fields = dict(_fields.get() or ())
    for key in extra:
        fields[key] = own[key]
    return fields


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    return message if record.name in _TRUSTED else scrub(message)


class _Clock:
    """Formats record times; the part down to the second is reused within that second."""

    def __init__(self, pattern: str, zone: timezone | None) -> None:
        self.pattern = pattern
        self.zone = zone
        self._second = -1
        self._prefix = ""

    def stamp(self, created: float) -> str:
        """`<prefix to the second>.mmm`."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, self.zone).strftime(self.pattern)
        return f"{self._prefix}.{int((created - second) * 1000):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time (UTC), level, logger, message, the
    unit of work's fields and the line's own `extra` fields."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock("%Y-%m-%dT%H:%M:%S", UTC)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (secrets in the message masked)."""
        line: dict[str, object] = {
            "ts": self._clock.stamp(record.created) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        line.update(_fields_of(record))
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """A line a person reads in a terminal: local time, level, logger, message, key=value."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock("%H:%M:%S", None)

    def format(self, record: logging.LogRecord) -> str:
        """The record as `HH:MM:SS.mmm LEVEL logger: message key=value …`."""
        tail = "".join(f" {k}={v}" for k, v in _fields_of(record).items())
        stamp = self._clock.stamp(record.created)
        text = f"{stamp} {record.levelname:<7} {record.name}: {_message(record)}{tail}"
        if record.exc_info:
            text += "\n" + scrub(self.formatException(record.exc_info))
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected one)."""

    @property
    def stream(self) -> TextIO:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        """Ignored: the stream is always the current standard error."""


def resolve_format(configured: LogFormat | None) -> LogFormat:
    """The configured format, else console on a terminal and JSON for everything else."""
    if configured is not None:
        return configured
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(configured: LogFormat | None) -> LogFormat:
    """Send LeadScore's lines (INFO and up) and every library's warnings to standard error in
    one format; calling it again replaces the handler it installed, never adds one."""
    chosen = resolve_format(configured)
    handler = _StderrHandler()
    handler.name = HANDLER_NAME
    handler.setFormatter(JsonFormatter() if chosen == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("leadscore").setLevel(logging.INFO)
    # uvicorn's own lines (startup, errors) in the same format, once.
    for name in ("uvicorn", "uvicorn.error"):
        server = logging.getLogger(name)
        server.handlers = []
        server.propagate = True
    return chosen
