"""What every benchmark needs: the default service, rendered and installed as its README
says, and a throw-away set of its databases and a RabbitMQ virtual host to measure in.

A benchmark script runs twice: first with the caller's Python, which renders and installs
the service (`run_in_service`), then again with the service's own Python and `--measure
SERVICE` added, which measures inside `throwaway_environment` (migrated, topology declared).
"""

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path


def prepare(scratch: Path, uncommitted: bool = False) -> Path:
    service = scratch / "service"
    keel = Path(sys.executable).parent / "keel"
    reference = [] if uncommitted else ["--vcs-ref", "HEAD"]
    subprocess.run(
        [keel, "new", service, "--defaults", *reference], check=True, capture_output=True
    )
    subprocess.run([sys.executable, "-m", "venv", service / ".venv"], check=True)
    subprocess.run(
        [service / ".venv/bin/pip", "install", "-q", "-e", ".[web,test]"],
        cwd=service,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return service


def run_in_service(script: str, arguments: list[str], uncommitted: bool = False) -> None:
    """Render and install the default service, then run `script --measure` in it."""
    with tempfile.TemporaryDirectory(prefix="keel-benchmark-") as scratch:
        print("rendering and installing the default service...", flush=True)
        service = prepare(Path(scratch), uncommitted)
        subprocess.run(
            [service / ".venv/bin/python", script, "--measure", str(service), *arguments],
            cwd=service,
            check=True,
        )


@contextmanager
def throwaway_environment(service: str, name: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Point this process at new databases and a new virtual host; yields the service's
    package and domains, and removes everything afterwards."""
    import yaml

    sys.path.insert(0, service)
    from tests import rabbitmq, sql  # the service's own throw-away helpers

    prefix = f"{name}_{uuid.uuid4().hex[:8]}"
    os.environ["BROKER_URL"] = rabbitmq.create_vhost()
    os.environ["RABBITMQ_MANAGEMENT_URL"] = rabbitmq.MANAGEMENT_URL
    os.environ["WORKER_HEARTBEAT_DIR"] = tempfile.mkdtemp()
    answers = yaml.safe_load(Path(service, ".copier-answers.yml").read_text())
    package = answers["package_name"]
    domains = import_module(f"{package}.settings").DOMAINS
    names = {domain: f"{prefix}_{domain}" for domain in domains}
    sql.administer(*(f'CREATE DATABASE "{name}"' for name in names.values()))
    for domain, name in names.items():
        os.environ[f"{domain.upper()}_DATABASE_URL"] = sql.database_url(name)
    try:
        # Ready to measure: every domain at head, the topology declared as the operator would.
        import_module(f"{package}.migrate").upgrade_all()
        broker = import_module(f"{package}.messaging.broker")
        objects = broker.broker_objects(import_module(f"{package}.messaging.topology").load())
        broker.declare(objects, os.environ["BROKER_URL"], os.environ["RABBITMQ_MANAGEMENT_URL"])
        yield package, domains
    finally:
        rabbitmq.delete_vhost(os.environ["BROKER_URL"])
        import_module(f"{package}.orm").reset_connections()
        sql.administer(*(f'DROP DATABASE "{name}" WITH (FORCE)' for name in names.values()))
