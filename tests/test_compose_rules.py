"""Keel's compose rules catch each start-order mistake from the seed post-mortem."""

import copy

import pytest

from generator.checks.compose import problems

GOOD = {
    "services": {
        "postgres": {"image": "postgres:16", "healthcheck": {"test": ["CMD", "pg_isready"]}},
        "migrate": {
            "image": "svc-worker",
            "command": ["migrate"],
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        },
        "worker": {
            "image": "svc-worker",
            "command": ["worker", "orders-match"],
            "healthcheck": {"test": ["CMD", "probe-worker", "orders-match"]},
            "depends_on": {"migrate": {"condition": "service_completed_successfully"}},
        },
    }
}


def changed(edit) -> dict:
    compose = copy.deepcopy(GOOD)
    edit(compose["services"])
    return compose


def test_a_good_file_has_no_problems():
    assert problems(GOOD) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s["migrate"].update(depends_on=["postgres"]), "migrate: depends_on uses"),
        (
            lambda s: s["migrate"]["depends_on"]["postgres"].update(condition="service_started"),
            "condition 'service_started'",
        ),
        (lambda s: s["postgres"].pop("healthcheck"), "postgres: database/broker service without"),
        (
            lambda s: s["worker"].update(healthcheck={"test": "curl -f http://localhost:8000/"}),
            "worker: worker with an HTTP healthcheck",
        ),
        (lambda s: s["worker"].pop("healthcheck"), "worker: worker without a liveness healthcheck"),
        (
            lambda s: s["worker"].update(depends_on={"postgres": {"condition": "service_healthy"}}),
            "worker: worker can start before migrations complete",
        ),
    ],
    ids=[
        "short-form",
        "service-started",
        "db-without-healthcheck",
        "worker-http",
        "worker-without-probe",
        "no-migrate",
    ],
)
def test_each_mistake_is_reported(edit, expected):
    assert any(expected in problem for problem in problems(changed(edit)))


def test_the_obsolete_version_key_is_reported():
    assert any("version" in problem for problem in problems({**GOOD, "version": "3.9"}))
