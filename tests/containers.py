"""A rendered service's compose stack, run for real on the Docker Engine (scripts/engine).

`Stack` drives one compose project with a name and an api port of its own, so stacks never
meet each other or a user's. It records what the engine says happened (`docker events`)
and answers in data, which the tests in test_containers.py assert on."""

import base64
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import yaml
from packaging.utils import canonicalize_name

from . import services
from .conftest import run
from .services import status


def docker(*args: str, cwd: Path | None = None, env=None, check=True, timeout=900) -> str:
    """A docker command's output; a failure fails the test (conftest.run)."""
    return run("docker", *args, cwd=cwd, env=env, check=check, timeout=timeout).stdout


class Stack:
    def __init__(self, tree: Path):
        self.tree = tree
        self.project = f"keel-{uuid.uuid4().hex[:10]}"
        self.port = services.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": self.project, "API_PORT": str(self.port)}
        self._events: subprocess.Popen | None = None
        self._event_lines: list[str] = []

    def compose(self, *args: str, check=True, timeout=900) -> str:
        return docker("compose", *args, cwd=self.tree, env=self.env, check=check, timeout=timeout)

    # --- what the engine saw ---------------------------------------------------------------

    def watch_events(self) -> None:
        """Start recording the engine's container events for this project."""
        self._events = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}",
             "--filter", f"label=com.docker.compose.project={self.project}",
             "--filter", "type=container"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        reader = threading.Thread(target=self._read_events, daemon=True)
        reader.start()

    def _read_events(self) -> None:
        for line in self._events.stdout:
            self._event_lines.append(line)

    def events(self) -> list[dict]:
        """(service, action, exit code, time in ns) of every container event so far."""
        found = []
        for line in list(self._event_lines):
            event = json.loads(line)
            attributes = event.get("Actor", {}).get("Attributes", {})
            found.append({
                "service": attributes.get("com.docker.compose.service"),
                "action": event.get("Action", event.get("status", "")),
                "exit": attributes.get("exitCode"),
                "time": event.get("timeNano", 0),
            })  # fmt: skip
        return found

    def conditions(self) -> list[tuple[str, str, str]]:
        """(service, dependency, condition) as compose records the start order."""
        config = json.loads(self.compose("config", "--format", "json"))
        return [
            (name, dependency, rule.get("condition", "service_started"))
            for name, service in config["services"].items()
            for dependency, rule in (service.get("depends_on") or {}).items()
        ]

    def container(self, service: str) -> dict:
        ids = self.compose("ps", "--all", "--quiet", service).split()
        if not ids:
            raise LookupError(f"no container for {service}")
        return json.loads(docker("inspect", ids[0]))[0]

    def pid1(self, service: str) -> list[str]:
        """The command line of PID 1 inside the service's container."""
        raw = self.compose("exec", "-T", service, "cat", "/proc/1/cmdline")
        return [part for part in raw.split("\0") if part]

    def sql(self, database: str, statement: str) -> str:
        """One statement through psql inside the postgres container; its first value."""
        return self.compose(
            "exec", "-T", "postgres", "psql", "--username", "app", "--dbname", database,
            "--tuples-only", "--no-align", "-v", "ON_ERROR_STOP=1", "--command", statement,
        ).strip()  # fmt: skip

    def timed_stop(self, service: str) -> dict:
        """`docker compose stop SERVICE`: how long it took and how the container exited."""
        started = time.monotonic()
        self.compose("stop", service)
        seconds = time.monotonic() - started
        state = self.container(service)["State"]
        return {"seconds": round(seconds, 1), "exit": state["ExitCode"]}

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks of this project that the engine still has."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            kind: docker(*command, "--filter", label).split()
            for kind, command in {
                "containers": ("ps", "--all", "--quiet"),
                "volumes": ("volume", "ls", "--quiet"),
                "networks": ("network", "ls", "--quiet"),
            }.items()
        }

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
        if self._events is not None:
            self._events.terminate()
            self._events.wait(timeout=10)


# --- the scenario the tests assert on ------------------------------------------------------

