"""The app factory: the lifespan builds every client once per worker and closes it on exit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TypeVar

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore import __version__
from leadscore.auth import routes as auth_routes
from leadscore.auth.principal import Principal
from leadscore.auth.service import Authenticator, TeamAdmin
from leadscore.core.access import AccessLog
from leadscore.core.bus import create_bus
from leadscore.core.cache import Cache, create_cache
from leadscore.core.config import ServiceSettings
from leadscore.core.db import (
    CONNECTION_ERRORS,
    SqliteThread,
    create_engine,
    is_connection_error,
    is_sqlite,
    session_factory,
    transaction,
)
from leadscore.core.errors import (
    DATABASE_DOWN,
    ConfigurationError,
    DatabaseUnavailableError,
    LeadScoreError,
)
from leadscore.core.idempotency import IdempotencyStore
from leadscore.core.lifecycle import Pump
from leadscore.core.logs import DependencyLog, configure_logging
from leadscore.core.metrics import Metrics, backlog_families, model_info_family
from leadscore.core.ratelimit import RateLimiter, create_rate_limiter
from leadscore.core.schemas import validation_detail
from leadscore.core.uploads import UploadSweeper
from leadscore.core.writer import ScoreWriter
from leadscore.crm import routes as crm_routes
from leadscore.crm.connections import ConnectionService
from leadscore.crm.inbox import InboxWorker, WebhookReceiver
from leadscore.crm.outbox import OutboxHook, OutboxSender
from leadscore.crm.providers import gohighlevel
from leadscore.crm.providers.base import Provider
from leadscore.crm.providers.followupboss import FollowUpBoss
from leadscore.crm.providers.gohighlevel import GoHighLevel
from leadscore.crm.providers.webhook import GenericWebhook
from leadscore.crm.secrets import box_for
from leadscore.crm.service import CrmService
from leadscore.crm.store import WebhookStore
from leadscore.crm.sync import CrmSync
from leadscore.dashboard import routes as dashboard_routes
from leadscore.deps import SECURITY_SCHEMES, WEBHOOK_SCHEMES, Services
from leadscore.engine.defaults import default_model_dir, load_or_build_default
from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer
from leadscore.live import routes as live_routes
from leadscore.live.connection import HubSettings
from leadscore.live.events import EventPublisher
from leadscore.live.events import model_status as model_status_event
from leadscore.live.hub import LiveHub
from leadscore.models import routes as models_routes
from leadscore.models.admin import ModelAdmin
from leadscore.models.drift import DriftService
from leadscore.models.holder import LiveModel, ModelHolder
from leadscore.models.registry import Registry
from leadscore.models.shadow import ShadowScorer, persist_shadow_scores
from leadscore.models.status import team_model_health
from leadscore.models.training import RetrainSchedule, RetrainService
from leadscore.models.watcher import ModelWatcher
from leadscore.monitoring import routes as monitoring_routes
from leadscore.outcomes import routes as outcomes_routes
from leadscore.outcomes.service import OTHER_WRITERS_SECONDS, OutcomeIn, OutcomeService
from leadscore.qualification import routes as qualification_routes
from leadscore.qualification.llm import LLMQualifier, QualifierSettings, interaction_history
from leadscore.qualification.service import QualificationService
from leadscore.reports import routes as reports_routes
from leadscore.reports.service import ReportService
from leadscore.scoring import routes as scoring_routes
from leadscore.scoring.leads import LeadsService
from leadscore.scoring.schemas import ScoreRequest
from leadscore.scoring.service import ScoreHook, ScoringService, persist_scores, record_key
from leadscore.scoring.stats import StatsService
from leadscore.scoring.upload import LeadUploads

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How long a starting worker waits for an unreachable database, and how often it retries.
STARTUP_WAIT_SECONDS: Final = 30.0
STARTUP_RETRY_SECONDS: Final = 0.5

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def load_live_model(settings: ServiceSettings) -> LiveModel:
    """The configured model directory, or the built-in model (built once if absent)."""
    if settings.model_dir is not None:
        model = LeadModel.load(settings.model_dir)
        path = settings.model_dir
    else:
        model = load_or_build_default(settings.home, settings.num_threads)
        path = default_model_dir(settings.home)
    return LiveModel(model, Scorer(model), path)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the worker's components on one exit stack, serve, then close them in reverse."""
    settings: ServiceSettings = app.state.settings
    async with AsyncExitStack() as stack:
        app.state.services = await _start(settings, stack, app.state.database_log)
        started: Callable[[], None] | None = app.state.on_started
        if started is not None:
            started()
        yield


