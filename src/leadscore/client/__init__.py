"""The LeadScore Python client: `LeadScore` (blocking) and `AsyncLeadScore` (asyncio).

Light on purpose: httpx, pydantic and websockets only, and the API's own pure-pydantic wire
models; none of the server's numeric stack (a test checks it in a fresh interpreter).
"""

from leadscore.client._http import RetryInfo
from leadscore.client.async_ import AsyncLeadScore
from leadscore.client.errors import (
    APIConnectionError,
    APIStatusError,
    BadRequest,
    Conflict,
    Forbidden,
    LeadScoreError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from leadscore.client.live import LiveStream
from leadscore.client.models import (
    BatchResponse,
    Escalation,
    FileResult,
    HistoryResponse,
    LeadDetail,
    LeadItem,
    LiveEvent,
    OutcomesResponse,
    ScoreResponse,
)
from leadscore.client.sync import LeadScore

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "AsyncLeadScore",
    "BadRequest",
    "BatchResponse",
    "Conflict",
    "Escalation",
    "FileResult",
    "Forbidden",
    "HistoryResponse",
    "LeadDetail",
    "LeadItem",
    "LeadScore",
    "LeadScoreError",
    "LiveEvent",
    "LiveStream",
    "NotFound",
    "OutcomesResponse",
    "PayloadTooLarge",
    "RateLimited",
    "RetryInfo",
    "ScoreResponse",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
]
