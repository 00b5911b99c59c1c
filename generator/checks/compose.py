"""Start-order and liveness rules for a docker compose file (lessons L1 and L4).

Each rule returns problems as ``"<service>: <what is wrong>"``; an empty list means the
file follows the rules.
"""

from collections.abc import Iterator

INFRASTRUCTURE_IMAGES = ("postgres", "rabbitmq", "redis", "mariadb", "mysql")
HTTP_PROBES = ("curl", "wget", "http://", "https://", "check-ready", "/health", ":8000")
ONE_SHOT = "service_completed_successfully"


def command(service: dict) -> list[str]:
    """The service's command (or, without one, its entrypoint) as words."""
    given = service.get("command") or service.get("entrypoint") or []
    return given.split() if isinstance(given, str) else [str(part) for part in given]


def _image_name(service: dict) -> str:
    return str(service.get("image", "")).rsplit("/", 1)[-1].split(":", 1)[0]


def is_infrastructure(service: dict) -> bool:
    return _image_name(service).startswith(INFRASTRUCTURE_IMAGES)


def is_worker(service: dict) -> bool:
    words = command(service)
    return bool(words) and (words[0] == "worker" or ("celery" in words and "worker" in words))


def healthcheck_test(service: dict) -> str:
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return ""
    test = check.get("test") or ""
    return " ".join(test) if isinstance(test, list) else str(test)


def problems(compose: dict) -> list[str]:
    return list(_problems(compose))


def _problems(compose: dict) -> Iterator[str]:
    if "version" in compose:
        yield "compose file: the top-level `version` key is obsolete; remove it"
    services = compose.get("services") or {}
    for name, service in services.items():
        yield from (f"{name}: {problem}" for problem in _service_problems(service, services))


def _service_problems(service: dict, services: dict) -> Iterator[str]:
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        yield "depends_on uses the short form; give every dependency a condition"
        depends_on = {}
    for dependency, spec in depends_on.items():
        condition = spec.get("condition") if isinstance(spec, dict) else None
        if condition not in ("service_healthy", ONE_SHOT):
            yield (
                f"depends_on {dependency} has condition {condition!r}; use service_healthy "
                f"(or {ONE_SHOT} for a one-shot service)"
            )
        elif condition == "service_healthy" and not healthcheck_test(services.get(dependency, {})):
            yield f"depends_on {dependency} being healthy, but {dependency} has no healthcheck"
    test = healthcheck_test(service)
    if is_infrastructure(service) and not test:
        yield "database/broker service without a healthcheck"
    if is_worker(service):
        if not test:
            yield "worker without a liveness healthcheck (e.g. probe-worker reading a heartbeat)"
        elif any(marker in test for marker in HTTP_PROBES):
            yield "worker with an HTTP healthcheck; workers serve no HTTP"
        if not any(
            isinstance(spec, dict) and spec.get("condition") == ONE_SHOT
            for spec in depends_on.values()
        ):
            yield f"worker can start before migrations complete; depend on them with {ONE_SHOT}"
