"""Real PostgreSQL databases and native processes for the rendered-service tests."""

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager

import psycopg

ADMIN_DSN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
MANAGEMENT_URL = os.environ.get(
    "TEST_RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"
)


def database_url(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


def create_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unique_prefix() -> str:
    return f"keel_{uuid.uuid4().hex[:10]}"


@contextmanager
def dropped_afterwards(names: list[str]):
    try:
        yield names
    finally:
        for name in names:
            drop_database(name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_for_status(url: str, process, limit_seconds: float) -> int | None:
    """Poll until the URL answers at all; fail fast if the process died meanwhile."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        answer = status(url)
        if answer is not None:
            return answer
        if process.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def _management(method: str, path: str, body=None) -> None:
    parts = urllib.parse.urlsplit(MANAGEMENT_URL)
    request = urllib.request.Request(
        f"{parts.scheme}://{parts.hostname}:{parts.port}/api/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"},
    )
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request.add_header("authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10):
        pass


@contextmanager
def virtual_host():
    """A throw-away RabbitMQ virtual host; yields the broker URL that points at it."""
    name = f"keel-{uuid.uuid4().hex[:10]}"
    _management("PUT", f"vhosts/{name}")
    user = urllib.parse.urlsplit(MANAGEMENT_URL).username
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    _management("PUT", f"permissions/{name}/{user}", everything)
    try:
        yield f"{AMQP_URL}/{name}"
    finally:
        _management("DELETE", f"vhosts/{name}")
