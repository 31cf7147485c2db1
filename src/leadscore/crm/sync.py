"""A CRM event applied to the team's data: the lead upserted, its interaction appended, its
outcome recorded, then re-scored, all in the inbox worker's unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.core.errors import LeadScoreError, NotFoundError
from leadscore.core.schemas import validation_detail
from leadscore.core.tables import CrmContactRow
from leadscore.core.timestamps import iso_z
from leadscore.crm import repository as repo
from leadscore.crm.connections import Connection
from leadscore.crm.providers.base import (
    AppointmentSeen,
    Change,
    ContactData,
    ContactGone,
    MessageSeen,
    OutcomeSeen,
    Provider,
    lead_id_for,
)
from leadscore.engine.schema import Lead, LeadData
from leadscore.outcomes.service import ConflictError, OutcomeIn, OutcomeService
from leadscore.scoring import repository as scoring_repo
from leadscore.scoring.service import ScoringService

#: Recent messages kept per contact, for a qualifier to read the conversation.
MESSAGES_KEPT: Final = 20
MESSAGE_CHARS: Final = 1000
MAX_INTERACTIONS: Final = 1000
TRUE_WORDS: Final = frozenset({"true", "yes", "y", "1", "on", "pre-approved", "approved"})
FALSE_WORDS: Final = frozenset({"false", "no", "n", "0", "off"})


class ContactInvalidError(LeadScoreError):
    """The CRM's data for a contact is not a lead we can score (recorded on the webhook)."""

    status_code = 422
    code = "invalid_contact"


@dataclass
class Applied:
    """What one event did, for the inbox entry."""

    scored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _bool_field(name: str) -> bool:
    annotation = str(LeadData.model_fields[name].annotation)
    return "bool" in annotation


def _coerce(target: str, value: Any) -> Any:
    """A CRM custom field's value (often text) for a lead field; pydantic checks the rest."""
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
        if _bool_field(target):
            low = value.lower()
            if low in TRUE_WORDS:
                return True
            if low in FALSE_WORDS:
                return False
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


def map_contact(data: dict[str, Any], change: ContactData, mapping: dict[str, str]) -> set[str]:
    """Merge a contact's fields into the lead's data; the fields it set."""
    touched = set()
    for name, value in change.fields.items():
        data[name] = value
        touched.add(name)
    attributes = dict(data.get("attributes") or {})
    for source, target in mapping.items():
        if source.startswith("tag:"):
            if change.tags is not None and source[4:] in change.tags:
                data[target] = True
                touched.add(target)
            continue
        if source not in change.custom:
            continue
        value = change.custom[source]
        if target.startswith("attributes."):
            name = target.removeprefix("attributes.")
            attributes[name] = (
                value
                if isinstance(value, str | int | float | bool)
                else (None if value is None else str(value))
            )
        else:
            data[target] = _coerce(target, value)
            touched.add(target)
    if attributes:
        data["attributes"] = attributes
    return touched


def _reply_hours(state: dict[str, Any], message: MessageSeen) -> float | None:
    """Hours since the conversation's previous outbound message, when one was seen."""
    last = (state.get("conversations") or {}).get(message.conversation_id or "")
    if not last:
        return None
    hours = (message.at - datetime.fromisoformat(last)).total_seconds() / 3600.0
    return round(hours, 3) if hours >= 0 else None


def _remember_message(state: dict[str, Any], message: MessageSeen) -> None:
    messages = list(state.get("messages") or [])
    messages.append({
        "direction": message.direction, "at": iso_z(message.at), "kind": message.kind,
        "text": (message.text or "")[:MESSAGE_CHARS],
    })  # fmt: skip
    state["messages"] = messages[-MESSAGES_KEPT:]


def _append(data: dict[str, Any], interaction: dict[str, Any]) -> None:
    history = [*(data.get("interaction_history") or []), interaction]
    history.sort(key=lambda item: str(item.get("timestamp")))
    data["interaction_history"] = history[-MAX_INTERACTIONS:]


def _validated(lead_id: str, data: dict[str, Any], touched: set[str], notes: list[str]) -> Lead:
    """The lead, dropping (with a note) a CRM field whose value is not valid for it."""
    for _ in range(2):
        try:
            return Lead(lead_id=lead_id, lead_data=LeadData.model_validate(data))
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & touched
            if not bad:
                raise ContactInvalidError(
                    str(validation_detail(exc.errors(), root="lead_data"))
                ) from exc
            for name in sorted(bad):
                notes.append(f"{lead_id}: {name}={data.pop(name)!r} is not valid; ignored")
            touched -= bad
    raise ContactInvalidError(f"{lead_id}: the contact's data is not a valid lead")


