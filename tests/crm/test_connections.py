"""CRM connections over HTTP on a real server, SQLite + memory and PostgreSQL + Redis: each
provider, secrets sealed at rest and never shown, admins of the team only, key rotation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from sqlalchemy import text

from leadscore.core.db import create_engine
from leadscore.crm.connections import Connection
from leadscore.crm.secrets import SecretUnreadableError, new_key

from ..api.conftest import Deployment, ServerThread, deploy

CONNECTIONS = "/api/v1/crm/connections"


@pytest.fixture(scope="module", params=["sqlite-memory", "postgres-redis"])
def crm_deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Deployment:
    """Each backend pair, freshly migrated, with keys of teams acme and globex (no secret key)."""
    return deploy(request.param, tmp_path_factory.mktemp(f"crm-{request.param}"), model_dir)


@pytest.fixture(scope="module")
def secret_key() -> str:
    """The key the module's server seals CRM secrets with."""
    return new_key()


@pytest.fixture(scope="module")
def crm_server(crm_deployment: Deployment, secret_key: str) -> Iterator[ServerThread]:
    """A server of that deployment with LEADSCORE_SECRET_KEY set."""
    running = crm_deployment.start(secret_key=SecretStr(secret_key))
    yield running
    running.stop()


class Api:
    """An HTTP client that keeps every response body, to search them all for secrets."""

    def __init__(self, base_url: str, keys: dict[str, str]) -> None:
        self.keys = keys
        self.bodies: list[bytes] = []
        self.http = httpx.Client(
            base_url=base_url, timeout=30, event_hooks={"response": [self._keep]}
        )

    def _keep(self, response: httpx.Response) -> None:
        self.bodies.append(response.read())

    def request(self, method: str, path: str, who: str | None = "acme-admin",
                **kwargs: Any) -> httpx.Response:  # fmt: skip
        headers = {} if who is None else {"X-API-Key": self.keys[who]}
        return self.http.request(method, path, headers=headers, **kwargs)

    def create(self, body: dict[str, Any], who: str = "acme-admin") -> httpx.Response:
        return self.request("POST", CONNECTIONS, who, json=body)

    def assert_never_shown(self, *secrets: str) -> None:
        """None of these texts is in any body this client received."""
        assert self.bodies
        for body in self.bodies:
            for secret in secrets:
                assert secret.encode() not in body, f"{secret!r} was in a response"

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def api(crm_server: ServerThread, crm_deployment: Deployment) -> Iterator[Api]:
    client = Api(crm_server.url, crm_deployment.keys)
    yield client
    client.close()


