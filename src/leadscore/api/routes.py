"""HTTP routes: parse, call one service function, return. No logic lives here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Body,
    File,
    Form,
    Path,
    Query,
    Request,
    Response,
    Security,
    UploadFile,
    WebSocket,
)
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from leadscore.api.deps import (
    SECURED,
    AdminDep,
    PrincipalDep,
    Services,
    ServicesDep,
    WriterDep,
    api_key_header,
    authenticate_credentials,
    websocket_credentials,
)
from leadscore.api.hub import merge_metrics
from leadscore.api.schemas import (
    BatchRequest,
    BatchResponse,
    Comparison,
    ErrorResponse,
    HealthResponse,
    HistoryResponse,
    ModelChange,
    ModelDetail,
    ModelSummary,
    OutcomesResponse,
    PromoteRequest,
    RollbackRequest,
    ScoreRequest,
    ScoreResponse,
    TokenRequest,
    TokenResponse,
    TrainRequest,
    TrainResult,
    TrainStarted,
    TrialRequest,
    TrialState,
)
from leadscore.engine.schema import Lead
from leadscore.errors import RateLimitedError
from leadscore.services.auth import AuthenticationError
from leadscore.services.health import health
from leadscore.services.outcomes import MAX_OUTCOMES, parse_outcomes
from leadscore.services.status import team_model_status

JSON = "application/json"
LeadIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$", max_length=100)]

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)
}

ml = APIRouter(prefix="/api/v1/ml", tags=["scoring"], responses=_errors)
auth = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=_errors)
root = APIRouter(tags=["monitoring"])
live = APIRouter(prefix="/api/v1/ml/ws", tags=["live events"], responses=_errors)
models = APIRouter(
    prefix="/api/v1/ml/models", tags=["models"], responses=_errors | {409: {"model": ErrorResponse}}
)
VersionPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route parses itself (see `api.app.openapi` for the schemas)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


@ml.post("/score", response_model=ScoreResponse, openapi_extra=json_body(ScoreRequest) | SECURED)
async def score(request: Request, services: ServicesDep, principal: WriterDep) -> Response:
    """Score one lead: probability, class, confidence, reasons, commission."""
    # Parsed straight from bytes by pydantic-core: the hottest route skips a JSON round trip.
    parsed = ScoreRequest.model_validate_json(await request.body())
    lead = Lead.model_construct(lead_id=parsed.lead_id, lead_data=parsed.lead_data)
    body = await services.scoring.score(principal, lead, parsed.options)
    return Response(body, media_type=JSON)


@ml.post("/batch-score", response_model=BatchResponse, openapi_extra=SECURED)
async def batch_score(
    request: BatchRequest, services: ServicesDep, principal: WriterDep
) -> Response:
    """Score up to 100 leads; results in input order, a bad lead fails alone."""
    body = await services.scoring.batch(principal, request.leads, request.options)
    return Response(body, media_type=JSON)


@ml.get("/score/{lead_id}", response_model=ScoreResponse, openapi_extra=SECURED)
async def latest_score(
    lead_id: LeadIdPath, services: ServicesDep, principal: PrincipalDep
) -> Response:
    """The latest score of a lead for the caller's team."""
    return Response(await services.scoring.latest(principal, lead_id), media_type=JSON)