class CrmSync:
    """Applies providers' changes for a team: the same path for every CRM."""

    def __init__(self, scoring: ScoringService, outcomes: OutcomeService) -> None:
        self.scoring = scoring
        self.outcomes = outcomes

    async def apply(
        self,
        session: AsyncSession,
        principal: Principal,
        connection: Connection,
        provider: Provider,
        changes: Sequence[Change],
    ) -> Applied:
        """Upsert, append, record and re-score what the changes say, in the session."""
        applied = Applied()
        by_contact: dict[str, list[Change]] = {}
        for change in changes:
            by_contact.setdefault(change.contact_id, []).append(change)
        leads: list[Lead] = []
        outcomes: list[OutcomeIn] = []
        now = datetime.now(UTC)
        for contact_id, contact_changes in by_contact.items():
            contact = await repo.contact(session, connection.id, contact_id)
            lead_id = contact.lead_id if contact else lead_id_for(provider.lead_prefix, contact_id)
            if any(isinstance(c, ContactGone) for c in contact_changes):
                await repo.delete_contact(session, connection.id, contact_id)
                applied.notes.append(f"{lead_id}: deleted in the CRM; write-backs stopped")
                continue
            row = await scoring_repo.lead(session, principal.team_id, lead_id)
            data: dict[str, Any] = dict(row.data) if row is not None else {}
            state: dict[str, Any] = dict(contact.state) if contact else {}
            touched: set[str] = set()
            rescore = False
            for change in contact_changes:
                if isinstance(change, ContactData):
                    touched |= map_contact(data, change, connection.field_mapping)
                    rescore = True
                elif isinstance(change, MessageSeen):
                    _remember_message(state, change)
                    if change.direction == "outbound":
                        if change.conversation_id:
                            conversations = dict(state.get("conversations") or {})
                            conversations[change.conversation_id] = change.at.isoformat()
                            state["conversations"] = conversations
                        continue
                    text = change.text or ""
                    _append(data, {
                        "timestamp": iso_z(change.at), "type": change.kind,
                        "response_time_hours": _reply_hours(state, change),
                        "message_length": len(text) if change.text is not None else None,
                        "questions_asked": text.count("?") if change.text is not None else None,
                    })  # fmt: skip
                    rescore = True
                elif isinstance(change, AppointmentSeen):
                    _append(data, {"timestamp": iso_z(change.at), "type": "appointment"})
                    rescore = True
                elif isinstance(change, OutcomeSeen):
                    outcomes += _outcomes(lead_id, change)
            if contact is None:
                if not rescore and row is None:
                    applied.notes.append(f"{lead_id}: not a lead here yet; event skipped")
                    continue
                contact = CrmContactRow(
                    connection_id=connection.id, contact_id=contact_id,
                    team_id=principal.team_id, lead_id=lead_id, state=state, updated_at=now,
                )  # fmt: skip
                session.add(contact)
            else:
                contact.state = state
                contact.updated_at = now
            if rescore:
                leads.append(_validated(lead_id, data, touched, applied.notes))
        await session.flush()  # the contacts exist before the write-back hook looks for them
        if leads:
            await self.scoring.score_in(session, principal, leads)
            applied.scored = [lead.lead_id for lead in leads]
        if outcomes:
            await self._record(session, principal, outcomes, applied)
        return applied

    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        items: list[OutcomeIn],
        applied: Applied,
    ) -> None:
        try:
            await self.outcomes.record(session, principal, items)
        except NotFoundError:
            applied.notes.append("the deal's contact was never scored here; outcome skipped")
        except ConflictError as exc:
            applied.notes.append(f"outcome not recorded: {exc}")


def _outcomes(lead_id: str, change: OutcomeSeen) -> list[OutcomeIn]:
    """Won: the lead converted and the deal closed (at its value); lost: lost."""
    if change.outcome == "lost":
        return [OutcomeIn(lead_id=lead_id, outcome="lost", occurred_at=change.at)]
    return [
        OutcomeIn(lead_id=lead_id, outcome="converted", occurred_at=change.at),
        OutcomeIn(
            lead_id=lead_id, outcome="closed", occurred_at=change.at, sale_price=change.value
        ),
    ]
