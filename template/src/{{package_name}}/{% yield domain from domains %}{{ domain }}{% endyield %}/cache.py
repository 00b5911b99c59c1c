"""This domain's in-process cache of records, served by its match worker."""

from ..messaging.cache import LocalCache
from .store import load_records

DOMAIN = __package__.rsplit(".", 1)[-1]

records = LocalCache(DOMAIN, load_records)
