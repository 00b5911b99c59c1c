"""Liveness and readiness endpoints.

Liveness does no I/O: a restart cannot fix a database that is down. Readiness checks
every domain database and its migrations; details go to the log, never to the caller.
The detailed view reports the broker and workers and is never part of readiness.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .. import readiness
from ..messaging.presence import broker_details

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/ready")
def ready() -> JSONResponse:
    if readiness.problems():
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/details")
def details() -> dict:
    """Broker and worker presence, with a short timeout; not part of readiness."""
    return broker_details(timeout=1.0)
