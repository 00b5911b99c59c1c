"""Wait until every domain database accepts connections, or give up after a timeout.

Runs in the container entrypoint before the real command; written in Python because slim
images ship neither ``nc`` nor ``curl``.
"""

import argparse
import sys
import time

from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .settings import DOMAINS, SettingsError, get_settings

RETRY_SECONDS = 0.5


def _where(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


def wait_for(url: str, deadline: float) -> bool:
    database = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        while True:
            try:
                database.connect().close()
                return True
            except SQLAlchemyError:
                if time.monotonic() + RETRY_SECONDS >= deadline:
                    return False
                time.sleep(RETRY_SECONDS)
    finally:
        database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wait-for-databases",
        description="Wait until every domain database accepts connections.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait in total (default: DATABASE_WAIT_SECONDS, 60)",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as error:
        print(f"wait-for-databases: {error}", file=sys.stderr)
        return 2
    timeout = args.timeout if args.timeout is not None else settings.database_wait_seconds
    deadline = time.monotonic() + timeout
    for domain in DOMAINS:
        url = settings.database_url(domain)
        print(f"waiting for the {domain} database at {_where(url)}", flush=True)
        if not wait_for(url, deadline):
            print(
                f"wait-for-databases: the {domain} database at {_where(url)} was not reachable "
                f"within {timeout:g}s; check {domain.upper()}_DATABASE_URL and that the "
                "database server is running",
                file=sys.stderr,
            )
            return 1
        print(f"the {domain} database is up", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
