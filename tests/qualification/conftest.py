"""The API tests' real servers (both backends) and the leads the queue is about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leadscore.core.timestamps import iso_z

from ..api.conftest import as_role, client, deployment, server

__all__ = ["as_role", "client", "deployment", "server", "unsure_lead"]

#: What qualifying a lead establishes; with them the lead of `unsure_lead` scores confidently.
ANSWERS = {"pre_approved": True, "timeline": "1-3 months", "budget": "500k-750k",
           "financing": "cash"}  # fmt: skip


def unsure_lead(lead_id: str, name: str = "Pat Doe") -> dict[str, Any]:
    """A lead that needs qualifying with the tests' model: engaged (two quick, long replies in
    the last hours, a busy site visit) but its financing, timeline and budget unknown."""
    now = datetime.now(UTC)
    return {
        "lead_id": lead_id,
        "lead_data": {
            "name": name, "source": "website", "email": "pat@example.com",
            "phone": "+1-555-0100", "location_preference": "Downtown Austin",
            "property_type": "condo", "bedrooms": 2,
            "web_activity": {"properties_viewed": 60, "repeat_listing_views": 20,
                             "favorites": 15, "saved_searches": 5},
            "interaction_history": [
                {"timestamp": iso_z(now - timedelta(hours=3 + 5 * i)), "type": "email_response",
                 "response_time_hours": 0.2, "message_length": 400, "questions_asked": 6}
                for i in range(2)
            ],
        },
    }  # fmt: skip


def answered(body: dict[str, Any]) -> dict[str, Any]:
    """The same lead with the answers filled in (as a person would send them to /score)."""
    data = body["lead_data"] | {"pre_approved": True, "timeline": "1-3 months",
                                "budget_range": "500k-750k", "financing": "cash"}  # fmt: skip
    return {"lead_id": body["lead_id"], "lead_data": data}
