"""Liveness and readiness endpoints.

Liveness does no I/O: a restart cannot fix a database that is down. Readiness checks
every domain database and its migrations; details go to the log, never to the caller.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .. import readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/ready")
def ready() -> JSONResponse:
    if readiness.problems():
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})
