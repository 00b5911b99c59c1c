"""Shared helpers: render the template from this working tree into temporary directories."""

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml

from generator import matrix, render

from . import services, workflows

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Keel's pinned uv (its `test` extra): what the rendered services' README, CI and images use.
UV = BIN / "uv"

# The answer sets Keel tests: a pairwise covering set (generator/matrix.py).
VARIANTS = {name: matrix.answers(name) for name in matrix.SETS}
# The answer set whose service is installed and started by following its README, per
# framework; its virtualenv then carries the tests of every service of that framework.
NATIVE_SETS = {"fastapi": "defaults", "django": "django-quorum-arguments"}
# CI runs one job per answer set (`keel matrix`), naming it here; unset, everything runs.
ANSWER_SET = os.environ.get("KEEL_ANSWER_SET") or None
# Files that record the template commit a service was rendered from. With uncommitted
# changes in this checkout, copier renders from a throw-away commit, new on every render.
RECORDS_TEMPLATE_COMMIT = (".copier-answers.yml", ".pre-commit-config.yaml")
TEMPLATE_COMMIT = re.compile(rb"^(_commit:|    rev:) .*$", re.MULTILINE)


def native_run_artifacts(tree: Path) -> list[str]:
    """What running a service natively (its README's block) leaves in it: tests that
    read the rendered files skip these, whichever test installed it first."""
    places = [*tree.iterdir(), *(tree / "src").iterdir()]
    return [
        path.name
        for path in places
        if path.name in (".venv", "native-run.log", ".pytest_cache", ".ruff_cache")
        or path.name.endswith(".egg-info")
    ]


def comparable(path: Path) -> bytes:
    """A rendered file's bytes, with the template commit masked where the file records it."""
    data = path.read_bytes()
    if path.name in RECORDS_TEMPLATE_COMMIT:
        return TEMPLATE_COMMIT.sub(rb"\1 <commit>", data)
    return data


def pytest_configure(config):
    if ANSWER_SET is not None and ANSWER_SET not in matrix.SETS:
        raise pytest.UsageError(
            f"KEEL_ANSWER_SET={ANSWER_SET} is not an answer set; `keel matrix` lists them"
        )


def answer_set_of(item) -> str:
    """The answer set a test belongs to: the one it is parametrized with, the native one of
    the framework it is parametrized with, or else the default one."""
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    named = [value for value in params.values() if isinstance(value, str) and value in VARIANTS]
    if named:
        return named[0]
    if params.get("framework") in NATIVE_SETS:
        return NATIVE_SETS[params["framework"]]
    return "defaults"


#: Fixtures that run in the background (`suites` from test_service.py's first test on,
#: `stacks` from the session's start, `oldest_suite` from test_update.py's first test on):
#: the tests that wait for their results run last, so the rest of the session runs meanwhile.
BACKGROUND_FIXTURES = ("suites", "stacks", "oldest_suite")


def pytest_collection_modifyitems(config, items):
    """With KEEL_ANSWER_SET, keep only that answer set's tests (the others are deselected,
    not skipped: another CI job runs them). The tests that wait for background work go
    last, in their order."""
    if ANSWER_SET is not None:
        kept = [item for item in items if answer_set_of(item) == ANSWER_SET]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    items.sort(key=waits_for_background)


def waits_for_background(item) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for name in BACKGROUND_FIXTURES)


#: The answer set whose stack runs in containers, per framework (the natively run ones).
CONTAINER_SETS = {
    framework: name
    for framework, name in NATIVE_SETS.items()
    if ANSWER_SET is None or name == ANSWER_SET
}


def selected(request, part_of_id: str) -> bool:
    """Whether this session runs any test whose id holds that (a file, a test's name)."""
    return any(part_of_id in item.nodeid for item in request.session.items)


@pytest.fixture(scope="session")
def stacks(request, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """The container work, one job after another on one thread while the session goes on:
    the stand-in base images where no registry answers (tests/standins.py), then each
    framework's stack run as a user runs it (tests/containers.py), the native service's
    own suite against the shipped engine versions being added by test_service.py."""
    from . import containers, standins
    from .test_service_contract import contract

    root = tmp_path_factory.mktemp("containers")
    wanted = CONTAINER_SETS if selected(request, "test_containers.py::") else {}
    trees = {fw: render_variant(root / name, VARIANTS[name]) for fw, name in wanted.items()}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="containers") as pool:
        found = {}
        if CONTAINER_SETS:
            found["images"] = pool.submit(standins.ensure, standins.IMAGES)
        for framework, tree in trees.items():
            found[framework] = pool.submit(
                containers.observe, tree, framework, contract, framework == "fastapi"
            )
        found["pool"] = pool
        yield found


@pytest.fixture(scope="session", autouse=True)
def stacks_under_way(request) -> None:
    if any("stacks" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("stacks")


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
    """Every variant this run tests (and the natively run ones), rendered once per session."""
    wanted = {ANSWER_SET, *NATIVE_SETS.values()} if ANSWER_SET else set(VARIANTS)
    root = tmp_path_factory.mktemp("rendered")
    return {
        name: render_variant(root / name, data) for name, data in VARIANTS.items() if name in wanted
    }


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
    with services.virtual_host() as broker_url, tempfile.TemporaryDirectory() as scratch:
        uv = workflows.uv_alone(UV, Path(scratch))
        yield from _run_readme(tree, prefix, broker_url, uv)


def _run_readme(tree: Path, prefix: str, broker_url: str, uv: Path):
    """The README's block, run with Keel's pinned uv on PATH (the README asks for uv)."""
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
                env={**os.environ, "PORT": str(port), "PATH": f"{uv}:{os.environ['PATH']}"},
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


def native_suite(native, *pytest_args: str, environment=None) -> subprocess.CompletedProcess:
    """The natively installed service's own tests, in its own virtualenv."""
    environment = environment or os.environ
    return run(
        native["bin"] / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args,
        cwd=native["tree"],
        env={**environment, "PATH": f"{native['bin']}:{environment['PATH']}"},
        check=False,
    )  # fmt: skip


WORKFLOW = Path(".github/workflows/ci.yml")


def replay_test_job(natives, tree: Path, scratch: Path) -> list[workflows.StepResult]:
    """The service's CI `test` job, its workflow steps replayed on this machine: the
    machine's python3 stands in for actions/setup-python, Keel's pinned uv for
    astral-sh/setup-uv (`uv sync` installs from uv's cache, into the service's .venv) and
    the machine's services for the job's. `natives` is asked for so that a natively run
    service's .venv is made by its README, before the replay syncs it."""
    stand_ins = {
        "actions/checkout": workflows.checkout,
        "actions/setup-python": workflows.machine_python,
        "astral-sh/setup-uv": workflows.setup_uv(UV, scratch),
    }
    return workflows.replay(tree / WORKFLOW, "test", tree, stand_ins)


def assert_replayed(results: list[workflows.StepResult]) -> None:
    """Every step ran and passed, and the last one, the tests, passed with no skip."""
    failed = [step for step in results if step.returncode != 0]
    assert not failed, f"step {failed[0].name!r} failed:\n{failed[0].output[-6000:]}"
    assert results[-1].name == "Tests", [step.name for step in results]
    summary = results[-1].output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert "skipped" not in summary and "failed" not in summary, summary


def assert_suite_passed(result: subprocess.CompletedProcess) -> None:
    """Every test ran and passed: no failure, no skip."""
    lines = result.stdout.strip().splitlines() or [result.stderr]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", lines[-1]), lines[-1]
    assert "skipped" not in lines[-1] and "failed" not in lines[-1], lines[-1]
