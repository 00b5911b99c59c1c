"""One version of each engine: copier.yml's `engines` names the RabbitMQ major.minor and the
PostgreSQL major once, and every place that names their images reads it."""

import re

import pytest
import yaml

from .conftest import REPOSITORY, VARIANTS, WORKFLOW

ENGINES = yaml.safe_load((REPOSITORY / "copier.yml").read_text())["engines"]["default"]
POSTGRES = f"postgres:{ENGINES['postgres']}-trixie"
RABBITMQ = f"rabbitmq:{ENGINES['rabbitmq']}-management"
# An image reference (postgres:16, rabbitmq:4.1-management), not a host:port (rabbitmq:15672).
ENGINE_IMAGE = re.compile(
    r"\b(?:postgres|rabbitmq):[0-9]{1,2}(?:\.[0-9]+)*(?:-[\w.-]+)?(?=[\s\"']|$)", re.MULTILINE
)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_compose_ci_and_the_cluster_run_the_pinned_versions(rendered, variant):
    tree = rendered[variant]
    compose = yaml.safe_load((tree / "compose.yaml").read_text())["services"]
    assert (compose["postgres"]["image"], compose["rabbitmq"]["image"]) == (POSTGRES, RABBITMQ)
    services = yaml.safe_load((tree / WORKFLOW).read_text())["jobs"]["test"]["services"]
    assert (services["postgres"]["image"], services["rabbitmq"]["image"]) == (POSTGRES, RABBITMQ)
    cluster = yaml.safe_load((tree / "deploy/base/rabbitmq-cluster.yaml").read_text())
    assert cluster["spec"]["image"] == RABBITMQ


def test_no_template_file_names_an_engine_version_of_its_own():
    """Every postgres:/rabbitmq: image in the template comes from `engines`, so a version
    typed into one file (and so differing from the others) is caught."""
    named = {
        str(path.relative_to(REPOSITORY)): ENGINE_IMAGE.findall(path.read_text())
        for path in (REPOSITORY / "template").rglob("*")
        if path.is_file()
    }
    assert {path: images for path, images in named.items() if images} == {}


def test_the_stand_ins_are_built_for_the_pinned_versions():
    from . import standins

    assert {POSTGRES, RABBITMQ} <= set(standins.IMAGES)


@pytest.mark.parametrize("variant", ["defaults", "django-quorum-arguments"])
def test_the_hosts_ca_certificates_stay_in_the_stand_ins(rendered, variant):
    """This machine's HTTPS needs its own CA bundle inside `docker build`; only the stand-in
    bases carry it, never a service's Dockerfile or compose file."""
    tree = rendered[variant]
    for name in ("Dockerfile", "compose.yaml", ".dockerignore"):
        text = (tree / name).read_text()
        assert "SSL_CERT_FILE" not in text and "ca-certificates" not in text, name
    assert "SSL_CERT_FILE" in (REPOSITORY / "tests/standins/python/Dockerfile").read_text()


def test_keels_own_ci_tests_on_the_pinned_versions():
    jobs = yaml.safe_load((REPOSITORY / WORKFLOW).read_text())["jobs"]
    images = {
        (name, service["image"])
        for job in jobs.values()
        for name, service in (job.get("services") or {}).items()
    }
    assert images == {("postgres", POSTGRES), ("rabbitmq", RABBITMQ)}
