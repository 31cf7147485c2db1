"""Hypothesis strategies for what a CRM may send: JSON of any shape, GoHighLevel events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from leadscore.crm.providers import gohighlevel

#: JSON values of any shape (integers within what JSON encoders take), for sender-set fields.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip

_stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.none() | st.just(UTC),
).map(datetime.isoformat)  # fmt: skip
_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
_times = _stamps | json_values
_anything = json_values

#: The fields GoHighLevel's handled events carry: mostly of the right kind, any JSON otherwise.
event_fields: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        "id": _ids | _anything, "contactId": _ids | _anything,
        "status": st.sampled_from(["open", "won", "lost", "abandoned"]) | _anything,
        "appointment": st.fixed_dictionaries({}, optional={
            "contactId": _ids | _anything, "dateAdded": _times, "startTime": _times,
            "title": _anything}) | _anything,
        "dateAdded": _times, "lastStatusChangeAt": _times, "dateUpdated": _times,
        "body": st.text(max_size=200) | _anything,
        "messageType": st.sampled_from(["SMS", "Email", "CALL", "WhatsApp"]) | _anything,
        "conversationId": _ids | _anything,
        "customFields": st.lists(st.fixed_dictionaries(
            {"id": _ids | _anything, "value": _anything}) | _anything, max_size=3) | _anything,
        "tags": st.lists(st.text(max_size=10) | _anything, max_size=3) | _anything,
        "name": _anything, "firstName": _anything, "lastName": _anything, "email": _anything,
        "phone": _anything, "source": _anything, "monetaryValue": _anything,
    },
)  # fmt: skip

handled_types = st.sampled_from(sorted(gohighlevel.HANDLED))
