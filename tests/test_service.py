"""A rendered service installed and run natively against the machine's real PostgreSQL.

One service per framework is installed exactly as its README says (the README's native-run
block is executed as written, with unique database names). Every variant's CI test job is
then replayed on top of its framework's virtualenv, and the natively run services take the
fault drills (kill -9, broker cut, SIGTERM under load, poison messages: minutes each).
"""

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from . import containers, services
from .conftest import (
    ANSWER_SET,
    CONTAINER_SETS,
    NATIVE_SETS,
    REPOSITORY,
    VARIANTS,
    assert_replayed,
    assert_suite_passed,
    native_suite,
    replay_test_job,
    run,
    selected,
    waits_for_background,
)

pytestmark = pytest.mark.services


@pytest.mark.parametrize("framework", list(NATIVE_SETS))
def test_readme_native_run_gives_a_ready_service(natives, framework):
    native = natives[framework]
    assert native["answer"] == 200, native["log"].read_text()[-4000:]


@pytest.fixture(scope="session")
def suites(request, natives, rendered, stacks, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """Every variant's CI test job, its workflow steps replayed (install, ruff, lint-imports,
    generate-manifests --check, the service's own tests), and the drills, as futures: three
    at a time on two cores, since each spends about half its time waiting on workers,
    brokers and databases, and each uses its own databases and virtual host. The drills,
    the longest, go first.

    They run in the background from this module's first test on, while the rest of the
    session goes on: the tests that walk whole rendered trees (which the replays add a .venv
    and caches to) come earlier, as the test files run in name order; later ones read single
    files the replays leave alone; the tests that wait for these results run last
    (conftest.py)."""
    scratch = tmp_path_factory.mktemp("setup-python")
    tested = [ANSWER_SET] if ANSWER_SET else list(VARIANTS)
    with ThreadPoolExecutor(max_workers=3) as pool:
        drills = {
            f"{name} drills": pool.submit(native_suite, natives[framework], "-m", "drills")
            for framework, name in NATIVE_SETS.items()
            if name in tested
        }
        replays = {
            name: pool.submit(replay_test_job, natives, rendered[name], scratch / name)
            for name in tested
        }
        # Once more, on the PostgreSQL and RabbitMQ versions the service ships, in containers
        # (after the stacks, on the container work's own thread): the Django service, whose
        # quorum queues and argument-declared dead-lettering lean on the broker the most.
        shipped = {
            f"{NATIVE_SETS[framework]} on shipped engines": stacks["pool"].submit(
                containers.suite_on_shipped_engines, natives[framework], native_suite
            )
            for framework in CONTAINER_SETS
            if framework == SHIPPED_ENGINES_FRAMEWORK
            and selected(request, "::test_the_rendered_suite_passes_on_the_engine_versions")
        }
        yield {**drills, **replays, **shipped}


@pytest.fixture(scope="module", autouse=True)
def suites_under_way(request) -> None:
    if any(waits_for_background(item) for item in request.session.items):
        request.getfixturevalue("suites")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_rendered_workflow_steps_replayed_pass(suites, variant):
    assert_replayed(suites[variant].result())


@pytest.mark.parametrize("variant", list(NATIVE_SETS.values()))
def test_the_rendered_services_fault_drills_pass(suites, variant):
    assert_suite_passed(suites[f"{variant} drills"].result())


SHIPPED_ENGINES_FRAMEWORK = "django"


@pytest.mark.containers
@pytest.mark.parametrize("variant", [NATIVE_SETS[SHIPPED_ENGINES_FRAMEWORK]])
def test_the_rendered_suite_passes_on_the_engine_versions_it_ships(suites, stacks, variant):
    """The natively run service's own suite, against PostgreSQL and RabbitMQ containers of
    the versions its compose file, CI and RabbitmqCluster name (copier.yml's `engines`)."""
    found = suites[f"{variant} on shipped engines"].result()
    engines = yaml.safe_load((REPOSITORY / "copier.yml").read_text())["engines"]["default"]
    print(f"{variant} on {found['versions']}")
    assert found["versions"]["postgres"].split(".")[0] == engines["postgres"]
    assert found["versions"]["rabbitmq"].startswith(engines["rabbitmq"] + ".")
    assert_suite_passed(found["result"])


def entrypoint_env(native, urls: dict[str, str], **extra) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.endswith("DATABASE_URL")
    }
    environment["PATH"] = f"{native['bin']}:{environment['PATH']}"
    for domain, url in urls.items():
        environment[f"{domain.upper()}_DATABASE_URL"] = url
    return {**environment, **extra}


def domains_of(native) -> list[str]:
    return yaml.safe_load((native["tree"] / ".copier-answers.yml").read_text())["domains"]


