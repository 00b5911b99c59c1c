"""scripts/engine, where it must not install anything: a running engine is used as it is, and
a machine that is not Debian gets one line and exit 1. (Installing and starting dockerd, and
putting the networking back, happen in every `scripts/test` run on a machine without an
engine: `scripts/engine down` checks the rules, bridges and ip_forward against what it
found and fails when they differ.)"""

import shutil
import subprocess
from pathlib import Path

from .conftest import REPOSITORY

ENGINE = REPOSITORY / "scripts" / "engine"


def engine(tmp_path: Path, docker_exits: int, *args: str) -> subprocess.CompletedProcess:
    """scripts/engine with a `docker` that answers every command with DOCKER_EXITS, on a
    PATH without apt-get (so: not Debian as far as the script can tell)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(
        f'#!/bin/sh\necho docker "$@" >> {tmp_path}/calls\nexit {docker_exits}\n'
    )
    (bin_dir / "docker").chmod(0o755)
    for tool in ("id", "cat", "rm", "mkdir"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return subprocess.run(
        ["/bin/bash", ENGINE, *args],
        env={"PATH": str(bin_dir), "KEEL_ENGINE_STATE": str(tmp_path / "state")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_running_engine_is_used_as_it_is_and_never_stopped(tmp_path):
    up = engine(tmp_path, 0, "up")
    assert (up.returncode, up.stdout, up.stderr) == (0, "", "")
    assert not (tmp_path / "state").exists(), "up recorded an engine it did not start"
    down = engine(tmp_path, 0, "down")
    assert (down.returncode, down.stdout, down.stderr) == (0, "", "")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["docker info", "docker compose version", "docker buildx version"]


def test_without_an_engine_off_debian_one_line_says_how_to_get_one(tmp_path):
    result = engine(tmp_path, 1, "up")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "scripts/engine: no running Docker Engine with compose v2 and buildx: install Docker "
        "Engine with the compose and buildx plugins (https://docs.docker.com/engine/install/) "
        "and start it"
    ]
    assert not (tmp_path / "state").exists()


def test_a_wrong_word_gets_the_usage(tmp_path):
    result = engine(tmp_path, 0, "start")
    assert (result.returncode, result.stderr) == (
        1,
        "scripts/engine: usage: scripts/engine up|down\n",
    )
