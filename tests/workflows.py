"""Workflow steps replayed: a GitHub Actions job's `run:` steps, run here in order.

This is not CI: no runner, no containers. Each `run:` step runs as GitHub would run it
(`bash -e`, the workflow's, the job's and the step's `env:` merged, the step's
`working-directory`), with the machine's own PostgreSQL and RabbitMQ standing in for the
job's `services:`. A `uses:` step runs only if a stand-in for its action is given; anything
the replay cannot do faithfully (an expression inside `run:` or `env:`, an unknown action)
stops it with a `ReplayError` naming the step.
"""

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

# What GitHub runs a `run:` step with when neither the step nor `defaults` names a shell.
DEFAULT_SHELL = ["bash", "-e"]
# ... and when a step says `shell: bash`.
EXPLICIT_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
EXPRESSION = "${{"

#: A stand-in for an action: given the step and its environment, it does the action's work
#: here and returns the variables to add for the steps after it (e.g. a new PATH).
StandIn = Callable[[dict, dict[str, str]], dict[str, str]]


class ReplayError(Exception):
    """The job cannot be replayed faithfully; the message names the step and why."""


@dataclass
class StepResult:
    name: str
    returncode: int
    output: str


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def step_name(step: dict, index: int) -> str:
    return step.get("name") or step.get("run", step.get("uses", "")).splitlines()[0] or str(index)


def _literal_env(scope: str, env: dict | None) -> dict[str, str]:
    for key, value in (env or {}).items():
        if EXPRESSION in str(value):
            raise ReplayError(f"{scope}: env {key} is an expression ({value}); cannot replay it")
    return {key: str(value) for key, value in (env or {}).items()}


def check(workflow: dict, job: str, stand_ins: dict[str, StandIn]) -> None:
    """Refuse, before running anything, a job this replay could not run faithfully."""
    steps = workflow["jobs"][job]["steps"]
    for index, step in enumerate(steps, 1):
        name = f"job {job}, step {step_name(step, index)!r}"
        if "uses" in step:
            action = step["uses"].split("@")[0]
            if action not in stand_ins:
                raise ReplayError(f"{name}: no stand-in for the action {action}")
        elif EXPRESSION in step.get("run", ""):
            raise ReplayError(f"{name}: `${{{{` inside run: (pass the value through env: instead)")
        _literal_env(name, step.get("env"))
    _literal_env("workflow", workflow.get("env"))
    _literal_env(f"job {job}", workflow["jobs"][job].get("env"))


def replay(
    workflow_file: Path,
    job: str,
    workspace: Path,
    stand_ins: dict[str, StandIn],
    environment: dict[str, str] | None = None,
    steps: slice = slice(None),
) -> list[StepResult]:
    """Run the job's steps in order in `workspace`; stop at the first step that fails.
    `steps` picks some of them (a run split in two, with checks between the parts)."""
    workflow = load(workflow_file)
    check(workflow, job, stand_ins)
    spec = workflow["jobs"][job]
    defaults = {
        **(workflow.get("defaults") or {}).get("run", {}),
        **(spec.get("defaults") or {}).get("run", {}),
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="replay-") as scratch:
        added = {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_OUTPUT": str(Path(scratch) / "output"),
            "GITHUB_ENV": str(Path(scratch) / "env"),
            "RUNNER_TEMP": scratch,
        }
        numbered = list(enumerate(spec["steps"], 1))
        for index, step in numbered[steps]:
            env = {
                **(environment or os.environ),
                **_literal_env("workflow", workflow.get("env")),
                **_literal_env(job, spec.get("env")),
                **added,
                **_literal_env(job, step.get("env")),
            }
            name = step_name(step, index)
            if "uses" in step:
                added |= stand_ins[step["uses"].split("@")[0]](step, env)
                results.append(StepResult(name, 0, f"stood in for {step['uses']}"))
                continue
            directory = step.get("working-directory", defaults.get("working-directory", "."))
            shell = step.get("shell", defaults.get("shell"))
            if shell not in (None, "bash"):
                raise ReplayError(f"job {job}, step {name!r}: shell {shell} is not replayed")
            script = Path(scratch) / f"step-{index}.sh"
            script.write_text(step["run"])
            command = DEFAULT_SHELL if shell is None else EXPLICIT_BASH
            finished = subprocess.run(
                [*command, str(script)],
                cwd=workspace / directory,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=1800,
            )
            results.append(StepResult(name, finished.returncode, finished.stdout))
            if finished.returncode != 0:
                break
            added |= _exported(Path(added["GITHUB_ENV"]))
    return results


