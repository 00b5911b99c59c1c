"""Wait until every domain database accepts connections, or give up after a timeout.

Runs in the container entrypoint before the real command; written in Python because slim
images ship neither ``nc`` nor ``curl``. It keeps trying whatever the reason (a database
may be created while we wait), and when it gives up it says the last one.
"""

import argparse
import sys
import time

import psycopg

from .db import connect_once, database_address, database_advice, database_reason
from .faults import Fault, entry_point
from .settings import DOMAINS, get_settings

RETRY_SECONDS = 0.5


def wait_for(domain: str, deadline: float) -> str | None:
    """None once the database answers; the last reason it did not, at the deadline."""
    while True:
        try:
            connect_once(domain)
            return None
        except psycopg.Error as error:
            if time.monotonic() + RETRY_SECONDS >= deadline:
                return database_reason(error)
            time.sleep(RETRY_SECONDS)


@entry_point("wait-for-databases")
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
    settings = get_settings()
    timeout = args.timeout if args.timeout is not None else settings.database_wait_seconds
    deadline = time.monotonic() + timeout
    for domain in DOMAINS:
        where = database_address(settings.database_url(domain))
        print(f"waiting for the {domain} database at {where}", flush=True)
        reason = wait_for(domain, deadline)
        if reason is not None:
            raise Fault(
                f"the {domain} database at {where} was not reachable within {timeout:g}s "
                f"({reason}); {database_advice(domain, reason)}"
            )
        print(f"the {domain} database is up", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
