"""`AsyncLeadScore`: the asyncio twin of `LeadScore`, the same methods awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from leadscore.client import _http
from leadscore.client._http import (
    API,
    BATCH_SIZE,
    Credentials,
    FileScores,
    Lead,
    RetryInfo,
    RetryPolicy,
)
from leadscore.client.errors import APIConnectionError, Unauthorized
from leadscore.client.live import LiveStream
from leadscore.client.models import (
    BatchResponse,
    Escalation,
    EscalationsPage,
    FileResult,
    HistoryEntry,
    HistoryResponse,
    LeadDetail,
    LeadItem,
    LeadsResponse,
    OutcomesResponse,
    ScoreResponse,
    StatsResponse,
    TokenResponse,
)

Progress = Callable[[int, int], None]


class AsyncLeadScore:
    """The async LeadScore API client: as `LeadScore`, on one `httpx.AsyncClient`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        token: str | None = None,
        use_tokens: bool = True,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        on_retry: Callable[[RetryInfo], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = Credentials(api_key, token, use_tokens)
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max, on_retry)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLeadScore:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """One request, retried on connection errors, 429 and 503 (after `Retry-After`)."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                if attempt >= self.retry.max_retries:
                    raise APIConnectionError(f"{method} {path}: {exc!r}") from exc
                wait, reason = self.retry.delay(attempt, None), type(exc).__name__
            else:
                error = _http.error_of(response)
                if error is None or not _http.retryable(error):
                    return response
                if attempt >= self.retry.max_retries:
                    return response
                wait = self.retry.delay(attempt, _http.retry_after(error))
                reason = f"{response.status_code} {error.code}"
            attempt += 1
            self.retry.notify(RetryInfo(method, path, attempt, wait, reason))
            await asyncio.sleep(wait)

    async def _renew(self) -> None:
        """Exchange the API key for a fresh token."""
        self.credentials.accept((await self.token()).model_dump())

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """An authenticated request's JSON; a refused token is renewed and the request sent
        once more, since tokens expire and keys do not."""
        renewed = False
        while True:
            if self.credentials.needs_token():
                await self._renew()
            headers = self.credentials.headers()
            if idempotency_key is not None:
                headers["Idempotency-Key"] = idempotency_key
            response = await self._send(method, path, headers, json, params)
            error = _http.error_of(response)
            if error is None:
                return response.json()
            if isinstance(error, Unauthorized) and self.credentials.renewable and not renewed:
                renewed = True
                self.credentials.forget()
                continue
            raise error

    # -- scoring ---------------------------------------------------------------------------

    async def token(self) -> TokenResponse:
        """Exchange the API key for a JWT now (the client does it by itself when needed)."""
        response = await self._send(
            "POST", f"{API}/auth/token", self.credentials.exchange_headers()
        )
        error = _http.error_of(response)
        if error is not None:
            raise error
        return TokenResponse.model_validate(response.json())

    async def score(
        self,
        lead: Lead,
        *,
        options: Mapping[str, bool] | None = None,
        idempotency_key: str | None = None,
    ) -> ScoreResponse:
        """Score one lead (`{"lead_id", "lead_data"}`); retries reuse one idempotency key."""
        body = _http.score_body(lead, options)
        key = idempotency_key or _http.new_idempotency_key()
        answer = await self._request("POST", f"{API}/ml/score", json=body, idempotency_key=key)
        return ScoreResponse.model_validate(answer)

    async def score_batch(
        self,
        leads: Sequence[Lead],
        *,
        options: Mapping[str, bool] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResponse:
        """Score up to 100 leads; results in input order, an invalid lead fails alone."""
        body = _http.batch_body(leads, options)
        key = idempotency_key or _http.new_idempotency_key()
        answer = await self._request(
            "POST", f"{API}/ml/batch-score", json=body, idempotency_key=key
        )
        return BatchResponse.model_validate(answer)

    async def score_file(
        self,
        path: str | Path,
        *,
        batch_size: int = BATCH_SIZE,
        options: Mapping[str, bool] | None = None,
        progress: Progress | None = None,
    ) -> FileResult:
        """Score a CSV or JSON Lines file of leads in batches; `progress(done, total)` after
        each batch."""
        if not 1 <= batch_size <= BATCH_SIZE:
            raise ValueError(f"batch_size must be 1-{BATCH_SIZE}")
        leads = _http.read_leads(Path(path))
        gathered = FileScores(len(leads))
        for offset, chunk in _http.chunks(leads, batch_size):
            batch = await self.score_batch(chunk, options=options)
            gathered.add(offset, batch.model_dump(mode="json"))
            if progress is not None:
                progress(offset + len(chunk), len(leads))
        return FileResult.model_validate(gathered.as_json())

    async def latest(self, lead_id: str) -> ScoreResponse:
        """The lead's latest score."""
        return ScoreResponse.model_validate(await self._request("GET", f"{API}/ml/score/{lead_id}"))

    async def history_page(
        self, lead_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> HistoryResponse:
        """One page (up to 1,000) of the lead's scores, newest first."""
        params = _http.list_params({"cursor": cursor}, limit)
        answer = await self._request("GET", f"{API}/ml/score/{lead_id}/history", params=params)
        return HistoryResponse.model_validate(answer)

    async def history(self, lead_id: str, *, page_size: int = 100) -> AsyncIterator[HistoryEntry]:
        """Every score of the lead, newest first, each with why it moved, page after page."""
        cursor: str | None = None
        while True:
            page = await self.history_page(lead_id, cursor=cursor, limit=page_size)
            for entry in page.scores:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def lead(self, lead_id: str, *, history_limit: int = 50) -> LeadDetail:
        """The lead's latest data, its latest score and its history."""
        answer = await self._request(
            "GET", f"{API}/ml/leads/{lead_id}", params={"history_limit": history_limit}
        )
        return LeadDetail.model_validate(answer)

    async def leads_page(
        self, *, cursor: str | None = None, page_size: int = 50, **filters: Any
    ) -> LeadsResponse:
        """One page of the team's leads (`classification`, `qualification`, `min_score`,
        `source`, `scored_since`, `q`, `sort`)."""
        params = _http.list_params({**filters, "cursor": cursor}, page_size)
        return LeadsResponse.model_validate(
            await self._request("GET", f"{API}/ml/leads", params=params)
        )

    async def leads(self, *, page_size: int = 50, **filters: Any) -> AsyncIterator[LeadItem]:
        """Every lead that matches, page after page (keyset cursors: no lead twice)."""
        cursor: str | None = None
        while True:
            page = await self.leads_page(cursor=cursor, page_size=page_size, **filters)
            for item in page.leads:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def escalations(
        self, status: str | None = None, *, page_size: int = 50
    ) -> AsyncIterator[Escalation]:
        """The qualification queue (default: open and claimed), oldest first, every page."""
        cursor: str | None = None
        while True:
            params = _http.list_params({"status": status, "cursor": cursor}, page_size)
            answer = await self._request("GET", f"{API}/ml/escalations", params=params)
            page = EscalationsPage.model_validate(answer)
            for escalation in page.escalations:
                yield escalation
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def record_outcomes(
        self,
        outcomes: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> OutcomesResponse:
        """Record what happened to scored leads (one or up to 1,000): all or nothing."""
        body = dict(outcomes) if isinstance(outcomes, Mapping) else [dict(o) for o in outcomes]
        key = idempotency_key or _http.new_idempotency_key()
        answer = await self._request("POST", f"{API}/ml/outcomes", json=body, idempotency_key=key)
        return OutcomesResponse.model_validate(answer)

    async def stats(self) -> StatsResponse:
        """The team's figures over the last 24 hours."""
        return StatsResponse.model_validate(await self._request("GET", f"{API}/ml/stats"))

    def live(
        self,
        events: Sequence[str] | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        control: bool = False,
    ) -> LiveStream:
        """Live events as an async iterator; it reconnects with back-off and subscribes again
        whenever the server goes away."""
        return LiveStream(self.base_url, self.credentials, self.retry, events, filters, control)
