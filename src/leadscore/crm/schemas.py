"""Request and response shapes of the CRM routes: connections, the inbox and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from leadscore.engine.schema import LeadData

Provider = Literal["gohighlevel", "followupboss", "webhook"]
#: Where each provider's API answers unless a connection says otherwise.
DEFAULT_API_BASE: dict[str, str | None] = {
    "gohighlevel": "https://services.leadconnectorhq.com",
    "followupboss": "https://api.followupboss.com",
    "webhook": None,  # a generic connection writes back only when given a URL
}
#: The credentials each provider's write-back needs.
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "gohighlevel": ("token",),
    "followupboss": ("api_key", "system", "system_key"),
    "webhook": (),
}
#: Lead fields a CRM custom field may fill (the rest of a lead comes from the contact itself).
MAPPABLE_FIELDS: frozenset[str] = frozenset(
    name
    for name, info in LeadData.model_fields.items()
    if name not in {"interaction_history", "web_activity", "attributes"}
)
AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=500)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteBack(_Strict):
    """What a score writes to the contact: a custom field, one tag per class, the commission."""

    enabled: bool = True
    score_field: FieldName | None = Field(
        default=None, description="GoHighLevel: the custom field id; Follow Up Boss: its name."
    )
    class_tags: dict[Literal["hot", "warm", "cold"], FieldName] = Field(default_factory=dict)
    commission_field: FieldName | None = None
    threshold_points: float = Field(
        default=5.0, ge=0, le=100,
        description="Write back only when the class changes or the score moves this much.",
    )  # fmt: skip


class Options(_Strict):
    """Provider specifics."""

    signature: Literal["base64_body", "raw_body"] = Field(
        default="base64_body",
        description="Follow Up Boss: the HMAC covers base64(body) (its docs) or the raw body.",
    )


def _check_mapping(mapping: dict[str, str]) -> dict[str, str]:
    for source, target in mapping.items():
        name = target.removeprefix("attributes.")
        if target.startswith("attributes."):
            if not 1 <= len(name) <= 64:
                raise ValueError(f"field_mapping[{source!r}]: an attribute name is 1-64 chars")
        elif target not in MAPPABLE_FIELDS:
            raise ValueError(
                f"field_mapping[{source!r}] = {target!r}: not a lead field; use one of "
                f"{sorted(MAPPABLE_FIELDS)} or attributes.<name>"
            )
    return mapping


def check_credentials(provider: str, credentials: dict[str, str] | None) -> None:
    """Exactly the credentials this provider's write-back takes (none for a generic webhook)."""
    needed = CREDENTIALS[provider]
    given = sorted(credentials or {})
    if set(needed) != set(given):
        raise ValueError(
            f"credentials for {provider} are {list(needed) or 'none'}; got {given or 'none'}"
        )


class ConnectionIn(_Strict):
    """POST /crm/connections body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "provider": "gohighlevel",
                    "account_id": "ve9EPM428h8vShlRW1KT",
                    "credentials": {"token": "pit-…"},
                    "write_back": {
                        "score_field": "BcdmQEsNgz6AVpgLVUJ0",
                        "class_tags": {"hot": "lead-hot", "warm": "lead-warm", "cold": "lead-cold"},
                        "threshold_points": 5,
                    },
                    "field_mapping": {"Kq3lTimeline0": "timeline", "Kq3lPreAppr0": "pre_approved"},
                }
            ]
        },
    )

    provider: Provider
    account_id: AccountId | None = Field(
        default=None,
        validate_default=True,
        description="GoHighLevel: the locationId; Follow Up Boss: the account; generic "
        "webhook: optional (one is made up).",
    )
    name: Annotated[str, StringConstraints(max_length=100)] | None = None
    credentials: dict[str, Secret] | None = Field(
        default=None,
        validate_default=True,
        description="GoHighLevel: token; Follow Up Boss: api_key, system, system_key. "
        "Encrypted at rest, never returned.",
    )
    api_base: Url | None = None
    write_back: WriteBack = Field(default_factory=WriteBack)
    field_mapping: dict[FieldName, FieldName] = Field(default_factory=dict, max_length=200)
    options: Options = Field(default_factory=Options)

    @field_validator("account_id")
    @classmethod
    def _account_for_provider(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A CRM's webhooks are told apart by account: only a generic webhook may omit it."""
        provider = info.data.get("provider")
        if value is None and provider not in (None, "webhook"):
            raise ValueError(f"account_id is required for {provider}")
        return value

    @field_validator("credentials")
    @classmethod
    def _credentials_for_provider(
        cls, value: dict[str, str] | None, info: ValidationInfo
    ) -> dict[str, str] | None:
        """Each provider gets exactly the credentials its API takes (the error names them)."""
        provider = info.data.get("provider")
        if provider is not None:
            check_credentials(provider, value)
        return value

    @field_validator("field_mapping")
    @classmethod
    def _mapping(cls, value: dict[str, str]) -> dict[str, str]:
        """Custom fields map to lead fields or attributes only."""
        return _check_mapping(value)


class ConnectionPatch(_Strict):
    """PATCH /crm/connections/{id} body: what is given replaces what was set."""

    name: Annotated[str, StringConstraints(max_length=100)] | None = None
    credentials: dict[str, Secret] | None = None
    api_base: Url | None = None
    write_back: WriteBack | None = None
    field_mapping: dict[FieldName, FieldName] | None = Field(default=None, max_length=200)
    options: Options | None = None

    @field_validator("field_mapping")
    @classmethod
    def _mapping(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """The same mapping rules as at creation."""
        return None if value is None else _check_mapping(value)


class ConnectionOut(BaseModel):
    """A connection as the API shows it: secrets never, only whether they are set."""

    id: int
    provider: Provider
    account_id: str
    name: str | None
    api_base: str | None
    write_back: WriteBack
    field_mapping: dict[str, str]
    options: Options
    has_credentials: bool
    webhook_path: str = Field(description="Where the CRM posts its webhooks.")
    created_at: datetime
    updated_at: datetime


class ConnectionCreated(ConnectionOut):
    """The creation's answer: a generic webhook's signing secret, shown this once."""

    signing_secret: str | None = Field(
        default=None, description="Generic webhook only: sign bodies with it (shown once)."
    )


class WebhookAccepted(BaseModel):
    """A webhook's answer: stored (processed shortly), a repeat, or not a kind we use."""

    status: Literal["accepted", "duplicate", "ignored"]
    event_id: str


class InboxEntry(BaseModel):
    """A stored webhook and how its processing went."""

    id: int
    provider: str
    connection_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    error: str | None
    received_at: datetime
    processed_at: datetime | None


class OutboxEntry(BaseModel):
    """A write-back and how its delivery goes."""

    id: int
    connection_id: int
    contact_id: str
    lead_id: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
