"""The base images a rendered service names, checked on real containers against what each
stand-in's Dockerfile (tests/standins/*/Dockerfile) claims of the official image's contract.

`standins.ensure` runs once: where a registry answers these are the official images, which
must pass too. Containers and volumes are named keel-standin-test-<random> and removed."""

import base64
import json
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import psycopg
import pytest

from . import standins

PYTHON, UV, POSTGRES, RABBITMQ = standins.IMAGES
containers = pytest.mark.containers


# --- the names and their recipes: no engine needed -----------------------------------------


def test_the_names_are_those_a_rendered_service_uses_each_with_a_stand_in():
    assert list(standins.IMAGES.values()) == ["python", "uv", "postgres", "rabbitmq"]
    compose = (standins.FOLDERS.parents[1] / "template" / "compose.yaml.jinja").read_text()
    assert "image: postgres:{{ engines.postgres }}-trixie" in compose
    assert "image: rabbitmq:{{ engines.rabbitmq }}-management" in compose
    for name, folder in standins.IMAGES.items():
        plan = standins.recipe(name)
        assert plan.folder == folder
        assert (standins.FOLDERS / folder / "Dockerfile").is_file()
        assert re.match(re.escape(plan.version) + r"\b", name.rsplit(":", 1)[1]), (name, plan)


def test_a_name_without_a_stand_in_is_refused_clearly():
    for name in ("nginx:1.27", "postgres:17-alpine", "rabbitmq:4.3"):
        with pytest.raises(standins.StandinError, match="there is no stand-in for it"):
            standins.recipe(name)


# --- helpers ---------------------------------------------------------------------------------


def docker(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(map(str, args))} exited {result.returncode}\n"
                    f"{result.stdout[-3000:]}{result.stderr[-3000:]}")  # fmt: skip
    return result


def unique() -> str:
    return f"keel-standin-test-{secrets.token_hex(5)}"


@contextmanager
def running(image: str, *options: str, volume: str | None = None):
    """A detached container of IMAGE, removed with its anonymous volumes (and VOLUME)."""
    name = unique()
    try:
        docker("run", "--detach", "--name", name, *options, image)
        yield name
    finally:
        docker("rm", "--force", "--volumes", name, check=False)
        if volume:
            docker("volume", "rm", "--force", volume, check=False)


def published(container: str, port: int) -> int:
    return int(docker("port", container, port).stdout.split()[0].rsplit(":", 1)[1])


def eventually(check, seconds: float, what: str, container: str, final=()):
    """CHECK's answer once it stops raising; an exception in FINAL ends the wait at once."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except Exception as error:
            if isinstance(error, final) or time.monotonic() > deadline:
                logs = docker("logs", "--tail", "40", container, check=False)
                raise AssertionError(
                    f"{what}: {error} (waited up to {seconds}s)\n{logs.stdout}{logs.stderr}"
                ) from error
            time.sleep(0.5)


def pid1(container: str) -> list[str]:
    raw = docker("exec", container, "cat", "/proc/1/cmdline").stdout
    return [part for part in raw.split("\0") if part]


def timed_stop(container: str) -> tuple[float, int]:
    started = time.monotonic()
    docker("stop", "--time", "30", container)
    seconds = time.monotonic() - started
    return seconds, int(docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    return standins.ensure(standins.IMAGES)


# --- python and uv -------------------------------------------------------------------------


@containers
def test_python_has_the_interpreters_bash_and_useradd_the_service_dockerfile_uses(images):
    version = re.match(r"\d+\.\d+", PYTHON.split(":")[1])[0]
    script = (
        f"python3 --version && python --version && python{version} --version && "
        "/usr/bin/env bash -c 'echo bash' && "
        "useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app && "
        "id -u app"
    )
    lines = docker("run", "--rm", PYTHON, "bash", "-c", script).stdout.split()
    assert lines[0:2] == lines[2:4] == lines[4:6] == ["Python", lines[1]]
    assert lines[1].startswith(f"{version}."), lines
    assert lines[6:] == ["bash", "10001"]
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", PYTHON).stdout)
    path = dict(entry.split("=", 1) for entry in config["Env"])["PATH"]
    assert "/usr/local/bin" in path.split(":"), path  # `ENV PATH=...:$PATH` keeps it
    assert config["Cmd"] == ["python3"]


@containers
def test_a_build_like_the_service_dockerfile_gets_uv_and_installs_from_pypi_over_https(
    images, tmp_path
):
    """The service Dockerfile's steps: uv COPY'd from the uv image onto the python image,
    PATH extended, uv on the image's own interpreter fetching a wheel from PyPI."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {PYTHON}\n"
        f"COPY --from={UV} /uv /usr/local/bin/uv\n"
        "ENV UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1\n"
        "ENV PATH=/opt/venv/bin:$PATH\n"
        "RUN uv venv /opt/venv && uv pip install --python /opt/venv/bin/python iniconfig==2.1.0\n"
    )
    tag = unique()
    try:
        docker("build", "--no-cache", "--tag", tag, tmp_path, timeout=600)
        script = "uv --version && python -c 'import iniconfig, sys; print(sys.prefix)'"
        out = docker("run", "--rm", tag, "bash", "-c", script).stdout
    finally:
        docker("rmi", "--force", tag, check=False)
    assert out.split()[:2] == ["uv", UV.split(":")[1]], out
    assert out.split()[-1] == "/opt/venv", out