async def _start(
    settings: ServiceSettings, stack: AsyncExitStack, database_log: DependencyLog
) -> Services:
    """Start every component in dependency order; each is stopped by the stack, so a failure
    while starting stops, in reverse, whatever had started."""
    from leadscore.core.migrate import current_revision, head_revision

    engine = create_engine(settings.resolved_database_url)
    stack.push_async_callback(engine.dispose)
    # A connection handed out answered (connected, or passed the pre-ping): that ends an
    # outage the 503s began, also on a worker whose score writer has nothing to write.
    event.listen(engine.sync_engine, "checkout", lambda *_: database_log.up())
    revision = await _waiting_for_database(partial(current_revision, engine), database_log)
    if revision != head_revision():
        raise ConfigurationError(
            "the database schema is not current: run `leadscore db upgrade` first"
        )
    sessions = session_factory(engine)
    live = await asyncio.to_thread(load_live_model, settings)
    registry = Registry(settings.home / "models")
    # The configured model is registered; it serves only while the registry has no
    # champion yet (a promoted champion survives restarts and configuration changes).
    async with transaction(sessions) as session:
        await registry.register(session, live.model, live.path, trained_by="configured model")
        await registry.ensure_champion(session, live.version, actor="first start")
    redis = settings.redis_address
    limiter = create_rate_limiter(redis)
    stack.push_async_callback(limiter.close)
    cache = create_cache(redis, max_entries=settings.cache_max_entries)
    stack.push_async_callback(cache.close)
    metrics = Metrics.create()
    # What commits with each batch of scores (filled once the domains that add them exist).
    score_hooks: list[ScoreHook] = []
    shadow = await stack.enter_async_context(ShadowScorer(partial(persist_shadow_scores, sessions)))
    writer = await stack.enter_async_context(
        ScoreWriter(
            partial(persist_scores, sessions, score_hooks),
            batch_max=settings.write_batch_max,
            interval_ms=settings.write_interval_ms,
            durable=settings.durable_scores,
            key=record_key,
            database=database_log,
        )
    )

    async def flush_scores() -> None:
        await writer.barrier()
        await shadow.flush()

    models = ModelHolder(live)
    bus = create_bus(redis)
    stack.push_async_callback(bus.close)
    events = await stack.enter_async_context(EventPublisher(bus))
    auth = Authenticator(settings, sessions)
    hub = await stack.enter_async_context(
        LiveHub(
            bus,
            events,
            HubSettings(
                heartbeat_seconds=settings.ws_heartbeat_seconds,
                idle_timeout_seconds=settings.ws_idle_timeout_seconds,
                send_timeout_seconds=settings.ws_send_timeout_seconds,
                queue_size=settings.ws_queue_size,
                max_connections=settings.ws_max_connections,
                flush_interval_seconds=settings.ws_flush_interval_ms / 1000.0,
                recheck_seconds=settings.ws_recheck_seconds,
            ),
            active_keys=auth.active_keys,
            metrics=metrics,
        )
    )
    watcher = ModelWatcher(
        sessions, registry, models, events, hub.worker, settings.model_poll_seconds
    )
    if not await watcher.refresh():  # serve the registry's champions from the start
        events.emit(model_status_event("loaded", live.version, {"worker": hub.worker}))
    await stack.enter_async_context(watcher)
    # Before any job: the uploads a killed worker left (their owner gone) are removed.
    await stack.enter_async_context(UploadSweeper(settings.home / models_routes.UPLOADS))
    training = RetrainService(
        sessions,
        registry,
        settings.resolved_database_url,
        settings.home / "models" / "trained",
        events,
        settings.num_threads,
        metrics=metrics,
    )
    stack.push_async_callback(training.close)
    if settings.retrain_interval_hours:
        await stack.enter_async_context(
            RetrainSchedule(training, settings.retrain_interval_hours * 3600.0)
        )
    idempotency = IdempotencyStore(cache)
    scoring = ScoringService(
        models, cache, writer, metrics, events, shadow,
        batch_chunk=settings.batch_progress_chunk, hooks=score_hooks, idempotency=idempotency,
    )  # fmt: skip
    # Several workers need Redis: only then may a lead's score sit in another worker's writer.
    outcomes = OutcomeService(
        writer, OTHER_WRITERS_SECONDS if settings.redis_url else 0.0, idempotency=idempotency
    )
    qualification = QualificationService(scoring, outcomes, events, writer)
    score_hooks.append(qualification.on_scores)
    crm = await _start_crm(
        settings, stack, sessions, cache, limiter, auth, scoring, outcomes, database_log
    )
    score_hooks.append(OutboxHook(crm.wake_sender))
    metrics.add_sampler(partial(_sample_database, sessions, crm, registry))
    teams = TeamAdmin(settings, auth)
    qualifier = None
    if settings.anthropic_api_key is not None:

        async def conversation(
            session: AsyncSession, team_id: int, lead_id: str
        ) -> list[dict[str, Any]]:
            """The CRM's messages with the lead, else the interactions the lead came with."""
            messages = await crm.conversation(session, team_id, lead_id)
            return messages or await interaction_history(session, team_id, lead_id)

        qualifier = await stack.enter_async_context(
            LLMQualifier(
                sessions, qualification, limiter, teams,
                QualifierSettings(
                    api_key=settings.anthropic_api_key.get_secret_value(),
                    model=settings.anthropic_model,
                    calls_per_hour=settings.llm_calls_per_hour,
                    min_confidence=settings.llm_min_confidence,
                    max_attempts=settings.llm_max_attempts,
                ),
                conversation=conversation,
                outage=partial(_database_outage, database_log),
            )
        )  # fmt: skip
    # Closed before the writer and the publisher: its uploads finish and are announced first.
    uploads = await stack.enter_async_context(
        LeadUploads(
            scoring, events, settings.home / models_routes.UPLOADS,
            max_rows=settings.max_leads_upload_rows,
        )
    )  # fmt: skip
    leads = LeadsService(writer)
    stats = StatsService(writer, metrics)
    drift = DriftService(writer, models, events, settings.drift_window, settings.drift_threshold)

    async def model_health(session: AsyncSession, principal: Principal) -> dict[str, Any]:
        """What the broker's report shows of the model serving the team."""
        return await team_model_health(
            models.lineup(principal.team_id), metrics, writer, shadow, drift, session, principal
        )

    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        cache=cache,
        limiter=limiter,
        models=models,
        writer=writer,
        metrics=metrics,
        scoring=scoring,
        leads=leads,
        stats=stats,
        uploads=uploads,
        shadow=shadow,
        outcomes=outcomes,
        crm=crm,
        auth=auth,
        teams=teams,
        started_at=datetime.now(UTC),
        bus=bus,
        events=events,
        hub=hub,
        registry=registry,
        watcher=watcher,
        model_admin=ModelAdmin(
            registry, watcher, events, settings.global_models_team, flush_scores
        ),
        training=training,
        drift=drift,
        qualification=qualification,
        reports=ReportService(sessions, leads, stats, qualification, model_health),
        qualifier=qualifier,
    )  # fmt: skip


