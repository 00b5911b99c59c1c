"""Warm every match worker's cache of this domain after a deploy.

Run as ``python -m <package>.<domain>.jobs.warmup_cache`` (the ArgoCD PostSync Job): it
reads the domain database, so a broken database fails the job, then broadcasts
``full_refresh``, which every running match worker receives on its own queue.
"""

import sys

from ...messaging.cache import FULL_REFRESH, publish
from ...settings import SettingsError, get_settings
from ..cache import load_records

DOMAIN = __package__.split(".")[-2]


def main() -> int:
    try:
        get_settings()
    except SettingsError as error:
        print(f"warmup_cache: {error}", file=sys.stderr)
        return 2
    count = len(load_records())
    publish(DOMAIN, FULL_REFRESH)
    print(f"{DOMAIN}: read {count} records; broadcast full_refresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
