"""The LLM qualifier: open escalations are put to Claude, whose confident answers resolve them.

One background loop per worker takes one open escalation at a time (an UPDATE … RETURNING, so
two workers never take the same one), spends one call of its team's hourly budget, and sends
the lead's data and conversation through the official `anthropic` SDK with one tool whose
strict input schema is the qualification answers plus `confidence` and `summary`. A confident
answer resolves the escalation as `llm` (the same path as a person's answers); an unsure one
goes back to the queue with its summary; errors are retried with backoff, then left for a
person. It runs beside scoring and never holds it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import anthropic
import orjson
from anthropic.types import MessageParam, ToolChoiceToolParam, ToolParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal
from leadscore.auth.service import TeamAdmin
from leadscore.core.db import transaction
from leadscore.core.errors import InvalidInputError
from leadscore.core.lifecycle import Background
from leadscore.core.ratelimit import RateLimiter, RateLimitUnavailableError
from leadscore.core.tables import EscalationRow
from leadscore.outcomes.service import ConflictError
from leadscore.qualification import repository as repo
from leadscore.qualification.schemas import Answers
from leadscore.qualification.service import LLM, QualificationService

log = logging.getLogger(__name__)

#: What the qualifier fetches about a lead's conversation: messages as {role/type, text, time}.
Conversation = Callable[[AsyncSession, int, str], Awaitable[list[dict[str, Any]]]]
TOOL_NAME: Final = "record_qualification"
#: How the LLM's work on an escalation ended (the repository has the states that wait).
UNSURE: Final = "unsure"  # answered below the confidence bar: a person takes it
FAILED: Final = "failed"  # errors until the attempts ran out: a person takes it
RESOLVED: Final = "resolved"
SUPERSEDED: Final = "superseded"  # a person claimed it, or a new score resolved it, meanwhile
MAX_BACKOFF_SECONDS: Final = 600.0
SYSTEM_PROMPT: Final = (
    "You qualify real-estate leads for a brokerage. From the lead's data and conversation, "
    "answer what is known: whether the buyer is pre-approved for a mortgage, their timeline "
    "to buy, their budget (as a price range such as '500k-750k'), and how they finance "
    "(cash, mortgage, ...). Use null for anything the conversation does not say; never guess. "
    "Give your confidence (0 to 1) that the answers are right, and a one-paragraph summary "
    "for the agent. Always answer with the record_qualification tool."
)
_NULLABLE_TEXT: Final = {"type": ["string", "null"]}
TOOL: Final[ToolParam] = {
    "name": TOOL_NAME,
    "description": "Record what the conversation establishes about the lead's readiness to buy.",
    "strict": True,
    "input_schema": {
        "type": "object",
        "properties": {
            "pre_approved": {"type": ["boolean", "null"],
                             "description": "Pre-approved for a mortgage; null if not said."},
            "timeline": _NULLABLE_TEXT | {"description": "When they plan to buy: '1-3 months'."},
            "budget": _NULLABLE_TEXT | {"description": "Price range, e.g. '500k-750k'."},
            "financing": _NULLABLE_TEXT | {"description": "cash, mortgage, FHA, VA, ..."},
            "confidence": {"type": "number",
                           "description": "0 to 1: how sure you are of these answers."},
            "summary": {"type": "string", "description": "What the agent should know."},
        },
        "required": ["pre_approved", "timeline", "budget", "financing", "confidence", "summary"],
        "additionalProperties": False,
    },
}  # fmt: skip


class LLMAnswer(BaseModel):
    """The tool's input as the model gave it, checked again on our side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pre_approved: bool | None
    timeline: str | None = Field(max_length=200)
    budget: str | None = Field(max_length=200)
    financing: str | None = Field(max_length=60)
    confidence: float = Field(ge=0, le=1)
    summary: str = Field(max_length=4000)

    def answers(self) -> Answers:
        """The answers given (blank text is no answer)."""
        fields: dict[str, bool | str | None] = {"pre_approved": self.pre_approved}
        for name in ("timeline", "budget", "financing"):
            value: str | None = getattr(self, name)
            fields[name] = value.strip() if value and value.strip() else None
        return Answers.model_validate(fields)


