"""HTTP entry points into each domain, sent to the workers by task name."""

from celery.exceptions import TimeoutError as TaskTimeout
from fastapi import APIRouter, HTTPException

from ..messaging.calls import DomainClient
from ..messaging.rewards import RewardPayload
from ..settings import DOMAINS

router = APIRouter(tags=["domains"])


def _client(domain: str) -> DomainClient:
    if domain not in DOMAINS:
        raise HTTPException(status_code=404, detail="unknown domain")
    return DomainClient(domain)


@router.get("/{domain}/match/{key}")
def match(domain: str, key: str) -> dict[str, str | None]:
    try:
        return {"key": key, "value": _client(domain).match(key)}
    except TaskTimeout:
        raise HTTPException(status_code=504, detail="match timed out") from None


@router.post("/{domain}/rewards", status_code=202)
def reward(domain: str, body: RewardPayload) -> dict[str, str]:
    return {"event_id": _client(domain).reward(body.subject, body.points)}
