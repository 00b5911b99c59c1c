"""This domain's in-process cache of records, served by its match worker."""

from sqlalchemy import select

from ..db import engine
from ..messaging.cache import LocalCache
from .models import Record

DOMAIN = __package__.rsplit(".", 1)[-1]


def load_records() -> dict[str, str]:
    with engine(DOMAIN).connect() as connection:
        return dict(connection.execute(select(Record.key, Record.value)).tuples().all())


records = LocalCache(DOMAIN, load_records)
