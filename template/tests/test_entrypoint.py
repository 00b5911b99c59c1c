"""docker/entrypoint.sh: the command it starts replaces it, so the container's signals reach
the server itself rather than a shell that would die and leave the server running."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .framework import SERVER_PROGRAM, SERVER_STARTED, SERVER_STOPPED
from .processes import environment

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_environment() -> dict[str, str]:
    """The test's databases and broker, and this service's commands on PATH: first any the
    caller put there, then those installed next to this Python."""
    return environment(PATH=f"{os.environ['PATH']}:{Path(sys.executable).parent}")


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_until_ready(url: str, server: subprocess.Popen, log: Path, limit_seconds=60) -> None:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline and server.poll() is None:
        if status_of(url) == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200:\n{log.read_text()[-3000:]}")


def arguments_of(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [argument.decode() for argument in raw.split(b"\0") if argument]


@pytest.fixture
def entrypoint_server(migrated, tmp_path):
    """`docker/entrypoint.sh serve-api` in a session of its own, as a container runs it.

    Everything in that session is killed afterwards, so a server that outlived a shell
    which ignored `exec` cannot linger and hold the port.
    """
    port = free_port()
    log = tmp_path / "entrypoint.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(ENTRYPOINT), "serve-api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=command_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield server, f"http://127.0.0.1:{port}", log
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(timeout=30)


def test_the_entrypoint_execs_the_server_which_stops_gracefully_on_sigterm(entrypoint_server):
    server, base_url, log = entrypoint_server
    wait_until_ready(f"{base_url}/health/ready", server, log)

    # The PID the container runtime signals is the server's, not the shell's.
    arguments = arguments_of(server.pid)
    assert not any(Path(argument).name == ENTRYPOINT.name for argument in arguments), arguments
    assert any(Path(argument).name == SERVER_PROGRAM for argument in arguments), arguments
    assert SERVER_STARTED.format(pid=server.pid) in log.read_text()

    server.send_signal(signal.SIGTERM)
    # The server finishes its shutdown; uvicorn then re-raises the signal so the exit status
    # shows it, gunicorn exits 0.
    assert server.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()[-3000:]
    for line in SERVER_STOPPED:
        assert line.format(pid=server.pid) in log.read_text()
    assert status_of(f"{base_url}/health/live") is None


def test_the_entrypoint_without_a_command_exits_64():
    result = subprocess.run(
        [str(ENTRYPOINT)],
        cwd=ROOT,
        env=command_environment(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 64
    assert "no command given" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
