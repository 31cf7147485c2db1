"""The CRM loop's pure parts, without a server: GoHighLevel's envelope, parse, check and
signature; a write-back's classification, backoff and threshold; lead ids and field mapping."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.crm.outbox import backoff, moved
from leadscore.crm.providers import gohighlevel
from leadscore.crm.providers.base import (
    AppointmentSeen,
    ContactData,
    ContactGone,
    MalformedWebhookError,
    MessageSeen,
    OutcomeSeen,
    WebhookRefusedError,
    body_digest,
    classify,
    lead_id_for,
    retry_after_seconds,
)
from leadscore.crm.schemas import WriteBack
from leadscore.crm.sync import ContactInvalidError, _reply_hours, _validated, map_contact
from tests.fakes.gohighlevel import Signer

from .conftest import FIXTURES, example
from .strategies import event_fields, handled_types, json_values

LEAD_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
NOW = datetime.now(UTC)


def _body(payload: Any) -> bytes:
    return orjson.dumps(payload)


def _wrapped(event: dict[str, Any], **outer: Any) -> bytes:
    return _body({"timestamp": NOW.isoformat().replace("+00:00", "Z"), "webhookId": "wh-1",
                  "data": event} | outer)  # fmt: skip


# -- envelope -----------------------------------------------------------------------------


def test_a_flat_payload_is_its_own_event_and_its_id_is_the_body_digest() -> None:
    event = example("ContactCreate")
    body = _body(event)
    found = gohighlevel.envelope(body)
    assert found.event == event
    assert found.event_type == "ContactCreate"
    assert found.account_id == "ve9EPM428h8vShlRW1KT"
    assert found.timestamp is None
    assert found.event_id == body_digest(body) == "sha256:" + hashlib.sha256(body).hexdigest()


def test_a_data_wrapped_payload_gives_the_inner_event_the_webhook_id_and_the_timestamp() -> None:
    event = example("InboundMessage.1")
    found = gohighlevel.envelope(_wrapped(event, timestamp="2026-01-02T03:04:05.678Z"))
    assert found.event == event
    assert found.event_type == "InboundMessage"
    assert found.account_id == "l1C08ntBrFjLS0elLIYU"
    assert found.event_id == "wh-1"
    assert found.timestamp == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_a_wrapped_payload_without_a_webhook_id_is_named_by_its_body() -> None:
    body = _body({"timestamp": NOW.isoformat(), "data": example("ContactUpdate")})
    assert gohighlevel.envelope(body).event_id == body_digest(body)
    empty = _body({"webhookId": "", "data": example("ContactUpdate")})
    assert gohighlevel.envelope(empty).event_id == body_digest(empty)


def test_a_flat_payload_with_its_own_webhook_id_and_a_data_field_stays_flat() -> None:
    event = example("ContactCreate", webhookId="wh-flat", data={"type": "Other"})
    found = gohighlevel.envelope(_body(event))
    assert found.event_id == "wh-flat"
    assert found.event_type == "ContactCreate"  # `type` beside `data`: the outer is the event


def test_the_same_body_has_the_same_digest_and_another_body_another() -> None:
    one, other = _body(example("ContactCreate")), _body(example("ContactCreate", id="x"))
    assert gohighlevel.envelope(one).event_id == gohighlevel.envelope(one).event_id
    assert gohighlevel.envelope(one).event_id != gohighlevel.envelope(other).event_id


def test_a_timestamp_without_an_offset_is_utc() -> None:
    found = gohighlevel.envelope(_wrapped(example("ContactCreate"), timestamp="2026-05-01T10:00"))
    assert found.timestamp == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (_body({"locationId": "loc"}), "no `type`"),
        (_body({"type": "", "locationId": "loc"}), "no `type`"),
        (_body({"type": 7, "locationId": "loc"}), "no `type`"),
        (_body({"data": {"locationId": "loc", "id": "c"}}), "no `type`"),
        (_body({"type": "ContactCreate"}), "no `locationId`"),
        (_body({"type": "ContactCreate", "locationId": ["loc"]}), "no `locationId`"),
        (_body({"type": "ContactCreate", "locationId": "loc", "timestamp": "yesterday"}),
         "not an ISO 8601 time"),
        (_body({"type": "ContactCreate", "locationId": "loc", "timestamp": 1700000000}),
         "must be an ISO 8601 time"),
        (_body({"timestamp": "2026-13-40T00:00:00Z", "data": {"type": "ContactCreate",
                                                              "locationId": "loc"}}),
         "not an ISO 8601 time"),
    ],
)  # fmt: skip
def test_an_unusable_envelope_is_malformed(body: bytes, message: str) -> None:
    with pytest.raises(MalformedWebhookError, match=message):
        gohighlevel.envelope(body)


_stamps = st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["ContactCreate", "InboundMessage", ""]) | json_values,
        "locationId": st.just("loc") | json_values,
        "timestamp": _stamps | st.text(max_size=30) | json_values,
        "webhookId": st.text(max_size=10) | json_values,
    },
)
_envelopes = st.one_of(
    _fields, st.builds(lambda outer, inner: outer | {"data": inner}, _fields, _fields | json_values)
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | json_values.map(_body) | _envelopes.map(_body))
def test_any_body_gives_an_envelope_or_a_malformed_webhook(body: bytes) -> None:
    try:
        found = gohighlevel.envelope(body)
    except MalformedWebhookError:
        return
    assert found.event_type
    assert found.account_id
    assert found.event_id


@settings(max_examples=500, deadline=None)
@given(handled_types, event_fields)
def test_a_handled_event_is_refused_as_malformed_or_parses(
    kind: str, fields: dict[str, Any]
) -> None:
    """What check() lets through, parse() reads without any error but a malformed webhook's:
    the receiver answers 422 or 200, never a 500."""
    event = {"type": kind, "locationId": "loc"} | fields
    try:
        gohighlevel.check(event)
        changes = gohighlevel.parse(event)
    except MalformedWebhookError:
        return
    for change in changes:
        assert isinstance(change.contact_id, str)
        assert change.contact_id
        if isinstance(change, MessageSeen):
            assert change.at.tzinfo is not None
            assert change.conversation_id is None or isinstance(change.conversation_id, str)
            assert change.text is None or isinstance(change.text, str)
        elif isinstance(change, AppointmentSeen):
            assert change.at.tzinfo is not None
            assert change.title is None or isinstance(change.title, str)
        elif isinstance(change, OutcomeSeen):
            assert change.value is None or change.value > 0
        elif isinstance(change, ContactData):
            assert all(isinstance(key, str) for key in change.custom)
            assert change.tags is None or all(isinstance(tag, str) for tag in change.tags)
        else:
            assert isinstance(change, ContactGone)


# -- check and parse of the published examples ---------------------------------------------


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_every_published_example_passes_the_check(path: Any) -> None:
    event = orjson.loads(path.read_bytes())
    gohighlevel.check(event)
    assert event["type"] in gohighlevel.HANDLED


@pytest.mark.parametrize(
    ("name", "missing"),
    [("ContactCreate", "id"), ("ContactDelete", "id"), ("InboundMessage.1", "contactId"),
     ("OpportunityStatusUpdate", "contactId")],
)  # fmt: skip
def test_a_handled_event_without_its_contact_is_malformed(name: str, missing: str) -> None:
    event = example(name)
    del event[missing]
    with pytest.raises(MalformedWebhookError, match=f"`{missing}`"):
        gohighlevel.check(event)
    with pytest.raises(MalformedWebhookError):
        gohighlevel.check(example(name, **{missing: ""}))


@pytest.mark.parametrize("appointment", [None, {}, "9NkT25Vor1v4aQatFsv2", ["x"], 3])
def test_an_appointment_without_a_contact_is_malformed(appointment: Any) -> None:
    with pytest.raises(MalformedWebhookError, match="contactId"):
        gohighlevel.check(example("AppointmentCreate", appointment=appointment))


def test_a_deal_without_a_status_is_malformed() -> None:
    event = example("OpportunityStatusUpdate")
    del event["status"]
    with pytest.raises(MalformedWebhookError, match="status"):
        gohighlevel.check(event)


def test_contact_create_gives_the_contacts_fields_custom_fields_and_tags() -> None:
    (change,) = gohighlevel.parse(example("ContactCreate"))
    assert change == ContactData(
        contact_id="nmFmQEsNgz6AVpgLVUJ0",
        fields={"name": "John Deo", "email": "JohnDeo@gmail.comm", "phone": "+919509597501",
                "source": "xyz form", "created_at": "2021-11-26T12:41:02.193Z"},
        custom={"BcdmQEsNgz6AVpgLVUJ0": "XYZ Corp"},
        tags=("id magna sed Lorem", "Duis dolor commodo aliqua"),
    )  # fmt: skip


def test_a_contact_without_a_name_is_named_from_its_parts_and_empty_fields_are_left_out() -> None:
    event = example("ContactUpdate") | {
        "name": None, "email": "", "lastName": None, "tags": None,
        "customFields": [{"value": "no id"}, "junk", {"id": 5, "value": True}],
    }  # fmt: skip
    (change,) = gohighlevel.parse(event)
    assert isinstance(change, ContactData)
    assert change.fields["name"] == "John"
    assert "email" not in change.fields
    assert change.custom == {"5": True}
    assert change.tags is None


@pytest.mark.parametrize("name", ["ContactUpdate", "ContactTagUpdate"])
def test_contact_updates_are_contact_data(name: str) -> None:
    (change,) = gohighlevel.parse(example(name))
    assert isinstance(change, ContactData)
    assert change.contact_id == "nmFmQEsNgz6AVpgLVUJ0"


def test_contact_delete_is_the_contact_gone() -> None:
    assert gohighlevel.parse(example("ContactDelete")) == [ContactGone("nmFmQEsNgz6AVpgLVUJ0")]


@pytest.mark.parametrize(
    ("name", "kind", "text"),
    [("InboundMessage.1", "sms", "This is a test message"),
     ("InboundMessage.3", "call", None),
     ("InboundMessage.4", "email_response", "Testing Email Notification")],
)  # fmt: skip
def test_inbound_messages_are_inbound_of_their_kind_with_plain_text(
    name: str, kind: str, text: str | None
) -> None:
    event = example(name)
    (change,) = gohighlevel.parse(event)
    assert change == MessageSeen(
        contact_id=event["contactId"], direction="inbound",
        at=datetime.fromisoformat(event["dateAdded"].replace("Z", "+00:00")),
        conversation_id=event["conversationId"], kind=kind, text=text,
    )  # fmt: skip


def test_the_published_outbound_message_is_outbound_whatever_its_direction_says() -> None:
    event = example("InboundMessage.2")
    assert (event["type"], event["direction"]) == ("OutboundMessage", "inbound")
    (change,) = gohighlevel.parse(event)
    assert isinstance(change, MessageSeen)
    assert change.direction == "outbound"
    assert change.kind == "call"
    assert change.conversation_id == "SGDqZrzmwTr19d10aHkt9F"


def test_a_message_of_another_channel_is_chat_and_one_without_a_type_other() -> None:
    (chat,) = gohighlevel.parse(example("InboundMessage.1", messageType="WhatsApp"))
    (other,) = gohighlevel.parse(example("InboundMessage.1", messageType=None))
    assert isinstance(chat, MessageSeen)
    assert isinstance(other, MessageSeen)
    assert (chat.kind, other.kind) == ("chat", "other")


@pytest.mark.parametrize("odd", [{"id": "conv"}, ["conv"], 7, True, ""])
def test_a_conversation_or_title_that_is_not_text_is_none(odd: Any) -> None:
    (message,) = gohighlevel.parse(example("InboundMessage.1", conversationId=odd))
    assert isinstance(message, MessageSeen)
    assert message.conversation_id is None
    appointment = example("AppointmentCreate")["appointment"] | {"title": odd}
    (booked,) = gohighlevel.parse(example("AppointmentCreate", appointment=appointment))
    assert isinstance(booked, AppointmentSeen)
    assert booked.title is None


def test_a_message_without_a_time_is_malformed_and_refused_before_it_is_stored() -> None:
    with pytest.raises(MalformedWebhookError, match="dateAdded"):
        gohighlevel.parse(example("InboundMessage.1", dateAdded=None))
    for kind in ("InboundMessage.1", "InboundMessage.2"):
        with pytest.raises(MalformedWebhookError, match="dateAdded"):
            gohighlevel.check(example(kind, dateAdded="yesterday"))
    gohighlevel.check(example("InboundMessage.1"))


def test_plain_text_strips_html_unescapes_and_collapses_whitespace() -> None:
    html = "<p>Hi&nbsp;there,</p>\n<br/><b>can we  tour</b> it &amp; the pool?</p>"
    assert gohighlevel.plain_text(html) == "Hi there, can we tour it & the pool?"
    assert gohighlevel.plain_text("plain") == "plain"
    assert gohighlevel.plain_text(None) is None
    assert gohighlevel.plain_text(42) is None


def test_appointment_create_is_an_appointment_at_its_time() -> None:
    assert gohighlevel.parse(example("AppointmentCreate")) == [
        AppointmentSeen(
            "9NkT25Vor1v4aQatFsv2",
            datetime(2023, 9, 25, 10, 30, tzinfo=UTC),  # 16:00 at +05:30
            "Appointment with GHL Dev team",
        )
    ]


def test_an_open_deal_says_nothing_yet() -> None:
    assert gohighlevel.parse(example("OpportunityStatusUpdate")) == []


def test_a_won_deal_is_won_at_its_value() -> None:
    (change,) = gohighlevel.parse(example("OpportunityStatusUpdate", status="won"))
    assert change == OutcomeSeen(
        "cJAWDskpkJHbRbhAT7bs", "won", datetime(2021, 11, 26, 12, 41, 2, 193000, tzinfo=UTC), 40.0
    )


def test_a_won_deal_without_a_value_has_none_and_its_status_change_time_wins() -> None:
    changed = (NOW - timedelta(days=1)).isoformat()
    (change,) = gohighlevel.parse(example("OpportunityStatusUpdate", status="won",
                                          monetaryValue=0, lastStatusChangeAt=changed))  # fmt: skip
    assert isinstance(change, OutcomeSeen)
    assert change.value is None
    assert change.at == datetime.fromisoformat(changed)


@pytest.mark.parametrize("status", ["lost", "abandoned"])
def test_a_lost_or_abandoned_deal_is_lost(status: str) -> None:
    (change,) = gohighlevel.parse(example("OpportunityStatusUpdate", status=status))
    assert isinstance(change, OutcomeSeen)
    assert (change.outcome, change.contact_id) == ("lost", "cJAWDskpkJHbRbhAT7bs")


# -- the signature ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def test_a_body_signed_with_the_key_verifies(signer: Signer) -> None:
    body = _body(example("ContactCreate"))
    gohighlevel.verify(gohighlevel.load_key(signer.public_pem), signer.sign(body), body)


def test_a_tampered_body_or_signature_is_refused(signer: Signer) -> None:
    key = gohighlevel.load_key(signer.public_pem)
    body = _body(example("ContactCreate"))
    signature = signer.sign(body)
    with pytest.raises(WebhookRefusedError, match="does not match"):
        gohighlevel.verify(key, signature, body + b" ")
    raw = bytearray(base64.b64decode(signature))
    raw[10] ^= 1
    with pytest.raises(WebhookRefusedError, match="does not match"):
        gohighlevel.verify(key, base64.b64encode(bytes(raw)).decode(), body)
    with pytest.raises(WebhookRefusedError, match="does not match"):
        gohighlevel.verify(key, Signer().sign(body), body)  # another key's


@pytest.mark.parametrize("signature", ["not base64!", "abc", "====", "a" * 5000])
def test_a_signature_that_is_not_base64_is_refused(signer: Signer, signature: str) -> None:
    with pytest.raises(WebhookRefusedError, match="does not match"):
        gohighlevel.verify(gohighlevel.load_key(signer.public_pem), signature, b"{}")


@pytest.mark.parametrize("signature", [None, ""])
def test_a_missing_signature_is_refused(signer: Signer, signature: str | None) -> None:
    with pytest.raises(WebhookRefusedError, match="missing"):
        gohighlevel.verify(gohighlevel.load_key(signer.public_pem), signature, b"{}")


def test_the_published_key_loads_and_a_non_rsa_key_is_a_configuration_error() -> None:
    gohighlevel.load_key(gohighlevel.published_key())
    ed25519 = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
        "-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(ValueError, match="not an RSA public key"):
        gohighlevel.load_key(ed25519)


# -- a write-back's answer ----------------------------------------------------------------


def _response(status: int, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    return httpx.Response(status, headers=headers, text=text)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_success_needs_nothing_more(status: int) -> None:
    assert classify(_response(status)) is None


@pytest.mark.parametrize("status", [429, 408, 500, 502, 503, 504])
def test_throttled_timed_out_and_server_errors_are_retried_after_their_retry_after(
    status: int,
) -> None:
    delivery = classify(_response(status, {"Retry-After": "7"}, "busy"))
    assert delivery is not None
    assert (delivery.result, delivery.retry_after) == ("retry", 7.0)
    assert delivery.detail == f"HTTP {status}: busy"
    bare = classify(_response(status))
    assert bare is not None
    assert (bare.result, bare.retry_after) == ("retry", None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_client_errors_fail_at_once(status: int) -> None:
    delivery = classify(_response(status, {"Retry-After": "7"}, "x" * 1000))
    assert delivery is not None
    assert (delivery.result, delivery.retry_after) == ("failed", None)
    assert delivery.detail is not None
    assert len(delivery.detail) <= len(f"HTTP {status}: ") + 300


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("12", 12.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("", None)],
)
def test_retry_after_is_seconds_never_negative(header: str, seconds: float | None) -> None:
    assert retry_after_seconds(_response(429, {"Retry-After": header})) == seconds


@given(st.integers(min_value=100, max_value=599))
def test_every_status_is_a_success_a_retry_or_a_failure(status: int) -> None:
    delivery = classify(_response(status))
    if 200 <= status < 300:
        assert delivery is None
    else:
        assert delivery is not None
        expected = "retry" if status in (408, 429) or status >= 500 else "failed"
        assert delivery.result == expected


# -- backoff ------------------------------------------------------------------------------


def test_the_first_retry_waits_the_base_and_later_ones_grow_up_to_the_cap() -> None:
    rng = random.Random(20260301)
    assert backoff(1, 2.0, 300.0, rng) == 2.0
    assert backoff(0, 2.0, 300.0, rng) == 2.0
    means = [sum(backoff(n, 2.0, 300.0, rng) for _ in range(400)) / 400 for n in range(1, 11)]
    assert all(later > earlier for earlier, later in itertools.pairwise(means[:9]))
    # Past the cap (2·2^7 = 256 < 300 < 512) the delays stop growing: uniform in [2, 300].
    assert 120 < means[-1] < 180
    assert max(backoff(50, 2.0, 300.0, rng) for _ in range(400)) <= 300.0


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [backoff(n, 1.0, 60.0, random.Random(7)) for n in range(1, 12)]
    again = [backoff(n, 1.0, 60.0, random.Random(7)) for n in range(1, 12)]
    assert first == again


@given(
    st.integers(min_value=0, max_value=100),
    st.floats(min_value=0.01, max_value=3600),
    st.floats(min_value=0.01, max_value=86_400),
    st.integers(min_value=0, max_value=2**32),
)
def test_a_delay_is_within_the_base_and_the_capped_exponential(
    attempts: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff(attempts, base, cap, random.Random(seed))
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    assert min(base, cap) <= delay <= ceiling


# -- whether a score is worth writing ------------------------------------------------------


def test_the_first_score_is_written() -> None:
    assert moved(WriteBack(), 50.0, "warm", None, None)


def test_another_class_is_written_however_little_the_score_moved() -> None:
    assert moved(WriteBack(threshold_points=50), 70.1, "hot", 69.9, "warm")


def test_within_a_class_a_score_is_written_once_it_moved_by_the_threshold() -> None:
    write_back = WriteBack(threshold_points=5)
    assert not moved(write_back, 54.9, "warm", 50.0, "warm")
    assert moved(write_back, 55.0, "warm", 50.0, "warm")
    assert moved(write_back, 45.0, "warm", 50.0, "warm")
    assert not moved(write_back, 46.0, "warm", 50.0, "warm")
    assert moved(WriteBack(threshold_points=0), 50.0, "warm", 50.0, "warm")


def test_a_disabled_write_back_writes_nothing() -> None:
    off = WriteBack(enabled=False)
    assert not moved(off, 50.0, "warm", None, None)
    assert not moved(off, 90.0, "hot", 10.0, "cold")


# -- lead ids -----------------------------------------------------------------------------


def test_a_contact_id_becomes_a_prefixed_lead_id() -> None:
    assert lead_id_for("ghl", "nmFmQEsNgz6AVpgLVUJ0") == "ghl-nmFmQEsNgz6AVpgLVUJ0"
    assert lead_id_for("fub", "12345") == "fub-12345"
    assert lead_id_for("", "my-lead_1") == "my-lead_1"


def test_unsafe_characters_become_underscores_and_long_ids_are_cut() -> None:
    assert lead_id_for("ghl", "a b/c@d.é\n") == "ghl-a_b_c_d___"
    long = lead_id_for("ghl", "x" * 300)
    assert long == "ghl-" + "x" * 96
    assert len(long) == 100


@given(st.sampled_from(["ghl", "fub", ""]), st.text(min_size=1, max_size=300))
def test_a_lead_id_is_always_a_valid_lead_id_and_stable(prefix: str, contact_id: str) -> None:
    lead_id = lead_id_for(prefix, contact_id)
    assert LEAD_ID.fullmatch(lead_id), lead_id
    assert lead_id_for(prefix, contact_id) == lead_id


# -- custom fields into lead fields -------------------------------------------------------

MAPPING = {
    "PreApproved": "pre_approved", "FirstTime": "first_time_buyer", "Timeline": "timeline",
    "Areas": "location_preference", "Pets": "attributes.pets", "Beds": "attributes.beds",
    "Extra": "attributes.extra", "Empty": "attributes.empty", "tag:pre-approved": "pre_approved",
    "tag:first-time": "first_time_buyer",
}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", True), (" Yes ", True), ("TRUE", True), ("pre-approved", True), ("1", True),
     ("no", False), ("N", False), ("off", False), ("", None), ("   ", None),
     ("maybe", "maybe"), (True, True), (0, 0)],
)  # fmt: skip
def test_a_text_custom_field_is_coerced_for_a_yes_no_field(value: Any, expected: Any) -> None:
    data: dict[str, Any] = {}
    change = ContactData("c1", custom={"PreApproved": value})
    assert map_contact(data, change, MAPPING) == {"pre_approved"}
    assert data["pre_approved"] == expected


def test_text_fields_keep_yes_and_no_and_empty_text_is_none() -> None:
    data: dict[str, Any] = {}
    change = ContactData("c1", custom={"Timeline": "yes", "Areas": ["Austin", "Round Rock"]})
    map_contact(data, change, MAPPING)
    assert data["timeline"] == "yes"
    assert data["location_preference"] == "Austin, Round Rock"
    map_contact(data, ContactData("c1", custom={"Timeline": ""}), MAPPING)
    assert data["timeline"] is None


def test_attribute_targets_keep_scalars_and_stringify_the_rest() -> None:
    data: dict[str, Any] = {"attributes": {"kept": "before"}}
    change = ContactData(
        "c1", custom={"Pets": "dog", "Beds": 3, "Extra": {"a": 1}, "Empty": None, "Other": "x"}
    )
    touched = map_contact(data, change, MAPPING)
    assert data["attributes"] == {"kept": "before", "pets": "dog", "beds": 3,
                                  "extra": "{'a': 1}", "empty": None}  # fmt: skip
    assert touched == set()  # attributes are free-form: nothing to drop if invalid


def test_a_tag_mapping_sets_its_field_only_when_the_contact_has_the_tag() -> None:
    data: dict[str, Any] = {}
    touched = map_contact(data, ContactData("c1", tags=("buyer", "pre-approved")), MAPPING)
    assert touched == {"pre_approved"}
    assert data == {"pre_approved": True}
    untagged: dict[str, Any] = {"first_time_buyer": False}
    assert map_contact(untagged, ContactData("c1", tags=None), MAPPING) == set()
    assert untagged == {"first_time_buyer": False}  # no tags in the event: nothing said


def test_the_contacts_own_fields_are_merged_and_reported() -> None:
    data: dict[str, Any] = {"name": "Old", "timeline": "asap"}
    change = ContactData("c1", fields={"name": "New Name", "email": "n@example.com"})
    assert map_contact(data, change, {}) == {"name", "email"}
    assert data == {"name": "New Name", "email": "n@example.com", "timeline": "asap"}


def test_a_reply_is_timed_from_the_conversations_last_outbound_message() -> None:
    sent = NOW - timedelta(hours=2)
    state = {"conversations": {"conv1": sent.isoformat()}}

    def reply(at: datetime, conversation: str | None = "conv1") -> MessageSeen:
        return MessageSeen("c1", "inbound", at, conversation, "sms", "ok")

    assert _reply_hours(state, reply(sent + timedelta(minutes=90))) == 1.5
    assert _reply_hours(state, reply(sent - timedelta(minutes=1))) is None
    assert _reply_hours(state, reply(NOW, "conv2")) is None
    assert _reply_hours(state, reply(NOW, None)) is None
    assert _reply_hours({}, reply(NOW)) is None


def test_an_invalid_crm_field_is_dropped_with_a_note_and_the_lead_kept() -> None:
    notes: list[str] = []
    data = {"name": "Ann", "pre_approved": "maybe"}
    lead = _validated("ghl-c1", data, {"name", "pre_approved"}, notes)
    assert lead.lead_data.pre_approved is None
    assert lead.lead_data.name == "Ann"
    assert notes == ["ghl-c1: pre_approved='maybe' is not valid; ignored"]


def test_invalid_data_the_crm_did_not_set_makes_the_contact_invalid() -> None:
    with pytest.raises(ContactInvalidError):
        _validated("ghl-c1", {"pre_approved": "maybe"}, set(), [])


# -- GoHighLevel's own rate limit ---------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "pause"),
    [({"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "10000"}, 10.0),
     ({"X-RateLimit-Remaining": " 0 ", "X-RateLimit-Interval-Milliseconds": "2500"}, 2.5),
     ({"X-RateLimit-Remaining": "0"}, gohighlevel.WINDOW_SECONDS),
     ({"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "soon"},
      gohighlevel.WINDOW_SECONDS),
     ({"X-RateLimit-Remaining": "3", "X-RateLimit-Interval-Milliseconds": "10000"}, None),
     ({"X-RateLimit-Remaining": "3", "X-RateLimit-Daily-Remaining": "0"}, 3600.0),
     ({"X-RateLimit-Daily-Remaining": "199000"}, None),
     ({}, None)],
)  # fmt: skip
def test_no_request_left_pauses_for_the_window_or_the_day(
    headers: dict[str, str], pause: float | None
) -> None:
    assert gohighlevel._pause(_response(200, headers)) == pause
