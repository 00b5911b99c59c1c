"""Compose files: start order (L1) and worker liveness (L4)."""

from collections.abc import Iterator

from .. import compose as shared
from ..findings import Finding, Tree, child, items, line_of, value
from . import rule


def services(tree: Tree):
    for path in tree.compose_files:
        for document in tree.yaml_nodes(path):
            for name, service in items(child(document, "services")):
                yield tree.relative(path), name, service


def command_text(service) -> str:
    return " ".join(shared.command(value(service) or {}))


@rule(
    "L1a",
    "depends_on in the short form",
    prevents="a worker starting before the database is ready or migrated, failing with "
    '"relation does not exist": the short form only orders container starts',
    fix="use the long form with `condition: service_healthy` (or "
    "`service_completed_successfully` for a one-shot migration service)",
)
def short_depends_on(tree: Tree) -> Iterator[Finding]:
    for path, name, service in services(tree):
        depends = child(service, "depends_on")
        if depends is not None and depends.tag.endswith("seq"):
            yield Finding(
                path,
                line_of(depends),
                1,
                "L1a",
                f"{name}: depends_on in the short form waits for nothing; "
                "give each dependency a condition",
            )


@rule(
    "L1b",
    "depends_on without a health condition",
    prevents="the same start-order failures as L1a: `service_started` (the default) waits "
    "only for the container to exist",
    fix="`condition: service_healthy` on a service with a real healthcheck, or "
    "`service_completed_successfully` on a one-shot service",
)
def conditionless_depends_on(tree: Tree) -> Iterator[Finding]:
    for path, name, service in services(tree):
        for dependency, spec in items(child(service, "depends_on")):
            condition = value(child(spec, "condition"))
            if condition not in ("service_healthy", "service_completed_successfully"):
                yield Finding(
                    path,
                    line_of(spec),
                    1,
                    "L1b",
                    f"{name}: depends_on {dependency} has condition "
                    f"{condition or 'service_started'}; use service_healthy",
                )


@rule(
    "L1c",
    "database or broker without a healthcheck",
    prevents="`service_healthy` has nothing to wait on, so dependants start too early",
    fix="give PostgreSQL (`pg_isready`), RabbitMQ (`rabbitmq-diagnostics -q ping`) and Redis "
    "(`redis-cli ping`) a healthcheck",
)
def infrastructure_healthcheck(tree: Tree) -> Iterator[Finding]:
    for path, name, service in services(tree):
        spec = value(service) or {}
        if shared.is_infrastructure(spec) and not shared.healthcheck_test(spec):
            image = str(spec.get("image", "")).rsplit("/", 1)[-1]
            yield Finding(path, line_of(service), 1, "L1c", f"{name}: {image} has no healthcheck")


@rule(
    "L4",
    "worker with an HTTP healthcheck",
    prevents="a Celery worker, which serves no HTTP, marked unhealthy forever (and the "
    '"fix" of disabling its healthcheck)',
    fix="probe the worker with a heartbeat file a worker bootstep touches (Keel: "
    "`probe-worker`), never with curl",
)
def worker_http_healthcheck(tree: Tree) -> Iterator[Finding]:
    for path, name, service in services(tree):
        spec = value(service) or {}
        check = child(service, "healthcheck", "test")
        test = shared.healthcheck_test(spec)
        if shared.is_worker(spec) and any(probe in test for probe in shared.HTTP_PROBES):
            yield Finding(
                path, line_of(check), 1, "L4", f"{name}: a worker probed over HTTP; it serves none"
            )
