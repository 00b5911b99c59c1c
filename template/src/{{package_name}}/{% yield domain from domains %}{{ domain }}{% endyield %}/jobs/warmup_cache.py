"""Warm every match worker's cache of this domain after a deploy.

Run as ``python -m <package>.<domain>.jobs.warmup_cache`` (the ArgoCD PostSync Job): it
reads the domain database, so a broken database fails the job, then broadcasts
``full_refresh``, which every running match worker receives on its own queue.
"""

import sys

from ... import orm
from ...db import database_faults
from ...faults import entry_point
from ...messaging.cache import FULL_REFRESH, publish
from ...messaging.topology import load
from ...settings import get_settings

DOMAIN = __package__.split(".")[-2]


@entry_point("warmup_cache")
def main() -> int:
    get_settings()
    load()  # configuration first: a bad topology.yaml is exit 2 whatever else is down
    orm.setup()
    from ..store import load_records  # its models need the ORM set up (Django)

    with database_faults(DOMAIN):
        count = len(load_records())
    publish(DOMAIN, FULL_REFRESH)
    print(f"{DOMAIN}: read {count} records; broadcast full_refresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
