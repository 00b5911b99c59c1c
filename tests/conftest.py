"""Shared helpers: render the template from this working tree into temporary directories."""

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml

from generator import matrix, render

from . import services

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The answer sets Keel tests: a pairwise covering set (generator/matrix.py).
VARIANTS = {name: matrix.answers(name) for name in matrix.SETS}


def render_variant(destination: Path, data: dict[str, str]) -> Path:
    render.new(destination, template=str(REPOSITORY), data=data, defaults=True, vcs_ref="HEAD")
    return destination


def run(*command, cwd=None, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every variant, rendered once per test session."""
    root = tmp_path_factory.mktemp("rendered")
    return {name: render_variant(root / name, data) for name, data in VARIANTS.items()}


DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
README_BLOCK = re.compile(r"<!-- native-run[^>]*-->\s*```bash\n(.*?)```", re.DOTALL)


def readme_commands(tree: Path, prefix: str, broker_url: str) -> list[str]:
    """The README's native-run commands, with this run's own databases and virtual host."""
    package = yaml.safe_load((tree / ".copier-answers.yml").read_text())["package_name"]
    block = README_BLOCK.search((tree / "README.md").read_text())
    assert block, "the README lost its native-run block"
    return [
        line.replace(f"{package}_", f"{prefix}_").replace(DEFAULT_BROKER, broker_url)
        for line in block.group(1).strip().splitlines()
    ]


# The answer set whose service is installed and started by following its README, per
# framework; its virtualenv then runs the suites of every service of that framework.
NATIVE_SETS = {"fastapi": "defaults", "django": "django-quorum-arguments"}


def framework_of(tree: Path) -> str:
    return yaml.safe_load((tree / ".copier-answers.yml").read_text())["framework"]


@pytest.fixture(scope="session")
def natives(rendered):
    """One service per framework, set up and started by following its README word for word."""
    with ExitStack() as stack:
        yield {
            framework: stack.enter_context(readme_run(rendered[name]))
            for framework, name in NATIVE_SETS.items()
        }


@pytest.fixture(scope="session")
def native(natives):
    """The default (FastAPI) service, run natively as its README says."""
    return natives["fastapi"]


@contextmanager
def readme_run(tree: Path):
    prefix = services.unique_prefix()
    with services.virtual_host() as broker_url:
        yield from _run_readme(tree, prefix, broker_url)


def _run_readme(tree: Path, prefix: str, broker_url: str):
    commands = readme_commands(tree, prefix, broker_url)
    assert f"export BROKER_URL={broker_url}" in commands
    assert commands[-1] == "docker/entrypoint.sh serve-api"
    port = services.free_port()
    script = "set -euo pipefail\n" + "\n".join(commands[:-1]) + f"\nexec {commands[-1]}\n"
    log = tree / "native-run.log"
    domains = yaml.safe_load((tree / ".copier-answers.yml").read_text())["domains"]
    with services.dropped_afterwards([f"{prefix}_{domain}" for domain in domains]):
        with log.open("w") as output:
            process = subprocess.Popen(
                ["bash", "-c", script],
                cwd=tree,
                env={**os.environ, "PORT": str(port)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            answer = services.wait_for_status(
                f"http://127.0.0.1:{port}/health/ready", process, limit_seconds=600
            )
            exported = dict(
                line.removeprefix("export ").split("=", 1)
                for line in commands
                if line.startswith("export ")
            )
            yield {
                "tree": tree,
                "answer": answer,
                "log": log,
                "bin": tree / ".venv" / "bin",
                "url": f"http://127.0.0.1:{port}",
                "environment": exported,
                "databases": {domain: f"{prefix}_{domain}" for domain in domains},
            }
        finally:
            process.terminate()
            process.wait(timeout=30)


def console_scripts(tree: Path, python: Path, directory: Path) -> Path:
    """The service's own commands (`[project.scripts]`), run by `python`.

    Every variant runs in the default service's virtualenv with its own `src` first on
    PYTHONPATH, but that virtualenv's commands import the default service's package.
    """
    scripts = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]
    directory.mkdir(parents=True, exist_ok=True)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        command = directory / name
        command.write_text(
            f"#!{python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
        )
        command.chmod(0o755)
    return directory


def service_suite(natives, tree: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    """Run a rendered service's own tests with its framework's native virtualenv and its
    own commands."""
    python = natives[framework_of(tree)]["bin"] / "python"
    with tempfile.TemporaryDirectory(prefix="keel-commands-") as scratch:
        commands = console_scripts(tree, python, Path(scratch))
        return run(
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *pytest_args,
            cwd=tree,
            env={
                **os.environ,
                "PATH": f"{commands}:{os.environ['PATH']}",
                "PYTHONPATH": str(tree / "src"),
            },
            check=False,
        )


def assert_suite_passed(result: subprocess.CompletedProcess) -> None:
    """Every test ran and passed: no failure, no skip."""
    lines = result.stdout.strip().splitlines() or [result.stderr]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", lines[-1]), lines[-1]
    assert "skipped" not in lines[-1] and "failed" not in lines[-1], lines[-1]
