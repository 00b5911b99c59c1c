"""One SQLAlchemy engine per domain database, created on first use."""

from sqlalchemy import Engine, create_engine

from .settings import get_settings

CONNECT_TIMEOUT_SECONDS = 3

_engines: dict[str, Engine] = {}


def engine(domain: str) -> Engine:
    if domain not in _engines:
        _engines[domain] = create_engine(
            get_settings().database_url(domain),
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
    return _engines[domain]


def dispose_engines() -> None:
    """Close every pooled connection, e.g. after the environment changed in tests."""
    while _engines:
        _engines.popitem()[1].dispose()
