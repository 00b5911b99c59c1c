"""What ``serve-api`` does before the framework's server takes over: read where to listen
and check the configuration, so that a fault is one line here rather than a traceback
inside the server. A database that is down is no reason to stop: readiness answers 503
until it is back."""

import argparse

from .messaging.topology import load
from .settings import get_settings


def listen_address(argv: list[str] | None) -> tuple[str, int]:
    parser = argparse.ArgumentParser(prog="serve-api", description="Serve the HTTP API.")
    parser.add_argument("--host", help="address to listen on (default: HOST, or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT, or 8000)")
    args = parser.parse_args(argv)
    settings = get_settings()
    load()  # the API imports the Celery app, which reads topology.yaml
    return args.host or settings.host, settings.port if args.port is None else args.port
