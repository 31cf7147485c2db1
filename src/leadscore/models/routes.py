"""Model routes: status, drift, registry, training, trials."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from leadscore.core.http import ERROR_RESPONSES, VersionPath
from leadscore.core.schemas import ErrorResponse
from leadscore.core.uploads import receive_form
from leadscore.deps import (
    SECURED,
    AdminDep,
    PrincipalDep,
    ServicesDep,
    SessionDep,
)
from leadscore.engine.mapping import MAX_MAPPING_BYTES
from leadscore.models.mapping import set_team_mapping, team_mapping
from leadscore.models.schemas import (
    EXPORT_FORM,
    Comparison,
    ModelChange,
    ModelDetail,
    ModelSummary,
    PromoteRequest,
    RollbackRequest,
    TrainingJob,
    TrainRequest,
    TrainResult,
    TrainStarted,
    TrialRequest,
    TrialState,
)
from leadscore.models.status import team_model_status
from leadscore.models.training import export_format

#: Where uploads are written under the server's home while their job needs them.
UPLOADS = "uploads"

JobIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,32}$")]

status_router = APIRouter(prefix="/api/v1/ml", tags=["scoring"], responses=ERROR_RESPONSES)
router = APIRouter(
    prefix="/api/v1/ml/models",
    tags=["models"],
    responses=ERROR_RESPONSES | {409: {"model": ErrorResponse}},
)


@status_router.get("/model/status", openapi_extra=SECURED)
async def get_model_status(
    services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Version, card metrics, thresholds and live traffic figures."""
    return await team_model_status(
        services.models.lineup(principal.team_id), services.metrics, services.writer,
        services.shadow, session, principal,
    )  # fmt: skip


@status_router.get("/mapping", openapi_extra=SECURED)
async def get_mapping(session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """The team's column mapping (its own CRM fields), as `--mapping` takes it; 404 until set."""
    mapping = await team_mapping(session, principal.team_id)
    return mapping.model_dump(mode="json")


@status_router.put("/mapping", openapi_extra=SECURED)
async def put_mapping(
    session: SessionDep,
    principal: AdminDep,
    document: Annotated[dict[str, Any], Body(description="The `--mapping` document as JSON.")],
) -> dict[str, Any]:
    """Admins: set the team's mapping; its next model learns the attributes it declares, and
    scores read them from `lead_data.attributes` (422 naming the first problem)."""
    mapping = await set_team_mapping(session, principal.team_id, document)
    return mapping.model_dump(mode="json")


@status_router.get("/model/drift", openapi_extra=SECURED)
async def get_drift(
    services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Population stability of the team's recently scored leads against its model's training
    leads: PSI per feature and for the score, and whether it crossed the threshold."""
    return await services.drift.report(session, principal.team_id)


@router.get("", response_model=list[ModelSummary], openapi_extra=SECURED)
async def list_models(
    services: ServicesDep, session: SessionDep, principal: AdminDep
) -> list[dict[str, Any]]:
    """Admins: the global versions and their team's, with aliases and card metrics."""
    return await services.model_admin.list(session, principal.team_id)


@router.post("/rollback", response_model=ModelChange, openapi_extra=SECURED)
async def rollback_model(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    request: RollbackRequest | None = None,
) -> dict[str, Any]:
    """Admins: serve the previous champion again, on every worker within seconds (no body:
    the caller's own scope)."""
    request = request or RollbackRequest()
    return await services.model_admin.rollback(session, principal, team_scope=request.team)


@router.post("/train", status_code=202, response_model=TrainStarted, openapi_extra=SECURED)
async def train_model(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    request: TrainRequest | None = None,
) -> dict[str, Any]:
    """Admins: train the team's model on its outcomes in the background (one job at a time;
    no body: the defaults)."""
    request = request or TrainRequest()
    job = await services.training.start(
        session, principal.team_id, actor=f"key {principal.key_id}", promote=request.promote
    )
    return {"job": job, "team_id": principal.team_id, "status": "started"}


@router.post(
    "/train/export", status_code=202, response_model=TrainStarted,
    openapi_extra=SECURED | EXPORT_FORM,
)  # fmt: skip
async def train_model_with_export(
    request: Request, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: train the team's model on its outcomes plus its CRM history (multipart upload,
    up to LEADSCORE_MAX_UPLOAD_BYTES, streamed to disk); same job, events and gate as `/train`."""
    async with receive_form(
        request, services.settings.home / UPLOADS, to_disk={"export": export_format},
        in_memory={"mapping": MAX_MAPPING_BYTES, "promote": 16},
    ) as form:  # fmt: skip
        upload = form.file("export")
        job = await services.training.start_with_export(
            session, principal.team_id, actor=f"key {principal.key_id}",
            promote=form.flag("promote"), export=upload.path, name=upload.filename,
            mapping=form.data("mapping"),
        )  # fmt: skip
    return {"job": job, "team_id": principal.team_id, "status": "started"}


@router.get("/jobs", response_model=list[TrainingJob], openapi_extra=SECURED)
async def list_training_jobs(
    services: ServicesDep, session: SessionDep, principal: AdminDep
) -> list[dict[str, Any]]:
    """Admins: the team's latest training jobs (50), newest first, from any worker."""
    return await services.training.jobs(session, principal.team_id)


@router.get("/jobs/{job_id}", response_model=TrainingJob, openapi_extra=SECURED)
async def get_training_job(
    job_id: JobIdPath, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: one of the team's training jobs — running, succeeded (its version) or failed
    (its error)."""
    return await services.training.job(session, principal.team_id, job_id)


@router.post("/recalibrate", response_model=TrainResult, openapi_extra=SECURED)
async def recalibrate_model(services: ServicesDep, principal: AdminDep) -> dict[str, Any]:
    """Admins: the serving model with its calibration refitted on the team's outcomes (same
    trees), gated and registered as the team's challenger; takes seconds."""
    return await services.training.recalibrate(principal.team_id, actor=f"key {principal.key_id}")


@router.get("/trial", response_model=TrialState, openapi_extra=SECURED)
async def get_trial(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    team: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """Admins: the global (or with `team` the team's) champion/challenger trial."""
    return await services.model_admin.trial(session, principal, team_scope=team)


@router.put("/trial", response_model=TrialState, openapi_extra=SECURED)
async def set_trial(
    request: TrialRequest, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: try the challenger on live traffic — `shadow` (it scores every lead unseen),
    `split` (it answers a stable share of leads) — or end the trial with `off`."""
    return await services.model_admin.set_trial(
        session, principal, request.mode, request.share, team_scope=request.team
    )


@router.get("/compare", response_model=Comparison, openapi_extra=SECURED)
async def compare_models(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    champion: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    challenger: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
) -> dict[str, Any]:
    """Admins: two versions on the same leads with outcomes (default: the team's trial),
    AUC, Brier and calibration each, and bootstrap intervals of the differences."""
    return await services.model_admin.compare(session, principal, champion, challenger)


@router.get("/{version}", response_model=ModelDetail, openapi_extra=SECURED)
async def show_model(
    version: VersionPath, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> dict[str, Any]:
    """Admins: one version with its card and its scope's promotion history."""
    return await services.model_admin.show(session, principal.team_id, version)


@router.post("/{version}/promote", response_model=ModelChange, openapi_extra=SECURED)
async def promote_model(
    version: VersionPath,
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    request: PromoteRequest | None = None,
) -> dict[str, Any]:
    """Admins: make a version champion (after its gate passed, or forced and recorded)."""
    request = request or PromoteRequest()
    return await services.model_admin.promote(
        session, principal, version, force=request.force, reason=request.reason
    )