@containers
def test_uv_is_a_scratch_image_with_static_uv_and_uvx(images):
    version = UV.split(":")[1]
    # FROM scratch has no libc: these run only if the binaries are static, as upstream's.
    assert docker("run", "--rm", UV, "--version").stdout.split()[:2] == ["uv", version]
    uvx = docker("run", "--rm", "--entrypoint", "/uvx", UV, "--version").stdout
    assert uvx.split()[:2] == ["uvx", version]
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", UV).stdout)
    assert config["Entrypoint"] == ["/uv"]
    no_shell = docker("run", "--rm", "--entrypoint", "/bin/sh", UV, "-c", "true", check=False)
    assert no_shell.returncode != 0


# --- postgres --------------------------------------------------------------------------------

INIT_SCRIPT = """#!/usr/bin/env bash
# Records whether TCP on 127.0.0.1:5432 answered while the init scripts ran.
set -euo pipefail
if pg_isready --host 127.0.0.1 --port 5432 --timeout 3 >/dev/null; then tcp=true; else tcp=false; fi
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \\
  --command 'CREATE DATABASE from_init'
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname from_init \\
  --command "CREATE TABLE init_runs (tcp_answered boolean NOT NULL)" \\
  --command "INSERT INTO init_runs VALUES ($tcp)"
"""
INIT_SQL = "CREATE TABLE from_sql_file (id int);\n"


@pytest.fixture(scope="module")
def postgres(images, tmp_path_factory):
    """A postgres container as compose runs it: user and password, a read-only init folder,
    a named volume for PGDATA, the port published on a random 127.0.0.1 port."""
    init = tmp_path_factory.mktemp("initdb")
    init.chmod(0o755)
    (init / "10-record.sh").write_text(INIT_SCRIPT)
    (init / "10-record.sh").chmod(0o755)
    (init / "20-table.sql").write_text(INIT_SQL)
    (init / "20-table.sql").chmod(0o644)
    volume = unique()
    with running(POSTGRES, "--env", "POSTGRES_USER=app", "--env", "POSTGRES_PASSWORD=secret",
                 "--volume", f"{init}:/docker-entrypoint-initdb.d:ro",
                 "--volume", f"{volume}:/var/lib/postgresql/data",
                 "--publish", "127.0.0.1::5432", volume=volume) as container:  # fmt: skip
        ready(container)
        yield container


def connect(container: str, password="secret", dbname="app") -> psycopg.Connection:
    port = published(container, 5432)
    return psycopg.connect(host="127.0.0.1", port=port, user="app", password=password,
                           dbname=dbname, connect_timeout=5, autocommit=True)  # fmt: skip


def ready(container: str) -> None:
    eventually(lambda: connect(container).close(), 90, "postgres over TCP", container)


def value(container: str, sql: str, dbname="app"):
    with connect(container, dbname=dbname) as connection:
        return connection.execute(sql).fetchone()[0]


@containers
def test_postgres_runs_the_init_scripts_once_while_listening_on_its_socket_only(postgres):
    assert value(postgres, "SELECT array_agg(tcp_answered) FROM init_runs", "from_init") == [
        False
    ], "TCP answered while /docker-entrypoint-initdb.d ran: a healthcheck could pass too early"
    assert value(postgres, "SELECT to_regclass('from_sql_file') IS NOT NULL") is True


