"""Where each domain's database is, and the one way every command reports it down, refusing
us or unmigrated.

It speaks psycopg, the driver under the ORM, and finds psycopg's error under whatever the
ORM wrapped it in, so the messaging core, the workers' start-up checks and the commands
share it whatever the ORM.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import UndefinedTable

from .faults import Fault
from .settings import get_settings

CONNECT_TIMEOUT_SECONDS = 3


def connect_once(domain: str) -> None:
    """Open and close one connection to the domain's database; raise if that fails.

    Nothing stays open, so a process that forks afterwards (a prefork worker) never hands
    one connection to several children.
    """
    url = get_settings().database_url(domain)
    psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS).close()


def driver_error(error: BaseException) -> psycopg.Error | None:
    """psycopg's own exception behind ``error``: itself, or what an ORM wrapped."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, psycopg.Error):
            return error
        seen.add(id(error))
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
    return None


def refused_rows(error: BaseException) -> bool:
    """The database refused the rows themselves (a value out of range, a constraint), as
    opposed to being down, busy or misconfigured."""
    return isinstance(driver_error(error), psycopg.DataError | psycopg.IntegrityError)


def database_address(url: str) -> str:
    """``host:port/database``: enough to find it, nothing secret."""
    parts = conninfo_to_dict(url)
    return f"{parts.get('host')}:{parts.get('port') or 5432}/{parts.get('dbname')}"


def database_reason(error: BaseException) -> str:
    """PostgreSQL's own words (``database "x" does not exist``), without libpq's preamble."""
    original = driver_error(error) or error
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
    except Exception as error:
        cause = driver_error(error)
        if isinstance(cause, psycopg.OperationalError):
            reason = database_reason(cause)
            raise _fault(domain, reason, database_advice(domain, reason)) from None
        if isinstance(cause, UndefinedTable):
            raise _fault(domain, database_reason(cause), "run `migrate`") from None
        raise


def _fault(domain: str, reason: str, advice: str) -> Fault:
    address = database_address(get_settings().database_url(domain))
    return Fault(f"the {domain} database at {address}: {reason}; {advice}")