async def _start_crm(
    settings: ServiceSettings,
    stack: AsyncExitStack,
    sessions: async_sessionmaker[AsyncSession],
    cache: Cache,
    limiter: RateLimiter,
    auth: Authenticator,
    scoring: ScoringService,
    outcomes: OutcomeService,
    database_log: DependencyLog,
) -> CrmService:
    """The CRM loop of this worker: the webhook receiver, the inbox worker, the sender."""
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    stack.push_async_callback(http.aclose)
    providers: dict[str, Provider] = {
        provider.name: provider for provider in (GoHighLevel(), FollowUpBoss(), GenericWebhook())
    }
    connections = ConnectionService(box_for(settings), sessions)
    # SQLite takes one writer at a time: the store's commits and the worker's take turns.
    url = settings.resolved_database_url
    gate = asyncio.Lock() if is_sqlite(url) else None
    sender = OutboxSender(
        sessions, connections, providers, http, limiter,
        base_seconds=settings.crm_retry_base_seconds, max_seconds=settings.crm_retry_max_seconds,
        max_attempts=settings.crm_max_attempts, gate=gate,
    )  # fmt: skip
    store = await stack.enter_async_context(WebhookStore(sessions, gate, SqliteThread.of(url)))
    worker = InboxWorker(
        sessions, connections, auth, CrmSync(scoring, outcomes), providers, http, gate=gate
    )

    outage = partial(_database_outage, database_log)
    inbox = Pump("crm-inbox", settings.crm_poll_seconds, worker.step, outage=outage)
    receiver = WebhookReceiver(
        store, connections, cache,
        settings.ghl_webhook_public_key or gohighlevel.published_key(),
        settings.webhook_max_age_seconds, settings.crm_inbox_max_pending, inbox.wake,
    )  # fmt: skip
    worker.receiver = receiver
    outbox = await stack.enter_async_context(
        Pump("crm-outbox", settings.crm_poll_seconds, sender.step, outage=outage)
    )
    await stack.enter_async_context(inbox)
    return CrmService(connections, receiver, worker, sender, outbox.wake)


async def _sample_database(
    sessions: async_sessionmaker[AsyncSession], crm: CrmService, registry: Registry
) -> list[Metric]:
    """What /metrics reads from the database, the same for every worker: the CRM queues'
    backlog and the models each alias serves."""
    async with sessions() as session:
        backlog = await crm.backlog(session)
        aliases = await registry.aliases(session)
    return backlog_families(backlog, datetime.now(UTC)) + model_info_family(aliases)