class LLMAnswerError(Exception):
    """The response held no usable tool call: counted as a failed attempt."""


@dataclass(frozen=True)
class QualifierSettings:
    """How the qualifier calls the model and how much it may."""

    api_key: str
    model: str
    calls_per_hour: int
    min_confidence: float
    max_attempts: int
    timeout_seconds: float = 60.0
    backoff_seconds: float = 5.0
    lease_seconds: float = 300.0  # a taken escalation returns to the queue if its worker died
    poll_seconds: float = 10.0  # besides being woken by every escalation opened here


async def interaction_history(
    session: AsyncSession, team_id: int, lead_id: str
) -> list[dict[str, Any]]:
    """The default conversation: the lead's stored interactions."""
    data = await repo.lead_data(session, team_id, lead_id) or {}
    return list(data.get("interaction_history") or [])


def backoff(settings: QualifierSettings, attempts: int) -> float:
    """Seconds before retry `attempts + 1`: doubling from `backoff_seconds`, capped."""
    return min(MAX_BACKOFF_SECONDS, settings.backoff_seconds * float(2 ** max(0, attempts - 1)))


def retryable(exc: Exception) -> bool:
    """Overloaded, server errors, rate limits, timeouts and lost connections pass; a refused
    request (bad key, bad request) fails the same way every time."""
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 409, 429)
    return isinstance(exc, anthropic.APIConnectionError | LLMAnswerError | ValidationError)