@containers
def test_postgres_answers_the_compose_healthcheck_over_tcp(postgres):
    check = docker("exec", postgres, "pg_isready", "--host", "127.0.0.1", "--username", "app",
                   "--dbname", "from_init", check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


@containers
def test_postgres_wants_the_password_over_tcp_from_another_host(postgres):
    # From the host through the published port: not loopback inside the container.
    assert value(postgres, "SELECT current_user") == "app"
    assert value(postgres, "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'") is True
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(postgres, password="wrong").close()


@containers
def test_postgres_is_the_major_version_its_name_says_and_runs_as_postgres_pid_1(postgres):
    major = POSTGRES.split(":")[1].split("-")[0]
    assert value(postgres, "SHOW server_version").startswith(f"{major}.")
    assert pid1(postgres)[0].rsplit("/", 1)[-1] == "postgres", pid1(postgres)
    assert docker("exec", postgres, "id", "-un").stdout.strip() == "postgres"


@containers
def test_postgres_keeps_its_data_and_skips_init_after_a_restart(postgres):
    with connect(postgres) as connection:
        connection.execute("CREATE TABLE kept (note text)")
        connection.execute("INSERT INTO kept VALUES ('before restart')")
    docker("restart", postgres)
    ready(postgres)
    assert value(postgres, "SELECT note FROM kept") == "before restart"
    assert value(postgres, "SELECT count(*) FROM init_runs", "from_init") == 1
    logs = docker("logs", postgres)
    assert (logs.stdout + logs.stderr).count("running /docker-entrypoint-initdb.d/10-record") == 1


@containers
def test_postgres_stops_fast_and_cleanly_with_a_client_connected(postgres):
    """Last of the postgres tests: it stops the container."""
    client = connect(postgres)
    try:
        seconds, code = timed_stop(postgres)
    finally:
        client.close()
    assert (code, seconds < 10) == (0, True), f"exit {code} after {seconds:.1f}s"


# --- rabbitmq --------------------------------------------------------------------------------


def api(container: str, path: str, method="GET", body=None, user="guest:guest"):
    port = published(container, 15672)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Basic " + base64.b64encode(user.encode()).decode(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else response.status


def rabbitmq_up(container: str) -> dict:
    """The management API's overview, once the node has started."""

    def overview():
        try:
            return api(container, "overview")
        except urllib.error.HTTPError as error:
            if error.code >= 500:  # the node is up, its management parts not yet
                raise ConnectionError(f"the management API answered {error.code}") from error
            raise

    # A refusal (401: guest may not log in from here) is an answer, not a node still starting.
    return eventually(overview, 120, "rabbitmq's management API",
                      container, final=urllib.error.HTTPError)  # fmt: skip


def amqp_greeting(container: str) -> bytes:
    """The broker's first frame after the AMQP 0-9-1 protocol header."""
    port = published(container, 5672)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"AMQP\x00\x00\x09\x01")
        return connection.recv(11)


def healthy(container: str) -> None:
    """Wait as compose does: until the service's healthcheck command passes."""

    def check():
        result = docker("exec", container, "rabbitmq-diagnostics", "--quiet",
                        "check_port_connectivity", check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    eventually(check, 120, "rabbitmq's healthcheck", container)


RABBITMQ_OPTIONS = ("--publish", "127.0.0.1::5672", "--publish", "127.0.0.1::15672")


@pytest.fixture(scope="module")
def rabbitmq(images):
    volume = unique()
    with running(RABBITMQ, *RABBITMQ_OPTIONS, "--volume", f"{volume}:/var/lib/rabbitmq",
                 volume=volume) as container:  # fmt: skip
        healthy(container)
        yield container, volume


@containers
def test_rabbitmq_lets_guest_in_from_other_hosts_and_is_the_version_its_name_says(rabbitmq):
    container, _ = rabbitmq
    overview = api(container, "overview")  # from the host: not loopback for the broker
    major_minor = RABBITMQ.split(":")[1].split("-")[0]
    assert overview["rabbitmq_version"].startswith(f"{major_minor}."), overview["rabbitmq_version"]
    assert api(container, "whoami")["name"] == "guest"
    listeners = {(item["protocol"], item["port"]) for item in overview["listeners"]}
    assert {("amqp", 5672), ("http", 15672)} <= listeners, listeners
    # Frame type 1 (method) on channel 0: connection.start (class 10, method 10).
    greeting = amqp_greeting(container)
    assert (greeting[0], greeting[7:11]) == (1, b"\x00\x0a\x00\x0a"), greeting


@containers
def test_rabbitmq_passes_the_compose_healthcheck_as_the_rabbitmq_user_in_pid_1(rabbitmq):
    container, _ = rabbitmq  # the fixture waited for the healthcheck to pass
    assert "beam.smp" in pid1(container)[0], pid1(container)
    assert docker("exec", container, "id", "-un").stdout.strip() == "rabbitmq"


@containers
def test_rabbitmq_stops_cleanly_on_sigterm(rabbitmq):
    container, _ = rabbitmq
    seconds, code = timed_stop(container)
    assert (code, seconds < 30) == (0, True), f"exit {code} after {seconds:.1f}s"
    docker("start", container)
    rabbitmq_up(container)


@containers
def test_rabbitmq_keeps_durable_queues_across_a_restart_and_a_new_container(rabbitmq):
    """`docker restart`, then a new container (another id and hostname) on the same volume,
    as compose recreates one: the node name, and so its data, must not change."""
    container, volume = rabbitmq
    queue = unique()
    assert api(container, f"queues/%2F/{queue}", "PUT", {"durable": True}) in (201, 204)
    node = api(container, "overview")["node"]
    docker("restart", container)
    assert rabbitmq_up(container)["node"] == node
    assert api(container, f"queues/%2F/{queue}")["durable"] is True
    docker("rm", "--force", container)
    with running(RABBITMQ, *RABBITMQ_OPTIONS, "--volume", f"{volume}:/var/lib/rabbitmq") as again:
        assert rabbitmq_up(again)["node"] == node
        try:
            assert api(again, f"queues/%2F/{queue}")["durable"] is True
        except urllib.error.HTTPError as error:
            pytest.fail(f"queue {queue} lost in a new container on the same volume: {error}")
