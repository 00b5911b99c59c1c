"""Real PostgreSQL databases and native processes for the rendered-service tests."""

import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager

import psycopg

ADMIN_DSN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


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
