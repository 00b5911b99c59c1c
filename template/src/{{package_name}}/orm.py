"""SQLAlchemy, the ORM of this service's domains: one engine per domain database, created
on first use."""

from sqlalchemy import Engine, create_engine

from .db import CONNECT_TIMEOUT_SECONDS
from .settings import get_settings

_engines: dict[str, Engine] = {}


def engine(domain: str) -> Engine:
    if domain not in _engines:
        url = get_settings().database_url(domain).replace("postgresql://", "postgresql+psycopg://")
        _engines[domain] = create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        )
    return _engines[domain]


def reset_connections() -> None:
    """Close every pooled connection, e.g. after the environment changed in tests."""
    while _engines:
        _engines.popitem()[1].dispose()