def unique(prefix: str) -> str:
    """A text no other test (or earlier run on the same database) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def gohighlevel(token: str, **changes: Any) -> dict[str, Any]:
    """A GoHighLevel connection body (a location of its own) with this token."""
    return {
        "provider": "gohighlevel",
        "account_id": unique("loc"),
        "name": "Main location",
        "credentials": {"token": token},
        "api_base": "http://127.0.0.1:9/ghl",
        "write_back": {
            "score_field": "BcdmQEsNgz6AVpgLVUJ0",
            "class_tags": {"hot": "lead-hot", "warm": "lead-warm", "cold": "lead-cold"},
            "threshold_points": 7,
        },
        "field_mapping": {"Kq3lTimeline0": "timeline", "Kq3lSource0": "attributes.source"},
    } | changes


def followupboss(api_key: str, system_key: str, **changes: Any) -> dict[str, Any]:
    """A Follow Up Boss connection body with these secrets."""
    return {
        "provider": "followupboss",
        "account_id": unique("fub"),
        "credentials": {"api_key": api_key, "system": "LeadScore", "system_key": system_key},
    } | changes


async def _stored(url: str, connection_id: int) -> dict[str, Any] | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text("SELECT * FROM crm_connections WHERE id = :id"), {"id": connection_id}
            )
            row = result.mappings().first()
            return None if row is None else dict(row)
    finally:
        await engine.dispose()


def stored(deployment: Deployment, connection_id: int) -> dict[str, Any] | None:
    """The crm_connections row as the database holds it."""
    return asyncio.run(_stored(deployment.settings.resolved_database_url, connection_id))


async def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT count(*) FROM crm_connections"))
            return int(result.scalar_one())
    finally:
        await engine.dispose()


def count(deployment: Deployment) -> int:
    """How many connections the database holds (every team's)."""
    return asyncio.run(_count(deployment.settings.resolved_database_url))


def opened(key: str, token: bytes) -> dict[str, Any]:
    """A sealed column opened with this key alone."""
    value: dict[str, Any] = orjson.loads(Fernet(key.encode()).decrypt(bytes(token)))
    return value


def test_each_provider_is_created_and_shown_without_its_secrets(
    api: Api, crm_deployment: Deployment, secret_key: str
) -> None:
    token, api_key, system_key = unique("pit"), unique("fubkey"), unique("fubsys")
    before = datetime.now(UTC)

    made = api.create(gohighlevel(token))
    assert made.status_code == 201, made.text
    ghl = made.json()
    assert ghl["provider"] == "gohighlevel"
    assert ghl["api_base"] == "http://127.0.0.1:9/ghl"
    assert ghl["has_credentials"] is True
    assert ghl["signing_secret"] is None
    assert ghl["write_back"]["threshold_points"] == 7
    assert ghl["write_back"]["class_tags"]["hot"] == "lead-hot"
    assert ghl["field_mapping"] == {"Kq3lTimeline0": "timeline",
                                    "Kq3lSource0": "attributes.source"}  # fmt: skip
    assert ghl["webhook_path"] == "/api/v1/crm/gohighlevel/webhook"
    assert before <= datetime.fromisoformat(ghl["created_at"]) <= datetime.now(UTC)

    made = api.create(followupboss(api_key, system_key))
    assert made.status_code == 201, made.text
    fub = made.json()
    assert (fub["provider"], fub["has_credentials"]) == ("followupboss", True)
    assert fub["api_base"] == "https://api.followupboss.com"  # the provider's default
    assert fub["webhook_path"] == "/api/v1/crm/followupboss/webhook"

    made = api.create({"provider": "webhook", "name": "Zapier"})
    assert made.status_code == 201, made.text
    hook = made.json()
    signing = hook["signing_secret"]
    assert isinstance(signing, str)
    assert len(signing) >= 32
    assert hook["has_credentials"] is False
    assert hook["account_id"]  # made up when not given
    assert hook["webhook_path"] == f"/api/v1/crm/webhook/{hook['id']}"

    listed = api.request("GET", CONNECTIONS)
    assert listed.status_code == 200
    ids = [c["id"] for c in listed.json()]
    assert {ghl["id"], fub["id"], hook["id"]} <= set(ids)
    assert ids == sorted(ids)
    for connection in (ghl, fub, hook):
        got = api.request("GET", f"{CONNECTIONS}/{connection['id']}")
        assert got.status_code == 200
        shown = got.json()
        assert "signing_secret" not in shown
        assert "credentials" not in shown
        assert shown == {k: v for k, v in connection.items() if k != "signing_secret"}

    # The generic webhook's secret was in its creation's answer only.
    assert sum(signing.encode() in body for body in api.bodies) == 1
    api.assert_never_shown(token, api_key, system_key)

    # Sealed at rest: the texts are not in the row, and the row opens with the key.
    for connection, expected in ((ghl, {"token": token}),
                                 (fub, {"api_key": api_key, "system": "LeadScore",
                                        "system_key": system_key})):  # fmt: skip
        row = stored(crm_deployment, connection["id"])
        assert row is not None
        raw = bytes(row["credentials"])
        for secret in expected.values():
            assert secret.encode() not in raw
        assert opened(secret_key, raw) == expected
        assert row["signing_secret"] is None
    row = stored(crm_deployment, hook["id"])
    assert row is not None
    assert row["credentials"] is None
    assert signing.encode() not in bytes(row["signing_secret"])
    assert opened(secret_key, row["signing_secret"]) == {"secret": signing}


def test_patch_replaces_what_it_gives_and_delete_disconnects(
    api: Api, crm_server: ServerThread, crm_deployment: Deployment, secret_key: str
) -> None:
    first, second = unique("pit"), unique("pit")
    created = api.create(gohighlevel(first)).json()
    path = f"{CONNECTIONS}/{created['id']}"

    changed = api.request("PATCH", path, json={
        "credentials": {"token": second}, "name": "Renamed",
        "write_back": {"score_field": "OtherField", "threshold_points": 2},
        "field_mapping": {"Kq3lPreAppr0": "pre_approved"},
    })  # fmt: skip
    assert changed.status_code == 200, changed.text
    patched = changed.json()
    assert patched["name"] == "Renamed"
    assert patched["write_back"]["score_field"] == "OtherField"
    assert patched["write_back"]["class_tags"] == {}  # a new write_back replaces the old one
    assert patched["field_mapping"] == {"Kq3lPreAppr0": "pre_approved"}
    assert patched["api_base"] == created["api_base"]  # not given: kept
    assert patched["updated_at"] > created["updated_at"]
    assert patched["created_at"] == created["created_at"]
    row = stored(crm_deployment, created["id"])
    assert row is not None
    assert opened(secret_key, row["credentials"]) == {"token": second}
    # The server's own reader sees the new token at once (the change forgot its cache).
    connection: Connection = crm_server.call(
        crm_server.services.crm.connections.by_id(created["id"])
    )
    assert connection.credentials == {"token": second}
    assert api.request("GET", path).json() == patched

    wrong = api.request("PATCH", path, json={"credentials": {"api_key": "x"}})
    assert wrong.status_code == 422
    assert "token" in wrong.json()["detail"]
    bad_map = api.request("PATCH", path, json={"field_mapping": {"X": "favourite_colour"}})
    assert bad_map.status_code == 422
    assert bad_map.json()["detail"][0]["field"] == "field_mapping"
    bad_base = api.request("PATCH", path, json={"api_base": "ftp://example.com"})
    assert bad_base.status_code == 422
    assert bad_base.json()["detail"][0]["field"] == "api_base"
    assert api.request("GET", path).json() == patched  # refused patches changed nothing

    assert api.request("DELETE", path).status_code == 204
    assert api.request("GET", path).status_code == 404
    assert api.request("DELETE", path).status_code == 404
    assert created["id"] not in [c["id"] for c in api.request("GET", CONNECTIONS).json()]
    assert stored(crm_deployment, created["id"]) is None
    api.assert_never_shown(first, second)


def test_only_the_teams_admins_reach_its_connections(api: Api) -> None:
    token = unique("pit")
    created = api.create(gohighlevel(token)).json()
    path = f"{CONNECTIONS}/{created['id']}"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", CONNECTIONS, {"json": gohighlevel(unique("pit"))}),
        ("GET", CONNECTIONS, {}),
        ("GET", path, {}),
        ("PATCH", path, {"json": {"name": "taken over"}}),
        ("DELETE", path, {}),
    ]
    for method, url, kwargs in calls:
        for who in ("acme-agent", "acme-viewer"):
            answer = api.request(method, url, who, **kwargs)
            assert answer.status_code == 403, (method, url, who, answer.text)
            assert answer.json()["error"] == "forbidden"
        anonymous = api.request(method, url, None, **kwargs)
        assert anonymous.status_code == 401, (method, url, anonymous.text)
    for method, url, kwargs in calls[2:]:
        other = api.request(method, url, "globex-admin", **kwargs)
        assert other.status_code == 404, (method, url, other.text)
    globex = [c["id"] for c in api.request("GET", CONNECTIONS, "globex-admin").json()]
    assert created["id"] not in globex
    shown = api.request("GET", path).json()
    assert shown == {k: v for k, v in created.items() if k != "signing_secret"}  # untouched
    api.assert_never_shown(token)


