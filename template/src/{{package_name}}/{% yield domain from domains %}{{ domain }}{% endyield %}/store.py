"""How this domain reads and writes its database: the queries its tasks and cache need."""

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from ..messaging.batches import Event
from ..messaging.rewards import RewardPayload
from ..orm import engine
from .models import Record, Reward

DOMAIN = __package__.rsplit(".", 1)[-1]


def load_records() -> dict[str, str]:
    with engine(DOMAIN).connect() as connection:
        return dict(connection.execute(select(Record.key, Record.value)).tuples().all())


def save_rewards(events: list[Event[RewardPayload]]) -> None:
    """One transaction; an event saved before (a redelivery) is skipped, not duplicated."""
    rows = [{"event_id": event.id, **event.payload.model_dump()} for event in events]
    with engine(DOMAIN).begin() as connection:
        connection.execute(
            insert(Reward).values(rows).on_conflict_do_nothing(index_elements=["event_id"])
        )