def _exported(env_file: Path) -> dict[str, str]:
    """What steps wrote to $GITHUB_ENV (the NAME=value form)."""
    if not env_file.exists():
        return {}
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


def checkout(step: dict, env: dict[str, str]) -> dict[str, str]:
    """actions/checkout: the workspace already holds the service's files."""
    return {}


def machine_python(step: dict, env: dict[str, str]) -> dict[str, str]:
    """actions/setup-python: the machine's python3, which must be the version the step names."""
    wanted = str((step.get("with") or {}).get("python-version", ""))
    found = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if wanted and found != wanted:
        raise ReplayError(f"setup-python asks for Python {wanted}; the machine has {found}")
    return {}


def uv_version(uv: Path) -> str:
    """The version of a uv binary (`uv 0.13.9 (...)` -> 0.13.9)."""
    return subprocess.run(
        [uv, "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]


def uv_alone(uv: Path, directory: Path) -> Path:
    """A directory holding only `uv` (a link to `uv`), to put on PATH without anything else
    of the environment uv comes from."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "uv").exists():
        (directory / "uv").symlink_to(uv)
    return directory


def setup_uv(uv: Path, scratch: Path) -> StandIn:
    """astral-sh/setup-uv: the given uv on PATH (the step must ask for its version); with
    `activate-environment`, the workspace's .venv made with `uv venv` (unless it exists) and
    put first on PATH, as the action does. uv's cache is the machine's, not the action's."""

    def stand_in(step: dict, env: dict[str, str]) -> dict[str, str]:
        options = step.get("with") or {}
        wanted, found = str(options.get("version", "")), uv_version(uv)
        if wanted != found:
            raise ReplayError(f"setup-uv asks for uv {wanted!r}; the stand-in has {found}")
        path = f"{uv_alone(uv, scratch / 'uv')}:{env['PATH']}"
        if str(options.get("activate-environment", "false")).lower() != "true":
            return {"PATH": path}
        workspace = Path(env["GITHUB_WORKSPACE"])
        venv = workspace / (options.get("venv-path") or ".venv")
        if not venv.exists():
            subprocess.run([uv, "venv", "--quiet", venv], cwd=workspace, env=env, check=True)
        return {"PATH": f"{venv / 'bin'}:{path}", "VIRTUAL_ENV": str(venv)}

    return stand_in


def layered_python(base: Path, target: Path) -> StandIn:
    """actions/setup-python: a virtualenv at `target` that sees every package of the
    virtualenv `base` (through a .pth file) but installs into itself, so a step's
    `pip install -e .` adds only the service, in seconds, and its commands stay its own."""
    subprocess.run([base / "bin" / "python", "-m", "venv", "--without-pip", target], check=True)
    base_site = _site_packages(base / "bin" / "python")
    (Path(_site_packages(target / "bin" / "python")) / "_layered_on.pth").write_text(base_site)
    _carry_commands(base / "bin", target / "bin")

    def setup_python(step: dict, env: dict[str, str]) -> dict[str, str]:
        return {"PATH": f"{target / 'bin'}:{env['PATH']}"}

    return setup_python


def _carry_commands(source: Path, destination: Path) -> None:
    """The base virtualenv's commands (ruff, lint-imports, ...), run by the layered python so
    they see what is installed on top."""
    for command in source.iterdir():
        copy = destination / command.name
        if copy.exists() or command.name.lower().startswith(("activate", "python")):
            continue
        text = command.read_bytes()
        if text.startswith(f"#!{source}/python".encode()):
            copy.write_bytes(b"#!" + bytes(destination / "python") + text[text.index(b"\n") :])
            copy.chmod(0o755)
        else:
            copy.symlink_to(command)


def _site_packages(python: Path) -> str:
    return subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
