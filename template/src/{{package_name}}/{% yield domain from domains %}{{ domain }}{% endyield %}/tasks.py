"""This domain's tasks. Their queues and workers are set in topology.yaml."""

from celery_batches import SimpleRequest
from sqlalchemy.dialects.postgresql import insert

from ..db import engine
from ..messaging.app import app
from ..messaging.batches import DeadLetteringBatches
from ..messaging.topology import load
from .cache import records
from .models import Reward

DOMAIN = __package__.rsplit(".", 1)[-1]
REWARD = load().queue(f"{DOMAIN}.reward").spec


@app.task(name=f"{DOMAIN}.match")
def match(key: str) -> str | None:
    """Answer from the in-process cache: no database round trip per call."""
    return records.get(key)


@app.task(
    name=f"{DOMAIN}.reward",
    base=DeadLetteringBatches,
    flush_every=REWARD.flush_every,
    flush_interval=REWARD.flush_interval,
    retries=REWARD.retries,
)
def reward(requests: list[SimpleRequest]) -> int:
    """Save a batch in one transaction; a redelivered event is skipped, not duplicated."""
    rows = [
        {
            "event_id": request.id,
            "subject": request.kwargs["subject"],
            "points": request.kwargs["points"],
        }
        for request in requests
    ]
    with engine(DOMAIN).begin() as connection:
        connection.execute(
            insert(Reward).values(rows).on_conflict_do_nothing(index_elements=["event_id"])
        )
    return len(rows)
