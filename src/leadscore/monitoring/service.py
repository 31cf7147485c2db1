"""Health: the model, the database and the cache really checked, each with a timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.cache import Cache
from leadscore.core.errors import DATABASE_DOWN, DatabaseUnavailableError
from leadscore.models.holder import ModelHolder
from leadscore.monitoring import repository as repo

log = logging.getLogger(__name__)
#: The health report's `error` when the database is up but the model cannot score.
MODEL_UNAVAILABLE: Final = "model_unavailable"


async def _check(name: str, probe: Callable[[], Awaitable[None]], timeout: float) -> dict[str, Any]:
    """One dependency's status; the report is public, so the failure's own message (hosts,
    ports, user names) goes to the server log and the reply names only its kind."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout)
        status, detail = "ok", None
    except TimeoutError:
        status, detail = "error", f"no answer within {timeout:g} s"
    except Exception as exc:  # any failure of a dependency is reported, never raised
        log.warning("health: the %s check failed: %s: %s", name, type(exc).__name__, exc)
        status, detail = "error", f"{name} check failed ({type(exc).__name__}; see the server log)"
    return {
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "detail": detail,
    }


async def health(
    models: ModelHolder,
    sessions: async_sessionmaker[AsyncSession],
    cache: Cache,
    timeout: float,
) -> tuple[dict[str, Any], bool]:
    """The health report, and whether the service can score (model and database up)."""

    async def database() -> None:
        async with sessions() as session:
            await repo.ping(session)

    async def model() -> None:
        live = models.current
        if not live.model.boosters_:
            raise RuntimeError("model has no boosters")

    db_check, cache_check, model_check = await asyncio.gather(
        _check("database", database, timeout),
        _check("cache", cache.ping, timeout),
        _check("model", model, timeout),
    )
    checks = {"model": model_check, "database": db_check, "cache": cache_check}
    essential_ok = model_check["status"] == "ok" and db_check["status"] == "ok"
    if not essential_ok:
        status = "unhealthy"
    elif cache_check["status"] != "ok":
        status = "degraded"
    else:
        status = "healthy"
    report: dict[str, Any] = {
        "status": status,
        "checks": checks,
        "model_version": models.current.version,
    }
    if db_check["status"] != "ok":  # the same error as every other route's 503, plus the report
        report |= {"error": DatabaseUnavailableError.code, "detail": DATABASE_DOWN}
    elif model_check["status"] != "ok":
        report |= {"error": MODEL_UNAVAILABLE, "detail": "the model cannot score"}
    return report, essential_ok
