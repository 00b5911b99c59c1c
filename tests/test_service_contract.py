"""One HTTP contract, two frameworks: the FastAPI and the Django service, each installed
and started as its README says, with its workers, answer the same requests the same way,
including readiness while a domain database refuses connections."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from . import services
from .conftest import NATIVE_SETS

pytestmark = pytest.mark.services

WORKER_READY_SECONDS = 60


def request(base: str, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def as_json(content: bytes):
    try:
        return json.loads(content)
    except ValueError:
        return None


def native_sql(database: str, statement: str) -> str:
    """One statement on the machine's PostgreSQL; its first value, as text."""
    with psycopg.connect(services.database_url(database), autocommit=True) as connection:
        cursor = connection.execute(statement)
        row = cursor.fetchone() if cursor.description else None
        return "" if row is None else str(row[0])


def refuse_connections(sql, database: str, refused: bool) -> None:
    sql("postgres", f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {not refused}')
    if refused:  # and drop the connections already open, as a restarting database does
        sql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}'")  # fmt: skip


def start_worker(native, name: str, log: Path) -> subprocess.Popen:
    environment = {**os.environ, **native["environment"]}
    environment["PATH"] = f"{native['bin']}:{environment['PATH']}"
    environment["WORKER_HEARTBEAT_DIR"] = str(log.parent)
    with log.open("w") as output:
        worker = subprocess.Popen(
            [native["bin"] / "worker", name],
            cwd=native["tree"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WORKER_READY_SECONDS
    while " ready." not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return worker


def eventually(check, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def answers(natives, tmp_path_factory) -> dict[str, list]:
    """Each framework's answers to the contract's requests, in order."""
    found = {}
    for framework, native in natives.items():
        domain, database = next(iter(native["databases"].items()))
        native_sql(database, RECORD)
        logs = tmp_path_factory.mktemp(f"contract-{framework}")
        slug = domain.replace("_", "-")
        workers = [start_worker(native, f"{slug}-{kind}", logs / f"{kind}.log")
                   for kind in ("match", "reward")]  # fmt: skip
        try:
            found[framework] = contract(native["url"], domain, database, native_sql)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=60)
    return found


#: The record the contract's match finds, inserted before the match workers load their cache.
RECORD = "INSERT INTO records (key, value) VALUES ('k', 'v')"


def contract(base: str, domain: str, database: str, sql) -> list:
    """(what was asked, status, JSON body with the generated event id blanked) per request;
    `sql(database, statement)` runs a statement where the service's databases are."""
    asked = [
        ("GET", "/health/live", None),
        ("GET", "/health/ready", None),
        ("GET", f"/{domain}/match/k", None),
        ("GET", f"/{domain}/match/absent", None),
        ("GET", "/no_such_domain/match/k", None),
        ("POST", f"/{domain}/rewards", {"subject": "contract", "points": 7}),
        ("POST", f"/{domain}/rewards", {"subject": "contract"}),
        ("POST", f"/{domain}/rewards", {"subject": "contract", "points": "7"}),
        ("POST", "/no_such_domain/rewards", {"subject": "contract", "points": 7}),
    ]
    results = []
    for method, path, body in asked:
        status, content = request(base, method, path, body)
        parsed = as_json(content) if status < 400 or status == 503 else None
        if isinstance(parsed, dict) and "event_id" in parsed:
            parsed = {**parsed, "event_id": "<id>"}
        results.append((f"{method} {path}", status, parsed))
    saved = eventually(lambda: sql(database, "SELECT count(*) FROM rewards") == "1")
    results.append(("the reward saved", saved, None))
    status, content = request(base, "GET", "/health/details")
    details = as_json(content) or {}
    results.append(("GET /health/details", status, details.get("broker")))
    # Readiness follows a domain database refusing connections, and its return.
    refuse_connections(sql, database, True)
    try:
        results.append(("ready while refused", *request(base, "GET", "/health/ready")))
    finally:
        refuse_connections(sql, database, False)
    results.append(("ready again", *request(base, "GET", "/health/ready")))
    return [(what, status, as_json(body) if isinstance(body, bytes) else body)
            for what, status, body in results]  # fmt: skip


EXPECTED = [
    ("GET /health/live", 200, {"status": "alive"}),
    ("GET /health/ready", 200, {"status": "ready"}),
    ("GET /{domain}/match/k", 200, {"key": "k", "value": "v"}),
    ("GET /{domain}/match/absent", 200, {"key": "absent", "value": None}),
    ("GET /no_such_domain/match/k", 404, None),
    ("POST /{domain}/rewards", 202, {"event_id": "<id>"}),
    ("POST /{domain}/rewards", 422, None),
    ("POST /{domain}/rewards", 422, None),
    ("POST /no_such_domain/rewards", 404, None),
    ("the reward saved", True, None),
    ("GET /health/details", 200, "reachable"),
    ("ready while refused", 503, {"status": "unavailable"}),
    ("ready again", 200, {"status": "ready"}),
]


@pytest.mark.parametrize("framework", list(NATIVE_SETS))
def test_the_service_keeps_the_http_contract(answers, natives, framework):
    domain = next(iter(natives[framework]["databases"]))
    expected = [(what.format(domain=domain), status, body) for what, status, body in EXPECTED]
    assert answers[framework] == expected


def test_both_frameworks_answer_alike(answers):
    assert answers["fastapi"] == answers["django"]