def test_entrypoint_gives_up_on_an_unreachable_database_naming_it(native):
    urls = {
        domain: f"postgresql://postgres@127.0.0.1:1/{domain}_db" for domain in domains_of(native)
    }
    result = subprocess.run(
        ["docker/entrypoint.sh", "serve-api"],
        cwd=native["tree"],
        env=entrypoint_env(native, urls, DATABASE_WAIT_SECONDS="2"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    first = domains_of(native)[0]
    assert result.returncode == 1
    assert f"waiting for the {first} database at 127.0.0.1:1/{first}_db" in result.stdout
    assert f"the {first} database at 127.0.0.1:1/{first}_db was not reachable" in result.stderr
    assert f"{first.upper()}_DATABASE_URL" in result.stderr


def test_entrypoint_waits_for_a_database_that_appears_later(native):
    domains = domains_of(native)
    prefix = services.unique_prefix()
    names = {domain: f"{prefix}_{domain}" for domain in domains}
    late = domains[-1]
    with services.dropped_afterwards(list(names.values())):
        for domain, name in names.items():
            if domain != late:
                services.create_database(name)
        creator = threading.Timer(3, services.create_database, args=[names[late]])
        creator.start()
        result = subprocess.run(
            ["docker/entrypoint.sh", "migrate"],
            cwd=native["tree"],
            env=entrypoint_env(
                native,
                {domain: services.database_url(name) for domain, name in names.items()},
                DATABASE_WAIT_SECONDS="60",
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        creator.join()
    assert result.returncode == 0, result.stderr
    assert f"waiting for the {late} database" in result.stdout
    assert f"the {late} database is up" in result.stdout
    assert result.stdout.rstrip().endswith(f"migrating {late} to head")


def test_entrypoint_execs_the_server_which_is_ready_after_migrate_and_stops_on_sigterm(native):
    prefix = services.unique_prefix()
    names = {domain: f"{prefix}_{domain}" for domain in domains_of(native)}
    port = services.free_port()
    ready = f"http://127.0.0.1:{port}/health/ready"
    with services.dropped_afterwards(list(names.values())):
        for name in names.values():
            services.create_database(name)
        environment = entrypoint_env(
            native, {domain: services.database_url(name) for domain, name in names.items()}
        )
        server = subprocess.Popen(
            ["docker/entrypoint.sh", "serve-api", "--port", str(port)],
            cwd=native["tree"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert services.wait_for_status(ready, server, limit_seconds=60) == 503
            command_line = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
            assert any(part.endswith(b"serve-api") for part in command_line), command_line
            assert not any(part.endswith(b"entrypoint.sh") for part in command_line)

            run(native["bin"] / "migrate", cwd=native["tree"], env=environment)
            assert services.status(ready) == 200
        finally:
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=30)
    # uvicorn finishes in-flight work, then re-raises the signal so a supervisor sees why it
    # stopped (exit 143 in a container): a graceful stop, not a crash.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete." in output
    assert "Finished server process" in output


def test_the_drift_test_names_the_command_until_it_is_run(native, tmp_path):
    """A queue added to topology.yaml without `generate-manifests` fails the service's tests."""
    tree = tmp_path / "service"
    shutil.copytree(native["tree"], tree, ignore=shutil.ignore_patterns(".venv", "*.log"))
    topology_file = next(tree.glob("src/*/topology.yaml"))
    topology = yaml.safe_load(topology_file.read_text())
    domain, spec = next(iter(topology["domains"].items()))
    match_worker = next(q["worker"] for q in spec["queues"].values() if q["kind"] == "match")
    spec["queues"]["audit"] = {"kind": "task", "worker": match_worker, "tasks": [f"{domain}.audit"]}
    topology_file.write_text(yaml.safe_dump(topology, sort_keys=False))
    drift_test_id = "tests/test_kubernetes.py::test_committed_manifests_match_the_topology"
    environment = {**os.environ, "PYTHONPATH": str(tree / "src")}
    python = native["bin"] / "python"

    def drift_test():
        return run(
            python, "-m", "pytest", "-q", "-p", "no:cacheprovider", drift_test_id,
            cwd=tree, env=environment, check=False,
        )  # fmt: skip

    stale = drift_test()
    assert stale.returncode == 1, stale.stdout[-2000:]
    assert "run `generate-manifests`" in stale.stdout

    run(native["bin"] / "generate-manifests", cwd=tree, env=environment)
    fresh = drift_test()
    assert fresh.returncode == 0, fresh.stdout[-2000:]
    assert f"{domain}.audit" in (tree / "deploy/base/generated/rabbitmq.yaml").read_text()
