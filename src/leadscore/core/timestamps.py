"""Instants as the API writes them: ISO 8601 in UTC with a `Z`, one spelling everywhere."""

from __future__ import annotations

from datetime import datetime


def iso_z(moment: datetime) -> str:
    """`2026-11-21T14:00:00.123456Z` for a UTC-aware datetime."""
    return moment.isoformat().replace("+00:00", "Z")
