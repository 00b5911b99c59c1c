"""Is this process ready for traffic? Framework-free so every web layer shares it.

Ready means every domain database answers AND has every migration of its domain applied:
a reachable database with an old schema is not ready.
"""

import logging

from . import migrate
from .db import database_reason
from .settings import DOMAINS

log = logging.getLogger(__name__)


def problems() -> list[str]:
    """Describe what keeps the process from being ready; empty when it is ready.

    The descriptions may name hosts and revisions: log them, never return them to a client.
    """
    found = []
    for domain in DOMAINS:
        try:
            lag = migrate.behind(domain)
        except Exception as error:  # whatever failed, the process is not ready; the log says why
            found.append(
                f"{domain} database unreachable: {error.__class__.__name__}: "
                f"{database_reason(error)}"
            )
            continue
        if lag is not None:
            found.append(f"{domain} database {lag}: run `migrate`")
    for problem in found:
        log.warning("not ready: %s", problem)
    return found