class LLMQualifier(Background):
    """Puts open escalations to Claude one at a time, within each team's hourly budget."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        service: QualificationService,
        limiter: RateLimiter,
        teams: TeamAdmin,
        settings: QualifierSettings,
        conversation: Conversation = interaction_history,
        outage: Callable[[Exception], bool] | None = None,
    ) -> None:
        self.sessions = sessions
        self.service = service
        self.limiter = limiter
        self.teams = teams
        self.settings = settings
        self.conversation = conversation
        #: Whether a step's error is a database outage reported elsewhere (then not logged).
        self.outage = outage
        self._client: anthropic.AsyncAnthropic | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Create the client (it reads ANTHROPIC_BASE_URL itself) and start the loop."""
        self._client = anthropic.AsyncAnthropic(
            api_key=self.settings.api_key,
            max_retries=0,  # retries are ours: counted per escalation, surviving restarts
            timeout=self.settings.timeout_seconds,
        )
        self.service.on_opened.append(self._wake.set)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="llm-qualifier")

    async def close(self) -> None:
        """Stop the loop (a call in flight is abandoned; its lease runs out) and the client."""
        with contextlib.suppress(ValueError):
            self.service.on_opened.remove(self._wake.set)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                worked = await self.step()
            except Exception as exc:  # a database outage: the loop must outlive it
                if self.outage is None or not self.outage(exc):
                    log.exception("the LLM qualifier failed a step; trying again")
                worked = False
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def step(self) -> bool:
        """Take one due escalation and see it through; False when none was due."""
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with transaction(self.sessions) as session:
            taken = await repo.take_for_llm(session, now, lease)
        if taken is None:
            return False
        # Taken for good: if reading the conversation fails, the lease runs out and it is retried.
        async with transaction(self.sessions) as session:
            conversation = await self.conversation(session, taken.team_id, taken.lead_id)
            data = await repo.lead_data(session, taken.team_id, taken.lead_id) or {}
        wait = await self._budget_wait(taken.team_id)
        if wait is not None:
            retry_at = now + timedelta(seconds=wait)
            await self._record(taken, repo.LLM_BUDGET, retry_at, taken.llm_attempts)
            return True
        attempts = taken.llm_attempts + 1
        try:
            answer = await self.ask(taken, data, conversation)
        except Exception as exc:
            if not retryable(exc):
                log.warning("escalation %s: the LLM refused the request: %s", taken.id, exc)
                await self._record(taken, FAILED, None, attempts)
            elif attempts >= self.settings.max_attempts:
                log.warning("escalation %s: left for a person after %d attempts: %s",
                            taken.id, attempts, exc)  # fmt: skip
                await self._record(taken, FAILED, None, attempts)
            else:
                retry_at = datetime.now(UTC) + timedelta(seconds=backoff(self.settings, attempts))
                await self._record(taken, repo.LLM_RETRY, retry_at, attempts)
            return True
        if answer.confidence < self.settings.min_confidence:
            await self._record(taken, UNSURE, None, attempts, notes=answer.summary)
            return True
        try:
            async with transaction(self.sessions) as session:
                principal = await self._principal(session, taken.team_id)
                await self.service.settle(
                    session, principal, taken, answer.answers(), answer.summary, None, LLM,
                    ("open",),
                )  # fmt: skip
                await repo.set_llm(session, taken.id, datetime.now(UTC), RESOLVED, None, attempts)
        except ConflictError:  # a person claimed it, or a new score resolved it, meanwhile
            await self._record(taken, SUPERSEDED, None, attempts)
        except (InvalidInputError, ValidationError) as exc:  # answers the lead's data refuses
            log.warning("escalation %s: the LLM's answers were refused: %s", taken.id, exc)
            await self._record(taken, FAILED, None, attempts, notes=answer.summary)
        return True

    async def _budget_wait(self, team_id: int) -> float | None:
        """None when the team may spend a call now; else seconds until it may."""
        try:
            decision = await self.limiter.hit(
                f"llm:{team_id}", self.settings.calls_per_hour, 3600.0
            )
        except RateLimitUnavailableError:
            return self.settings.poll_seconds  # paid calls fail closed while the limiter is down
        return None if decision.allowed else max(1.0, decision.retry_after_seconds)

    async def _record(
        self,
        taken: EscalationRow,
        state: str,
        next_at: datetime | None,
        attempts: int,
        notes: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        async with transaction(self.sessions) as session:
            await repo.set_llm(session, taken.id, now, state, next_at, attempts, notes)

    async def _principal(self, session: AsyncSession, team_id: int) -> Principal:
        """The team as the qualifier acts for it: its own thresholds and commission rate."""
        team = await self.teams.team_settings(session, team_id)
        return Principal(
            key_id=0, team_id=team_id, team_name=team.team, role=LLM,
            commission_rate=team.commission_rate, hot_threshold=team.hot_threshold,
            warm_threshold=team.warm_threshold, escalation_confidence=team.escalation_confidence,
        )  # fmt: skip

    async def ask(
        self, taken: EscalationRow, data: dict[str, Any], conversation: list[dict[str, Any]]
    ) -> LLMAnswer:
        """One Messages API call forcing the tool; its input, checked."""
        assert self._client is not None, "the qualifier is not started"
        lead = {k: v for k, v in data.items() if k != "interaction_history"}
        prompt = orjson.dumps(
            {"lead": lead, "why_escalated": taken.reasons, "conversation": conversation},
            option=orjson.OPT_INDENT_2,
        ).decode()
        forced: ToolChoiceToolParam = {"type": "tool", "name": TOOL_NAME}
        question: MessageParam = {"role": "user", "content": f"Qualify this lead.\n\n{prompt}"}
        message = await self._client.messages.create(
            model=self.settings.model,
            max_tokens=1024,
            system=SYSTEM_PROMPT,
            tools=[TOOL],
            tool_choice=forced,
            messages=[question],
        )
        for block in message.content:
            if block.type == "tool_use" and block.name == TOOL_NAME:
                return LLMAnswer.model_validate(block.input)
        raise LLMAnswerError(f"no {TOOL_NAME} call in the response (stop: {message.stop_reason})")
