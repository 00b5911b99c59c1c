"""One SQLAlchemy engine per domain database, created on first use, and the one way a
command reports that database being down or refusing it."""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.errors import UndefinedTable
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from .faults import Fault
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


def connect_once(domain: str) -> None:
    """Open and close one connection to the domain's database; raise if that fails.

    Nothing stays pooled, so a process that forks afterwards (a prefork worker) never hands
    one connection to several children.
    """
    probe = create_engine(
        get_settings().database_url(domain),
        poolclass=NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )
    try:
        probe.connect().close()
    finally:
        probe.dispose()


def dispose_engines() -> None:
    """Close every pooled connection, e.g. after the environment changed in tests."""
    while _engines:
        _engines.popitem()[1].dispose()


def database_address(url: str) -> str:
    """``host:port/database``: enough to find it, nothing secret."""
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


def database_reason(error: Exception) -> str:
    """PostgreSQL's own words (``database "x" does not exist``), without libpq's preamble."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines() or [original.__class__.__name__]
    return lines[0].rpartition("failed: ")[2].removeprefix("FATAL:").strip()


def database_advice(domain: str, reason: str) -> str:
    variable = f"{domain.upper()}_DATABASE_URL"
    if reason.startswith("database") and reason.endswith("does not exist"):
        return f"create the database, or fix its name in {variable}"
    if "password authentication failed" in reason or reason.startswith("role"):
        return f"fix the user or password in {variable}"
    return f"check {variable} and that PostgreSQL is running there"


@contextmanager
def database_faults(domain: str) -> Iterator[None]:
    """Report the domain's database being down, refusing us or unmigrated as a Fault."""
    try:
        yield
    except (OperationalError, psycopg.OperationalError) as error:
        reason = database_reason(error)
        raise _fault(domain, reason, database_advice(domain, reason)) from None
    except ProgrammingError as error:
        if not isinstance(error.orig, UndefinedTable):
            raise
        raise _fault(domain, database_reason(error), "run `migrate`") from None


def _fault(domain: str, reason: str, advice: str) -> Fault:
    address = database_address(get_settings().database_url(domain))
    return Fault(f"the {domain} database at {address}: {reason}; {advice}")