#: What each framework's api image has and its worker image must not: the `web` extra.
WEB_MODULES = {"fastapi": ["fastapi", "uvicorn"], "django": ["gunicorn"]}
SHELLS = {"sh", "bash", "dash"}
PATIENCE = 120


def attempt(facts: dict, key: str, step) -> None:
    """Record what a step found, or the error that stopped it, so one failure shows in the
    test that asserts on it and the others still run."""
    try:
        facts[key] = step()
    except (Exception, pytest.fail.Exception) as error:  # the error is the finding
        facts[key] = {"error": f"{type(error).__name__}: {error}"}


def eventually(check, seconds: float = PATIENCE):
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


class Load(threading.Thread):
    """Rewards posted one after another until stopped; remembers the ids of those accepted."""

    def __init__(self, url: str, domain: str, subject: str):
        super().__init__(daemon=True)
        self.target = f"{url}/{domain}/rewards"
        self.subject = subject
        self.accepted: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        body = json.dumps({"subject": self.subject, "points": 1}).encode()
        while not self.halt.is_set():
            request = urllib.request.Request(
                self.target, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 202:
                        self.accepted.append(json.loads(response.read())["event_id"])
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.05)  # refused while the api or the broker is down

    def stop(self) -> "Load":
        self.halt.set()
        self.join(timeout=30)
        return self


def app_services(stack: Stack) -> dict[str, str]:
    """Long-running services (the api and every worker: what waits for migrate) and the
    command each runs, its own or its image's."""
    config = json.loads(stack.compose("config", "--format", "json"))
    found = {}
    for name, service in config["services"].items():
        if "migrate" not in (service.get("depends_on") or {}):
            continue
        command = service.get("command")
        if not command:
            image = json.loads(docker("image", "inspect", service["image"]))[0]
            command = image["Config"]["Cmd"]
        found[name] = command[0]
    return found


def saved(stack: Stack, domain: str, subject: str) -> set[str]:
    query = f"SELECT string_agg(event_id::text, ' ') FROM rewards WHERE subject = '{subject}'"
    return set(stack.sql(domain, query).split())


def under_load(stack: Stack, domain: str, subject: str, action) -> dict:
    """Post rewards while `action()` runs; then every accepted reward must be saved."""
    load = Load(stack.url, domain, subject)
    load.start()
    eventually(lambda: len(load.accepted) >= 50, 30)
    found = action()
    time.sleep(1)
    load.stop()
    accepted = set(load.accepted)
    eventually(lambda: accepted <= saved(stack, domain, subject))
    found["accepted"] = len(accepted)
    found["lost"] = sorted(accepted - saved(stack, domain, subject))
    return found


def image_facts(stack: Stack, framework: str) -> dict:
    """Per image: which web modules import, the user it runs as, what it has installed next
    to what uv.lock holds for its target, and where the service's own package lives."""
    from .test_lock import locked_set

    answers = yaml.safe_load((stack.tree / ".copier-answers.yml").read_text())
    listing = (
        "import importlib.metadata as m, json, {package} as own; print(json.dumps("
        "[own.__file__, {{d.metadata['Name']: d.version for d in m.distributions()}}]))"
    ).format(package=answers["package_name"])
    facts = {}
    for target, extras in (("api", ["web"]), ("worker", [])):
        image = f"{answers['project_slug']}-{target}:dev"

        def python(code: str, image=image) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["docker", "run", "--rm", "--read-only", "--entrypoint", "python", image,
                 "-c", code],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip

        own_file, installed = json.loads(python(listing).stdout)
        installed = {canonicalize_name(name): version for name, version in installed.items()}
        facts[target] = {
            "imports": {
                module: python(f"import {module}").returncode == 0
                for module in WEB_MODULES[framework]
            },
            "uid": docker("run", "--rm", "--entrypoint", "id", image, "-u").strip(),
            "own package": own_file,
            "own distribution": installed.pop(canonicalize_name(answers["project_slug"]), None),
            "installed": installed,
            "locked": locked_set(stack.tree, extras),
        }
    return facts


