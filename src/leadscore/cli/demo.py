"""The demo's live stream: new leads arrive, known leads interact and are re-scored, and some
leads end (converted or lost) — all through the real HTTP API, paced so it stays light."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from leadscore.core.timestamps import iso_z

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: Scores per second by default: the dashboard moves, two cores stay nearly idle.
DEFAULT_RATE: Final = 3.0
#: Of the scores, the share that are new leads (the rest are known leads interacting again).
NEW_SHARE: Final = 0.4
#: Outcomes recorded per score: over a demo's minutes, every band of the calibration chart
#: gets outcomes while most leads stay open.
OUTCOMES_PER_SCORE: Final = 0.3
#: New leads generated at a time (one cheap call to the generator per block).
BLOCK: Final = 50
#: Interactions kept per lead: the history stays well under the API's 1,000.
MAX_INTERACTIONS: Final = 60


@dataclass
class DemoLead:
    """A lead as the API takes it, and how likely it truly is to convert (the generator's)."""

    body: dict[str, Any]
    p_conversion: float

    @property
    def lead_id(self) -> str:
        lead_id: str = self.body["lead_id"]
        return lead_id


def demo_leads(n: int, seed: int, now: datetime, prefix: str | None = None) -> list[DemoLead]:
    """`n` generated leads that arrived over the last month, scored as of now (their future is
    ignored), each with the generator's true conversion probability; `prefix` renames them."""
    import polars as pl  # the command line starts without the engine's libraries

    from leadscore.engine.io import frame_to_leads
    from leadscore.engine.synthetic import generate

    frame = generate(n, seed=seed, start=now - timedelta(days=30), days=30).drop("as_of")
    if prefix is not None:
        frame = frame.with_columns(
            pl.format(
                "{}{}", pl.lit(prefix), pl.int_range(pl.len()).cast(pl.String).str.zfill(4)
            ).alias("lead_id")
        )
    chances = frame["p_conversion"].to_list()
    return [
        DemoLead(lead.model_dump(mode="json", exclude_none=True), chance)
        for lead, chance in zip(frame_to_leads(frame), chances, strict=True)
    ]


@dataclass
class StreamCounts:
    """What the stream has done so far."""

    new: int = 0
    rescored: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {"converted": 0, "lost": 0})


class DemoStream:
    """Paces one action per tick (`rate` scores a second): a new lead, or a known lead that
    interacts again; and now and then the outcome of a known lead, drawn from its true chance."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        leads: list[DemoLead],
        *,
        rate: float = DEFAULT_RATE,
        seed: int = 11,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        from leadscore.engine.synthetic import INTERACTION_TYPES

        self.client = client
        self.kinds: tuple[str, ...] = INTERACTION_TYPES
        self.open = list(leads)  # scored, no outcome yet
        self.rate = rate
        self.random = random.Random(seed)
        self.stopping = stopping
        self.counts = StreamCounts()
        self._fresh: list[DemoLead] = []
        self._blocks = 0
        self._seed = seed

    async def run(self) -> None:
        """Act, then sleep until the next tick, until told to stop."""
        if self.rate <= 0:
            return
        interval = 1.0 / self.rate
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self.stopping():
            await self.step()
            next_tick = max(next_tick + interval, loop.time())  # a slow step is not caught up
            await asyncio.sleep(next_tick - loop.time())

    async def step(self) -> None:
        """One score, and an outcome with probability OUTCOMES_PER_SCORE."""
        if not self.open or self.random.random() < NEW_SHARE:
            await self._new_lead()
        else:
            await self._interact(self.random.choice(self.open))
        if len(self.open) > 1 and self.random.random() < OUTCOMES_PER_SCORE:
            await self._outcome(self.open.pop(self.random.randrange(len(self.open))))

    def _next_new(self) -> DemoLead:
        if not self._fresh:
            self._blocks += 1
            now = datetime.now(UTC)
            prefix = f"live{self._blocks:04d}_"
            self._fresh = demo_leads(BLOCK, self._seed * 1000 + self._blocks, now, prefix)
        return self._fresh.pop()

    async def _score(self, lead: DemoLead) -> None:
        response = await self.client.post("/api/v1/ml/score", json=lead.body)
        response.raise_for_status()

    async def _new_lead(self) -> None:
        lead = self._next_new()
        await self._score(lead)
        self.open.append(lead)
        self.counts.new += 1

    async def _interact(self, lead: DemoLead) -> None:
        """The lead replies, calls or visits now: its history grows and it is scored again."""
        kind = self.random.choice(self.kinds)
        interaction: dict[str, Any] = {
            "timestamp": iso_z(datetime.now(UTC)),
            "type": kind,
            "response_time_hours": round(self.random.expovariate(1 / 6.0), 2),
            "questions_asked": self.random.randint(0, 4),
        }
        if kind in ("email_response", "text"):
            interaction["message_length"] = self.random.randint(20, 400)
        data = lead.body["lead_data"]
        history = [*data.get("interaction_history", []), interaction][-MAX_INTERACTIONS:]
        data["interaction_history"] = history
        await self._score(lead)
        self.counts.rescored += 1

    async def _outcome(self, lead: DemoLead) -> None:
        """Converted with the lead's true probability, else lost: the calibration chart then
        compares the model with the truth."""
        outcome = "converted" if self.random.random() < lead.p_conversion else "lost"
        response = await self.client.post(
            "/api/v1/ml/outcomes",
            json={"lead_id": lead.lead_id, "outcome": outcome,
                  "occurred_at": iso_z(datetime.now(UTC))},
        )  # fmt: skip
        response.raise_for_status()
        self.counts.outcomes[outcome] += 1
