"""``worker``: run the Celery worker (``celery -A <package>.messaging.app worker``).

Extra arguments go to Celery, e.g. ``worker --concurrency=2``.
"""

import sys

from ..settings import SettingsError, get_settings


def main(argv: list[str] | None = None) -> int:
    try:
        get_settings()
    except SettingsError as error:
        print(f"worker: {error}", file=sys.stderr)
        return 2

    from .app import app

    arguments = sys.argv[1:] if argv is None else argv
    app.worker_main(["worker", "--loglevel=INFO", *arguments])
    return 0


if __name__ == "__main__":
    sys.exit(main())
