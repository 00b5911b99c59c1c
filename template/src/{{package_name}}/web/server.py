"""``serve-api``: run the API with uvicorn, failing fast on bad configuration."""

import argparse
import sys

import uvicorn

from ..faults import entry_point
from ..messaging.topology import load
from ..settings import get_settings


@entry_point("serve-api")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve-api", description="Serve the HTTP API.")
    parser.add_argument("--host", help="address to listen on (default: HOST, or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT, or 8000)")
    args = parser.parse_args(argv)
    settings = get_settings()
    # The app imports the Celery app, which reads topology.yaml: a bad file is reported
    # here in one line rather than as an import traceback inside uvicorn. A database that
    # is down is no reason to stop: readiness answers 503 until it is back.
    load()
    uvicorn.run(
        f"{__package__}.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