def test_an_account_is_connected_once(api: Api, crm_deployment: Deployment) -> None:
    body = gohighlevel(unique("pit"))
    assert api.create(body).status_code == 201
    before = count(crm_deployment)
    for who in ("acme-admin", "globex-admin"):  # the same location, even for another team
        again = api.create(body | {"credentials": {"token": unique("pit")}}, who)
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "conflict"
        assert body["account_id"] in again.json()["detail"]
    assert count(crm_deployment) == before
    # The same account id of another provider is another account.
    other = api.create(followupboss("k", "s", account_id=body["account_id"]))
    assert other.status_code == 201, other.text


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"provider": "gohighlevel", "account_id": "loc1", "credentials": {"api_key": "k"}},
         "credentials", "token"),
        ({"provider": "gohighlevel", "account_id": "loc1"}, "credentials", "token"),
        ({"provider": "followupboss", "account_id": "a1",
          "credentials": {"api_key": "k", "system": "LeadScore"}}, "credentials", "system_key"),
        ({"provider": "webhook", "credentials": {"token": "t"}}, "credentials", "none"),
        ({"provider": "gohighlevel", "credentials": {"token": "t"}}, "account_id", "required"),
        ({"provider": "gohighlevel", "account_id": "loc1", "credentials": {"token": "t"},
          "field_mapping": {"Kq3l": "favourite_colour"}}, "field_mapping", "favourite_colour"),
        ({"provider": "gohighlevel", "account_id": "loc1", "credentials": {"token": "t"},
          "field_mapping": {"Kq3l": "attributes."}}, "field_mapping", "attribute"),
        ({"provider": "gohighlevel", "account_id": "loc1", "credentials": {"token": "t"},
          "api_base": "ftp://example.com"}, "api_base", "pattern"),
        ({"provider": "gohighlevel", "account_id": "loc1", "credentials": {"token": "t"},
          "api_base": "not a url"}, "api_base", "pattern"),
        ({"provider": "gohighlevel", "account_id": "loc 1", "credentials": {"token": "t"}},
         "account_id", "pattern"),
        ({"provider": "salesforce", "account_id": "a"}, "provider", "gohighlevel"),
    ],
)  # fmt: skip
def test_bad_bodies_answer_422_naming_the_field(
    api: Api, crm_deployment: Deployment, body: dict[str, Any], field: str, words: str
) -> None:
    before = count(crm_deployment)
    answer = api.create(body)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["detail"]
    assert answer.json()["error"] == "validation_error"
    assert [p["field"] for p in problems] == [field], problems
    assert words in problems[0]["message"], problems
    assert count(crm_deployment) == before