@ml.get("/score/{lead_id}/history", response_model=HistoryResponse, openapi_extra=SECURED)
async def score_history(
    lead_id: LeadIdPath,
    services: ServicesDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Every score of a lead with time, model version and top reasons, newest first."""
    return Response(await services.scoring.history(principal, lead_id, limit), media_type=JSON)


OUTCOMES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/OutcomeIn"},
            {"type": "array", "items": {"$ref": "#/components/schemas/OutcomeIn"},
             "minItems": 1, "maxItems": MAX_OUTCOMES},
        ]}, "example": {"lead_id": "lead_12345", "outcome": "closed",
                        "occurred_at": "2026-11-02T16:00:00Z", "sale_price": 612000}}},
    }
}  # fmt: skip


@ml.post(
    "/outcomes",
    response_model=OutcomesResponse,
    responses={409: {"model": ErrorResponse}},
    openapi_extra=OUTCOMES_BODY | SECURED,
)
async def post_outcomes(request: Request, services: ServicesDep, principal: WriterDep) -> Response:
    """Record what happened to scored leads (one or a list): all or nothing, repeats ignored."""
    items = parse_outcomes(await request.body())
    return Response(await services.outcomes.record(principal, items), media_type=JSON)


@ml.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def get_health(services: ServicesDep) -> JSONResponse:
    """Public: model, database and cache checked for real, with timeouts."""
    report, ok = await health(
        services.models, services.sessions, services.cache, services.settings.health_timeout_seconds
    )
    return JSONResponse(report, status_code=200 if ok else 503)


@ml.get("/model/status", openapi_extra=SECURED)
async def get_model_status(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Version, card metrics, thresholds and live traffic figures."""
    return await team_model_status(
        services.models.lineup(principal.team_id), services.metrics, services.writer,
        services.shadow, services.sessions, principal.team_id,
    )  # fmt: skip


@ml.get("/model/drift", openapi_extra=SECURED)
async def get_drift(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Population stability of the team's recently scored leads against its model's training
    leads: PSI per feature and for the score, and whether it crossed the threshold."""
    return await services.drift.report(principal.team_id)


@ml.get("/metrics/performance", openapi_extra=SECURED)
async def performance(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Latency percentiles, share under target, cache hit and escalation rates, classes."""
    return services.metrics.summary()


@root.get("/metrics", response_class=Response)
async def prometheus(services: ServicesDep) -> Response:
    """Prometheus text exposition, summed over all workers."""
    return Response(services.metrics.exposition(), media_type="text/plain; version=0.0.4")


@auth.post("/token", response_model=TokenResponse)
async def token(
    services: ServicesDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    request: Annotated[TokenRequest | None, Body()] = None,
) -> TokenResponse:
    """Exchange an API key (body `api_key` or header X-API-Key) for a short-lived JWT."""
    secret = (request.api_key if request else None) or api_key
    if not secret:
        raise AuthenticationError("send the API key as X-API-Key or in the body as api_key")
    principal = await services.auth.from_api_key(secret)
    access_token, ttl = services.auth.issue_token(principal)
    return TokenResponse(
        access_token=access_token,
        token_type="bearer",
        expires_in=ttl,
        role=principal.role,
        team=principal.team_name,
    )


@live.websocket("/live-scores")
async def live_scores(websocket: WebSocket) -> None:
    """Live events for the caller's team; credentials are checked before anything is sent."""
    services: Services = websocket.app.state.services
    token, api_key, subprotocol = websocket_credentials(websocket)
    try:
        principal = await authenticate_credentials(services, token, api_key)
    except (AuthenticationError, RateLimitedError) as exc:
        await services.hub.refuse(websocket, str(exc), subprotocol)
        return
    await services.hub.serve(websocket, principal, subprotocol)


@live.get("/metrics", openapi_extra=SECURED)
async def live_metrics(services: ServicesDep, principal: AdminDep) -> dict[str, Any]:
    """Admins: connections, messages in/out, drops, fan-out latency, subscriptions per event."""
    workers = await services.hub.cluster()
    return merge_metrics([w["metrics"] for w in workers])


@live.get("/connections", openapi_extra=SECURED)
async def live_connections(services: ServicesDep, principal: AdminDep) -> dict[str, Any]:
    """Admins: their team's live connections on every worker, with subscriptions and queue."""
    connections = [
        c
        for w in await services.hub.cluster()
        for c in w["connections"]
        if c["team_id"] == principal.team_id
    ]
    return {"count": len(connections), "connections": connections}


@models.get("", response_model=list[ModelSummary], openapi_extra=SECURED)
async def list_models(services: ServicesDep, principal: AdminDep) -> list[dict[str, Any]]:
    """Admins: the global versions and their team's, with aliases and card metrics."""
    return await services.model_admin.list(principal.team_id)


@models.post("/rollback", response_model=ModelChange, openapi_extra=SECURED)
async def rollback_model(
    request: RollbackRequest, services: ServicesDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: serve the previous champion again, on every worker within seconds."""
    return await services.model_admin.rollback(principal, team_scope=request.team)


@models.post("/train", status_code=202, response_model=TrainStarted, openapi_extra=SECURED)
async def train_model(
    request: TrainRequest, services: ServicesDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: train the team's model on its outcomes in the background (one job at a time)."""
    job, _ = await services.training.start(
        principal.team_id, actor=f"key {principal.key_id}", promote=request.promote
    )
    return {"job": job, "team_id": principal.team_id, "status": "started"}


@models.post("/train/export", status_code=202, response_model=TrainStarted, openapi_extra=SECURED)
async def train_model_with_export(
    services: ServicesDep,
    principal: AdminDep,
    export: Annotated[
        UploadFile, File(description="CRM export with outcomes: .csv/.parquet/.jsonl")
    ],
    mapping: Annotated[UploadFile | None, File(description="YAML column mapping")] = None,
    promote: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Admins: train the team's model on its outcomes plus its CRM history (multipart upload,
    up to LEADSCORE_MAX_UPLOAD_BYTES); same job, events and gate as `/train`."""
    job, _ = await services.training.start_with_export(
        principal.team_id, actor=f"key {principal.key_id}", promote=promote,
        name=export.filename or "export.csv", content=export.file,
        mapping=await mapping.read() if mapping is not None else None,
    )  # fmt: skip
    return {"job": job, "team_id": principal.team_id, "status": "started"}


@models.post("/recalibrate", response_model=TrainResult, openapi_extra=SECURED)
async def recalibrate_model(services: ServicesDep, principal: AdminDep) -> dict[str, Any]:
    """Admins: the serving model with its calibration refitted on the team's outcomes (same
    trees), gated and registered as the team's challenger; takes seconds."""
    return await services.training.recalibrate(principal.team_id, actor=f"key {principal.key_id}")


@models.get("/trial", response_model=TrialState, openapi_extra=SECURED)
async def get_trial(
    services: ServicesDep, principal: AdminDep, team: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    """Admins: the global (or with `team` the team's) champion/challenger trial."""
    return await services.model_admin.trial(principal, team_scope=team)


@models.put("/trial", response_model=TrialState, openapi_extra=SECURED)
async def set_trial(
    request: TrialRequest, services: ServicesDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: try the challenger on live traffic — `shadow` (it scores every lead unseen),
    `split` (it answers a stable share of leads) — or end the trial with `off`."""
    return await services.model_admin.set_trial(
        principal, request.mode, request.share, team_scope=request.team
    )


@models.get("/compare", response_model=Comparison, openapi_extra=SECURED)
async def compare_models(
    services: ServicesDep,
    principal: AdminDep,
    champion: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    challenger: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
) -> dict[str, Any]:
    """Admins: two versions on the same leads with outcomes (default: the team's trial),
    AUC, Brier and calibration each, and bootstrap intervals of the differences."""
    return await services.model_admin.compare(principal, champion, challenger)


@models.get("/{version}", response_model=ModelDetail, openapi_extra=SECURED)
async def show_model(
    version: VersionPath, services: ServicesDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: one version with its card and its scope's promotion history."""
    return await services.model_admin.show(principal.team_id, version)


@models.post("/{version}/promote", response_model=ModelChange, openapi_extra=SECURED)
async def promote_model(
    version: VersionPath, request: PromoteRequest, services: ServicesDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: make a version champion (after its gate passed, or forced and recorded)."""
    return await services.model_admin.promote(
        principal, version, force=request.force, reason=request.reason
    )
