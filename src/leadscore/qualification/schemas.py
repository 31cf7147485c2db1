"""Request and response shapes of the qualification queue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Status = Literal["open", "claimed", "resolved"]
STATUSES: tuple[Status, ...] = ("open", "claimed", "resolved")
#: The lead_data field each answer fills (the engine parses a budget such as "500k-750k").
ANSWER_FIELDS: dict[str, str] = {
    "pre_approved": "pre_approved",
    "timeline": "timeline",
    "budget": "budget_range",
    "financing": "financing",
}
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Financing = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Notes = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]


class Answers(BaseModel):
    """What qualifying a lead found out; a field not sent stays as the lead has it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pre_approved: bool | None = None
    timeline: Text | None = Field(default=None, examples=["1-3 months"])
    budget: Text | None = Field(default=None, examples=["500k-750k"])
    financing: Financing | None = Field(default=None, examples=["cash"])

    def lead_fields(self) -> dict[str, Any]:
        """The answers given, under the lead_data names they fill."""
        given = self.model_dump(include=set(ANSWER_FIELDS), exclude_none=True)
        return {ANSWER_FIELDS[name]: value for name, value in given.items()}


class OutcomeAnswer(BaseModel):
    """What happened to the lead, if qualifying it ended it: recorded as a training label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Literal["converted", "closed", "lost"]
    occurred_at: AwareDatetime
    sale_price: float | None = Field(default=None, gt=0, le=1e10)


class ResolveRequest(Answers):
    """The answers of a person who qualified the lead, free notes, and optionally an outcome."""

    notes: Notes | None = None
    outcome: OutcomeAnswer | None = None

    @model_validator(mode="after")
    def _something(self) -> ResolveRequest:
        """A resolution must say something the lead's score or its labels can use."""
        if not self.lead_fields() and self.outcome is None:
            raise ValueError(
                "send at least one answer (pre_approved, timeline, budget, financing) or an outcome"
            )
        return self

    def answers(self) -> Answers:
        """The answers alone."""
        return Answers.model_validate(self.model_dump(include=set(ANSWER_FIELDS)))


class AskNext(BaseModel):
    """A question to ask, from the lead's latest score."""

    field: str
    question: str
    score_if_yes: float
    score_if_no: float


class Escalation(BaseModel):
    """One lead in the queue: why it entered, what to ask, who took it and how it ended."""

    id: int
    lead_id: str
    name: str | None
    status: Status
    reasons: list[str]
    opened_at: str
    ml_score_at_open: float
    ml_confidence_at_open: float
    ml_score: float | None = Field(description="the lead's latest score")
    ml_confidence: float | None
    classification: str | None
    qualification_needed: bool | None
    ask_next: list[AskNext]
    claimed_by: str | None
    claimed_at: str | None
    answers: dict[str, Any] | None
    notes: str | None
    resolved_by: str | None = Field(description='a key ("key 3 (agent)"), "llm" or "rescored"')
    resolved_at: str | None
    outcome: str | None
    llm_state: str | None
    llm_attempts: int
    updated_at: str


class EscalationsPage(BaseModel):
    """A page of the queue, oldest first, and the cursor of the next page (null at the end)."""

    escalations: list[Escalation]
    next_cursor: str | None


class Resolved(Escalation):
    """A resolved escalation and the lead's new score."""

    score: dict[str, Any] | None = Field(description="the re-score's body, as POST /score answers")