def read_only(stack: Stack, service: str) -> dict:
    """Whether the container's root filesystem is read-only and where it can still write."""

    def writes(path: str) -> bool:
        return subprocess.run(
            ["docker", "compose", "exec", "-T", service, "touch", path],
            cwd=stack.tree, env=stack.env, capture_output=True, timeout=60,
        ).returncode == 0  # fmt: skip

    return {
        "ReadonlyRootfs": stack.container(service)["HostConfig"]["ReadonlyRootfs"],
        "writes /opt/venv": writes("/opt/venv/written"),
        "writes /tmp": writes("/tmp/written"),
    }


def observe(tree: Path, framework: str, contract, break_exec: bool) -> dict:
    """The rendered stack run as a user runs it, and every fact the tests assert on.
    `contract(base, domain, database, sql)` is the shared HTTP contract
    (test_service_contract.py); `break_exec` also runs a copy whose entrypoint lost `exec`."""
    from . import workflows
    from .test_service_contract import RECORD

    answers = yaml.safe_load((tree / ".copier-answers.yml").read_text())
    domain, package = answers["domains"][0], answers["package_name"]
    slug = domain.replace("_", "-")
    facts: dict = {"contract domain": domain}
    stack = Stack(tree)
    stack.watch_events()
    # The rendered CI's `compose` job, its run: steps replayed on the engine: up to the smoke
    # test, then every check, then its last step, `down --volumes`.
    job = [tree / ".github/workflows/ci.yml", "compose", tree,
           {"actions/checkout": workflows.checkout}, stack.env]  # fmt: skip
    facts["ci job"] = []

    def replay(steps: slice) -> bool:
        done = workflows.replay(*job, steps=steps)
        facts["ci job"] += [(step.name, step.returncode, step.output[-3000:]) for step in done]
        return all(step.returncode == 0 for step in done)

    try:
        if not replay(slice(None, -1)):
            facts["up"] = {
                "error": "the compose job failed",
                "logs": stack.compose("logs", "--no-color", "--tail", "40", check=False),
            }
            return facts  # fmt: skip
        facts["up"] = {"passed": "the compose job up to its smoke test"}
        facts["events"] = stack.events()
        facts["conditions"] = stack.conditions()
        facts["app services"] = app_services(stack)
        attempt(facts, "pid 1", lambda: {name: stack.pid1(name) for name in facts["app services"]})
        attempt(facts, "images", lambda: image_facts(stack, framework))
        attempt(facts, "read-only", lambda: {
            name: read_only(stack, name) for name in ("api", f"{slug}-reward")
        })  # fmt: skip

        def http_contract():
            stack.sql(domain, RECORD)
            stack.compose("run", "--rm", "--no-deps", f"{slug}-match",
                          "python", "-m", f"{package}.{domain}.jobs.warmup_cache")  # fmt: skip
            eventually(lambda: b'"v"' in urlopen(f"{stack.url}/{domain}/match/k"), 60)
            return contract(stack.url, domain, domain, stack.sql)

        attempt(facts, "contract", http_contract)

        def postgres_stopped():
            api_before = stack.container("api")["State"]
            stack.compose("stop", "postgres")
            down = eventually(lambda: status(f"{stack.url}/health/ready") == 503, 60)
            found = {"ready": status(f"{stack.url}/health/ready") if down else "never 503",
                     "live": status(f"{stack.url}/health/live")}  # fmt: skip
            stack.compose("start", "postgres")
            eventually(lambda: status(f"{stack.url}/health/ready") == 200)
            api_after = stack.container("api")["State"]
            found["ready again"] = status(f"{stack.url}/health/ready")
            found["api restarted"] = (api_before["StartedAt"], api_before["Pid"]) != (
                api_after["StartedAt"], api_after["Pid"])  # fmt: skip
            return found

        attempt(facts, "postgres stopped", postgres_stopped)
        attempt(facts, "rabbitmq restarted", lambda: under_load(
            stack, domain, "rabbitmq-restart",
            lambda: {"restart": stack.compose("restart", "rabbitmq") or "done"},
        ))  # fmt: skip

        def stopped_and_started(service: str):
            def action():
                found = stack.timed_stop(service)
                stack.compose("start", service)
                return found

            return action

        for service in (f"{slug}-reward", "api"):
            attempt(facts, f"stop {service}", lambda service=service: under_load(
                stack, domain, f"stop-{service}", stopped_and_started(service)))  # fmt: skip
        attempt(facts, "smoke test faults", lambda: smoke_test_faults(stack, slug))
        if break_exec:
            attempt(facts, "without exec", lambda: stop_without_exec(stack))
        replay(slice(-1, None))
        facts["leftovers"] = stack.leftovers()
    finally:
        stack.down()  # whatever a failure left behind
    return facts


