"""Each framework's rendered stack run as a user runs it: `docker compose up --build --wait`
on a real Docker Engine, then the start order, the HTTP contract, PID 1, graceful stops under
load, faults inside containers, the images as built and a clean `down -v`.

The work runs in the background (conftest.py's `stacks`, tests/containers.py) while the rest
of the session goes on; these tests wait for its findings, so they run last."""

import re

import pytest

from .conftest import CONTAINER_SETS
from .test_service_contract import EXPECTED

pytestmark = [pytest.mark.services, pytest.mark.containers]

FRAMEWORKS = list(CONTAINER_SETS)


def test_the_images_the_stacks_pull_are_here_official_or_stood_in(stacks):
    found = stacks["images"].result()
    print(found)
    assert set(found.values()) <= {"present", "pulled", "built"}, found


def found(stacks, framework: str, key: str):
    facts = stacks[framework].result()
    assert "error" not in facts.get("up", {}), facts["up"]
    value = facts[key]
    assert not (isinstance(value, dict) and "error" in value), value
    return value


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_rendered_ci_compose_job_builds_starts_and_smoke_tests_the_stack(stacks, framework):
    steps = stacks[framework].result()["ci job"]
    assert not isinstance(steps, dict), steps
    failed = [step for step in steps if step[1] != 0]
    assert not failed, f"step {failed[0][0]!r} failed:\n{failed[0][2]}"
    assert [step[0] for step in steps] == [
        "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1",
        "Start the stack",
        "Smoke test",
        "Stop the stack",
    ]
    assert "smoke: ready, a match served, reward" in steps[2][2]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_smoke_test_fails_in_one_line_when_a_reward_is_not_saved_or_the_api_is_down(
    stacks, framework
):
    faults = found(stacks, framework, "smoke test faults")
    domain = stacks[framework].result()["contract domain"]
    worker_code, worker_said = faults[f"{domain.replace('_', '-')}-reward"]
    assert worker_code == 1 and len(worker_said.splitlines()) == 1, worker_said
    assert re.fullmatch(
        rf"smoke: reward [0-9a-f-]+ was not saved in {domain} within 3 s\n", worker_said
    ), worker_said
    api_code, api_said = faults["api"]
    assert api_code == 1 and api_said.startswith("smoke: GET http://127.0.0.1:"), api_said
    assert api_said.endswith("/health/ready did not answer 200\n"), api_said


def first(events: list[dict], service: str, action: str, exit_code: str | None = None) -> int:
    times = [
        event["time"]
        for event in events
        if event["service"] == service
        and event["action"] == action
        and (exit_code is None or event["exit"] == exit_code)
    ]
    assert times, f"the engine saw no {action} of {service}"
    return min(times)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_service_starts_after_what_compose_says_it_waits_for(stacks, framework):
    events = found(stacks, framework, "events")
    conditions = found(stacks, framework, "conditions")
    app = found(stacks, framework, "app services")
    expected = {
        ("migrate", "postgres", "service_healthy"),
        ("topology", "postgres", "service_healthy"),
        ("topology", "rabbitmq", "service_healthy"),
        *((name, setup, "service_completed_successfully")
          for name in app for setup in ("migrate", "topology")),
    }  # fmt: skip
    assert expected <= set(conditions), sorted(expected - set(conditions))
    for service, dependency, condition in conditions:
        started = first(events, service, "start")
        if condition == "service_healthy":
            ready = first(events, dependency, "health_status: healthy")
        else:
            ready = first(events, dependency, "die", exit_code="0")
        assert ready < started, f"{service} started before {dependency} was {condition}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_stack_keeps_the_http_contract_on_its_published_port(stacks, framework):
    answers = found(stacks, framework, "contract")
    domain = stacks[framework].result()["contract domain"]
    assert answers == [(what.format(domain=domain), code, body) for what, code, body in EXPECTED]


#: What PID 1 may be for each command: the command itself, or the server it execs.
RUNS_AS = {"serve-api": {"serve-api", "gunicorn"}, "worker": {"worker"}}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_pid_1_of_the_api_and_every_worker_is_its_server_not_a_shell(stacks, framework):
    pid1 = found(stacks, framework, "pid 1")
    app = found(stacks, framework, "app services")
    assert set(pid1) == set(app) and "api" in app and len(app) >= 3, pid1
    for service, command in app.items():
        programs = [part.rsplit("/", 1)[-1] for part in pid1[service][:2]]
        assert programs[0] not in {"sh", "bash", "dash"}, (service, pid1[service])
        assert RUNS_AS[command] & set(programs), (service, pid1[service])


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["reward", "api"])
def test_stopping_under_load_is_graceful_and_loses_nothing(stacks, framework, kind):
    domain = stacks[framework].result()["contract domain"]
    service = "api" if kind == "api" else f"{domain.replace('_', '-')}-reward"
    stop = found(stacks, framework, f"stop {service}")
    print(f"{framework}: docker compose stop {service} took {stop['seconds']} s")
    assert stop["exit"] == 0, stop
    assert stop["accepted"] > 0 and stop["lost"] == [], stop


def test_a_copy_without_exec_is_seen_failing_the_stop_check(stacks):
    broken = found(stacks, "fastapi", "without exec")
    print(f"without exec: docker compose stop api took {broken['seconds']} s")
    assert broken["pid 1"][0].rsplit("/", 1)[-1] == "bash", broken
    assert broken["exit"] == 137, broken


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_ci_jobs_down_v_leaves_no_container_volume_or_network(stacks, framework):
    assert stacks[framework].result()["leftovers"] == {
        "containers": [],
        "volumes": [],
        "networks": [],
    }


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_stopped_database_makes_the_api_unready_but_alive_until_it_returns(stacks, framework):
    outage = found(stacks, framework, "postgres stopped")
    assert outage == {"ready": 503, "live": 200, "ready again": 200, "api restarted": False}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_restarting_rabbitmq_under_reward_load_loses_nothing(stacks, framework):
    restart = found(stacks, framework, "rabbitmq restarted")
    assert restart["accepted"] > 0 and restart["lost"] == [], restart


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_only_the_api_image_can_import_the_web_framework(stacks, framework):
    images = found(stacks, framework, "images")
    assert all(images["api"]["imports"].values()), images["api"]["imports"]
    assert not any(images["worker"]["imports"].values()), images["worker"]["imports"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("target", ["api", "worker"])
def test_each_image_runs_as_uid_10001_with_exactly_the_locked_set(stacks, framework, target):
    image = found(stacks, framework, "images")[target]
    assert image["uid"] == "10001"
    assert image["installed"] == image["locked"]
    # The service itself is installed into the image's virtualenv, not linked to /build.
    assert image["own distribution"] is not None
    assert image["own package"].startswith("/opt/venv/lib/"), image["own package"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_containers_root_filesystem_is_read_only_but_tmp_is_writable(stacks, framework):
    for service, state in found(stacks, framework, "read-only").items():
        assert state == {"ReadonlyRootfs": True, "writes /opt/venv": False, "writes /tmp": True}, (
            service
        )
