"""Errors of the API as Python exceptions, one class per status (and code where it matters).

The server answers every error as `{"error": <code>, "detail": …}` with its status; the client
raises the class of that status, carrying the code, the detail and what a caller needs to react
(`retry_after`, the field errors of a 422).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class LeadScoreError(Exception):
    """Base of everything the client raises for an API error or an unreachable server."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.detail = detail


class APIConnectionError(LeadScoreError):
    """The server could not be reached (or did not answer in time), after every retry."""


class APIStatusError(LeadScoreError):
    """The server answered with an error status."""


class BadRequest(APIStatusError):  # noqa: N818 (the names callers expect)
    """400: the request could not be read."""


class Unauthorized(APIStatusError):  # noqa: N818 (the names callers expect)
    """401: no, invalid, revoked or expired credentials."""


class Forbidden(APIStatusError):  # noqa: N818 (the names callers expect)
    """403: the key's role may not do this."""


class NotFound(APIStatusError):  # noqa: N818 (the names callers expect)
    """404: nothing with that id for the caller's team."""


class Conflict(APIStatusError):  # noqa: N818 (the names callers expect)
    """409: it contradicts what is stored (an outcome recorded otherwise, a job running)."""


class PayloadTooLarge(APIStatusError):  # noqa: N818 (the names callers expect)
    """413: the body is over the server's limit."""


class ValidationFailed(APIStatusError):  # noqa: N818 (the names callers expect)
    """422: the input was refused; `errors` names each field to fix."""

    @property
    def errors(self) -> list[dict[str, str]]:
        """The field errors (`field`, `message`, `type`), or one entry for a whole-body refusal."""
        if isinstance(self.detail, list):
            return [dict(e) for e in self.detail if isinstance(e, Mapping)]
        return [{"field": "body", "message": str(self.detail), "type": self.code or ""}]


class RateLimited(APIStatusError):  # noqa: N818 (the names callers expect)
    """429: too many requests for this key; wait `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailable(APIStatusError):  # noqa: N818 (the names callers expect)
    """503: a dependency (database, model) is down; retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """Any other 5xx: a server bug (logged there); not retried."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds when the server gave a number (it always does)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_for(status: int, body: Any, headers: Mapping[str, str]) -> APIStatusError:
    """The exception for an error answer: class by status, code and detail from the body."""
    code = body.get("error") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else body
    message = f"{status} {code or 'error'}: {detail}"
    fields: dict[str, Any] = {"status_code": status, "code": code, "detail": detail}
    if status == 429:
        return RateLimited(message, retry_after=retry_after_seconds(headers), **fields)
    if status == 503:
        return ServiceUnavailable(message, retry_after=retry_after_seconds(headers), **fields)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIStatusError)
    return cls(message, **fields)
