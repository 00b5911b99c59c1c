"""Is this process ready for traffic? Framework-free so every web layer shares it.

Ready means every domain database answers AND sits at its Alembic head: a reachable
database with an old schema is not ready.
"""

import logging
from functools import cache

from sqlalchemy.exc import SQLAlchemyError

from .db import engine
from .migrate import current_revisions, head_revisions
from .settings import DOMAINS

log = logging.getLogger(__name__)


@cache
def _heads(domain: str) -> frozenset[str]:
    return frozenset(head_revisions(domain))


def problems() -> list[str]:
    """Describe what keeps the process from being ready; empty when it is ready.

    The descriptions may name hosts and revisions: log them, never return them to a client.
    """
    found = []
    for domain in DOMAINS:
        try:
            with engine(domain).connect() as connection:
                current = current_revisions(connection)
        except SQLAlchemyError as error:
            found.append(f"{domain} database unreachable: {error.__class__.__name__}: {error}")
            continue
        if current != _heads(domain):
            found.append(
                f"{domain} database at {sorted(current) or 'no revision'}, "
                f"head is {sorted(_heads(domain))}: run `migrate`"
            )
    for problem in found:
        log.warning("not ready: %s", problem)
    return found
