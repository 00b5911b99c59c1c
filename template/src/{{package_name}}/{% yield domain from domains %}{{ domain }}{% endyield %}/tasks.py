"""This domain's tasks. Their queues and workers are set in topology.yaml."""

from ..messaging.app import app
from ..messaging.batches import DeadLetteringBatches, Event
from ..messaging.rewards import RewardPayload
from ..messaging.topology import load
from .cache import records
from .store import save_rewards

DOMAIN = __package__.rsplit(".", 1)[-1]
REWARD = load().queue(f"{DOMAIN}.reward").spec


@app.task(name=f"{DOMAIN}.match")
def match(key: str) -> str | None:
    """Answer from the in-process cache: no database round trip per call."""
    return records.get(key)


@app.task(
    name=f"{DOMAIN}.reward",
    base=DeadLetteringBatches,
    payload=RewardPayload,
    flush_every=REWARD.flush_every,
    flush_interval=REWARD.flush_interval,
    retries=REWARD.retries,
)
def reward(events: list[Event[RewardPayload]]) -> None:
    """Save validated rewards in one transaction; a redelivered event is skipped, not
    duplicated. A refused batch is split and retried by DeadLetteringBatches."""
    save_rewards(events)