def smoke_test_faults(stack: Stack, slug: str) -> dict:
    """docker/smoke.sh while the reward worker is stopped, then while the api is: each fails
    with one line."""
    found = {}
    for service in (f"{slug}-reward", "api"):
        stack.compose("stop", service)
        smoke = subprocess.run(
            ["docker/smoke.sh"], cwd=stack.tree, env={**stack.env, "SMOKE_WAIT_SECONDS": "3"},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        stack.compose("start", service)
        found[service] = (smoke.returncode, smoke.stderr)
    eventually(lambda: status(f"{stack.url}/health/ready") == 200)
    return found


def stop_without_exec(stack: Stack) -> dict:
    """The api rebuilt from an entrypoint that runs its command as a child of the shell."""
    entrypoint = stack.tree / "docker/entrypoint.sh"
    original = entrypoint.read_text()
    assert 'exec "$@"' in original
    entrypoint.write_text(original.replace('exec "$@"', '"$@"'))
    try:
        stack.compose("up", "--build", "--wait", "--wait-timeout", "300", "api")
        return {"pid 1": stack.pid1("api"), **stack.timed_stop("api")}
    finally:
        entrypoint.write_text(original)


def urlopen(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except (urllib.error.URLError, OSError):
        return b""


def published(container: str, port: int) -> str:
    """host:port where the engine publishes a container's port."""
    return docker("port", container, f"{port}/tcp").split()[0]


@contextmanager
def shipped_engines(tree: Path) -> Iterator[dict[str, str]]:
    """The PostgreSQL and RabbitMQ images the stack ships, as standalone containers on
    loopback ports of their own; yields the TEST_* variables a service's suite reads."""
    config = json.loads(Stack(tree).compose("config", "--format", "json"))["services"]
    name = f"keel-engines-{uuid.uuid4().hex[:10]}"
    started = []
    try:
        started.append(docker(
            "run", "--detach", "--name", f"{name}-postgres", "--env", "POSTGRES_PASSWORD=test",
            "--publish", "127.0.0.1::5432", config["postgres"]["image"],
        ).strip())  # fmt: skip
        started.append(docker(
            "run", "--detach", "--name", f"{name}-rabbitmq", "--publish", "127.0.0.1::5672",
            "--publish", "127.0.0.1::15672", config["rabbitmq"]["image"],
        ).strip())  # fmt: skip
        postgres, amqp = published(started[0], 5432), published(started[1], 5672)
        urls = {
            "TEST_POSTGRES_URL": f"postgresql://postgres:test@{postgres}/postgres",
            "TEST_RABBITMQ_URL": f"amqp://guest:guest@{amqp}",
            "TEST_RABBITMQ_MANAGEMENT_URL": f"http://guest:guest@{published(started[1], 15672)}",
        }
        versions = {
            "postgres": eventually(lambda: postgres_version(urls["TEST_POSTGRES_URL"])),
            "rabbitmq": eventually(lambda: rabbitmq_version(urls["TEST_RABBITMQ_MANAGEMENT_URL"])),
        }
        yield {"environment": urls, "versions": versions}
    finally:
        for container in started:
            docker("rm", "--force", "--volumes", container, check=False)


def postgres_version(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            return connection.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        return None


def rabbitmq_version(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(f"http://{parts.hostname}:{parts.port}/api/overview")
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request.add_header("authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["rabbitmq_version"]
    except (urllib.error.URLError, OSError, ValueError):
        return None


def suite_on_shipped_engines(native: dict, suite) -> dict:
    """A natively installed service's own suite, against the engine versions it ships."""
    with shipped_engines(native["tree"]) as engines:
        result = suite(native, environment={**os.environ, **engines["environment"]})
        return {"versions": engines["versions"], "result": result}
