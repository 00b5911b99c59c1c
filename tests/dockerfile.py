"""A Dockerfile's build stages replayed here, to see what an image installs without an engine.

This is not a build: no image, no layers, no base image. A stage and the stages it is built
`FROM` are replayed in order: `ENV` and `WORKDIR` set the environment, `COPY` copies from
the build context, `RUN` runs with bash; the image's absolute paths (/opt, /build) are
placed under a scratch root, and the machine's python3 stands in for the base image's.
`COPY --from` an image is refused unless a stand-in for that image is given (Keel gives its
pinned uv, on PATH, for ghcr.io/astral-sh/uv). Anything else stops the replay with a
`ReplayError`.
"""

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: Where the image's own files go, placed under the replay's root.
IMAGE_PATHS = ("/opt/", "/build")


class ReplayError(Exception):
    """The Dockerfile cannot be replayed faithfully; the message says why."""


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        instruction, _, arguments = (pending + line).strip().partition(" ")
        found.append((instruction.upper(), arguments.strip()))
        pending = ""
    return found


def stages(path: Path) -> dict[str, Stage]:
    named: dict[str, Stage] = {}
    current = None
    for instruction, arguments in instructions(path):
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(named))
            current = named[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((instruction, arguments))
    return named


def chain(named: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built on, the first one first."""
    found = [named[name]]
    while found[0].base in named:
        found.insert(0, named[found[0].base])
    return found


def venv_source(named: dict[str, Stage], target: str) -> str:
    """The stage a target copies its /opt/venv from (`COPY --from=STAGE /opt/venv ...`)."""
    for stage in chain(named, target):
        for instruction, arguments in stage.instructions:
            words = arguments.split()
            if instruction == "COPY" and words[0].startswith("--from=") and "/opt/venv" in words:
                return words[0].removeprefix("--from=")
    raise ReplayError(f"target {target} copies no /opt/venv from a build stage")


def runs(named: dict[str, Stage], name: str) -> list[str]:
    """The RUN commands of a stage and the stages it is built on."""
    return [
        arguments
        for stage in chain(named, name)
        for instruction, arguments in stage.instructions
        if instruction == "RUN"
    ]


def _placed(value: str, root: Path) -> str:
    parts = value.split(":")
    return ":".join(f"{root}{part}" if part.startswith(IMAGE_PATHS) else part for part in parts)


def _environment(arguments: str, env: dict[str, str], root: Path) -> dict[str, str]:
    added = {}
    for pair in shlex.split(arguments):
        key, _, value = pair.partition("=")
        value = value.replace("$PATH", env["PATH"]).replace("${PATH}", env["PATH"])
        added[key] = _placed(value, root)
    return added


def replay(
    dockerfile: Path,
    stage: str,
    context: Path,
    root: Path,
    images: set[str],
    environment: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
) -> subprocess.CompletedProcess | None:
    """Replay `stage` of `dockerfile` under `root` with `context` as the build context;
    returns the first RUN that failed (None when all passed). `images` names the images a
    `COPY --from` may take files from, whose stand-ins are on the environment's PATH;
    `unset` lists ENV variables the replay leaves out (e.g. UV_NO_CACHE: the machine's uv
    cache is used instead of downloading every package again)."""
    named = stages(dockerfile)
    env = dict(environment or os.environ)
    workdir = root
    for current in chain(named, stage):
        if current.base not in named and current.base not in ("${PYTHON_IMAGE}",):
            raise ReplayError(f"stage {current.name} is built on {current.base}: not replayed")
        for instruction, arguments in current.instructions:
            if instruction == "ENV":
                added = _environment(arguments, env, root)
                env |= {key: value for key, value in added.items() if key not in unset}
            elif instruction == "WORKDIR":
                workdir = Path(_placed(arguments, root))
                workdir.mkdir(parents=True, exist_ok=True)
            elif instruction == "COPY":
                _copy(arguments, context, workdir, root, images)
            elif instruction == "RUN":
                result = subprocess.run(
                    ["bash", "-ec", arguments], cwd=workdir, env=env,
                    capture_output=True, text=True, timeout=900,
                )  # fmt: skip
                if result.returncode != 0:
                    return result
            elif instruction not in ("ARG", "LABEL"):
                raise ReplayError(f"stage {current.name}: {instruction} is not replayed")
    return None


def _copy(arguments: str, context: Path, workdir: Path, root: Path, images: set[str]) -> None:
    words = arguments.split()
    *sources, destination = [word for word in words if not word.startswith("--")]
    for option in (word for word in words if word.startswith("--from=")):
        image = option.removeprefix("--from=")
        if image not in images:
            raise ReplayError(f"COPY --from={image}: no stand-in for that image")
        return  # the stand-in is on PATH already
    if destination.startswith("/") and not destination.startswith(IMAGE_PATHS):
        raise ReplayError(f"COPY into {destination}: only {', '.join(IMAGE_PATHS)} are replayed")
    target = (
        Path(_placed(destination, root)) if destination.startswith("/") else workdir / destination
    )
    for source in sources:
        path = context / source
        into = target / path.name if destination.endswith("/") or len(sources) > 1 else target
        into.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, into, dirs_exist_ok=True, symlinks=True)
        else:
            shutil.copy2(path, into)