def _database_outage(database_log: DependencyLog, exc: Exception) -> bool:
    """Whether a background step failed for the database being down: then it is one more
    refusal of the outage the 503s and the writer report once, not a traceback per step."""
    if not is_connection_error(exc):
        return False
    database_log.down(f"{type(exc).__name__}: {str(exc)[:200]}", refused=0)
    return True


async def _waiting_for_database(
    first_query: Callable[[], Awaitable[T]],
    database_log: DependencyLog,
    wait_seconds: float = STARTUP_WAIT_SECONDS,
) -> T:
    """The first query of a worker's startup, retried while the database is unreachable: a
    worker respawned during an outage that failed its startup would make uvicorn stop every
    worker, the ones still serving too; it waits as they do (then fails as before)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            result = await first_query()
        except CONNECTION_ERRORS as exc:
            if not is_connection_error(exc) or time.monotonic() >= deadline:
                raise
            database_log.down(f"starting: waiting up to {wait_seconds:g} s ({type(exc).__name__})")
            await asyncio.sleep(STARTUP_RETRY_SECONDS)
        else:
            database_log.up()
            return result


def _error(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": code, "detail": detail}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def _domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LeadScoreError)
    return _error(exc.status_code, exc.code, str(exc), exc.headers())


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _error(422, "validation_error", validation_detail(exc.errors()))


async def _body_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return _error(422, "validation_error", validation_detail(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = ERROR_CODES.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, exc.detail, dict(exc.headers or {}))


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    """The client hung up while sending its body: nothing to answer, nothing went wrong."""
    return Response(status_code=400)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """Any route, when the database is unreachable: 503 with Retry-After, logged per outage
    (one line when it starts, counts every 30 s), not a traceback per request."""
    if not is_connection_error(exc):
        return await _unexpected(request, exc)
    reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    database_log: DependencyLog = request.app.state.database_log
    database_log.down(reason)
    error = DatabaseUnavailableError(DATABASE_DOWN)
    return _error(error.status_code, error.code, str(error), error.headers())


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _error(500, "internal_error", "an unexpected error occurred; it has been logged")


class BodyLimit:
    """Refuse bodies over the limit with 413, by Content-Length or while streaming; upload
    routes (path → limit) have their own, larger limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(send, limit)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        response = _error(413, "payload_too_large", f"request body exceeds {limit} bytes")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": bytes(response.body)})


class _BodyTooLargeError(Exception):
    """Raised inside receive() once the streamed body passes the limit."""


def create_app(
    settings: ServiceSettings | None = None, *, on_started: Callable[[], None] | None = None
) -> FastAPI:
    """The LeadScore API; settings come from the environment unless given; `on_started` runs
    once every component has started (`leadscore serve` tunes the process there)."""
    settings = settings or ServiceSettings()
    configure_logging(settings.log_format)
    app = FastAPI(
        title="LeadScore",
        version=__version__,
        description="Real-time ML lead scoring for real-estate teams.",
        lifespan=lifespan,
        docs_url=None,  # served by the dashboard with vendored assets, so it works offline
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    app.state.settings = settings
    app.state.on_started = on_started
    # One per worker: the 503 handler and the score writer log one outage once between them.
    app.state.database_log = DependencyLog(log, "database")
    app.add_exception_handler(LeadScoreError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _body_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    for connection_error in CONNECTION_ERRORS:
        app.add_exception_handler(connection_error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
    for router in (
        # Before scoring's: /leads/export is matched before /leads/{lead_id} would take it.
        reports_routes.router,
        scoring_routes.router,
        outcomes_routes.router,
        monitoring_routes.router,
        models_routes.status_router,
        auth_routes.router,
        auth_routes.teams_router,
        monitoring_routes.root_router,
        live_routes.router,
        models_routes.router,
        crm_routes.router,
        qualification_routes.router,
        dashboard_routes.router,
    ):
        app.include_router(router)
    app.mount(dashboard_routes.STATIC_PATH, dashboard_routes.static_files(), name="dashboard")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        uploads={
            "/api/v1/ml/models/train/export": settings.max_upload_bytes,
            "/api/v1/ml/leads/upload": settings.max_leads_upload_bytes,
        },
    )
    # Outermost of ours: its latency and status include the body limit's 413s.
    app.add_middleware(AccessLog, metrics=partial(_metrics_of, app), enabled=settings.access_log)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _metrics_of(app: FastAPI) -> Metrics | None:
    """The worker's metrics once its lifespan has built them."""
    services: Services | None = getattr(app.state, "services", None)
    return None if services is None else services.metrics


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the models of bodies that routes parse themselves."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(
            SECURITY_SCHEMES | WEBHOOK_SCHEMES
        )
        components = schema["components"].setdefault("schemas", {})
        for parsed in (ScoreRequest, OutcomeIn):
            model = parsed.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model.pop("$defs", {}))
            components[parsed.__name__] = model
        app.openapi_schema = schema
    return app.openapi_schema