def test_without_a_secret_key_nothing_secret_is_stored(
    api: Api, crm_deployment: Deployment
) -> None:
    keyless = crm_deployment.start()  # LEADSCORE_SECRET_KEY unset, not the demo
    try:
        client = Api(keyless.url, crm_deployment.keys)
        before = count(crm_deployment)
        for body in (gohighlevel(unique("pit")), followupboss("k", "s"),
                     {"provider": "webhook"}):  # fmt: skip
            answer = client.create(body)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "secret_key_missing"
            assert "LEADSCORE_SECRET_KEY" in answer.json()["detail"]
        assert count(crm_deployment) == before
        # What needs no key still works.
        assert client.request("GET", CONNECTIONS).status_code == 200
        client.close()
    finally:
        keyless.stop()


def test_a_rotated_key_list_still_opens_old_secrets(
    api: Api, crm_deployment: Deployment, secret_key: str
) -> None:
    old_token = unique("pit")
    old = api.create(gohighlevel(old_token)).json()
    newer = new_key()
    rotated = crm_deployment.start(secret_key=SecretStr(f"{newer},{secret_key}"))
    try:
        connections = rotated.services.crm.connections
        reopened: Connection = rotated.call(connections.by_id(old["id"]))
        assert reopened.credentials == {"token": old_token}
        client = Api(rotated.url, crm_deployment.keys)
        new_token = unique("pit")
        made = client.create(gohighlevel(new_token))
        assert made.status_code == 201, made.text
        client.assert_never_shown(new_token)
        client.close()
        row = stored(crm_deployment, made.json()["id"])
        assert row is not None
        assert opened(newer, row["credentials"]) == {"token": new_token}  # the first key seals
        with pytest.raises(InvalidToken):
            opened(secret_key, row["credentials"])
    finally:
        rotated.stop()
    forgotten = crm_deployment.start(secret_key=SecretStr(newer))  # the old key dropped
    try:
        with pytest.raises(SecretUnreadableError):
            forgotten.call(forgotten.services.crm.connections.by_id(old["id"]))
    finally:
        forgotten.stop()
