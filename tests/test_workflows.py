"""The CI workflows Keel ships: its own and every rendered service's.

Both pass the GitHub workflow schema, zizmor (offline) and Keel's hygiene rules. The
rendered `test` job's steps are replayed in tests/test_service.py; here the replay itself is
shown to refuse what it cannot run faithfully, and the CI jobs are shown to split Keel's
suite without gaps or overlaps.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from generator import matrix
from generator.checks import workflows as rules

from . import workflows
from .conftest import BIN, REPOSITORY, VARIANTS, WORKFLOW, run

KEEL_WORKFLOW = REPOSITORY / WORKFLOW


def linted(path: Path) -> list[str]:
    """What the schema, zizmor and Keel's rules say of a workflow (nothing, when clean)."""
    said = []
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path,
                 check=False)  # fmt: skip
    if schema.returncode != 0:
        said.append(f"schema: {schema.stdout}{schema.stderr}")
    zizmor = run(BIN / "zizmor", "--offline", "--no-progress", path, check=False)
    if zizmor.returncode != 0:
        said.append(f"zizmor: {zizmor.stdout}")
    return said + rules.problems(path)


def test_keels_own_workflow_is_clean():
    assert linted(KEEL_WORKFLOW) == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_workflow_is_clean(rendered, variant):
    found = sorted((rendered[variant] / ".github/workflows").glob("*.y*ml"))
    assert [path.name for path in found] == ["ci.yml"]
    assert linted(found[0]) == []


def test_the_rendered_test_job_runs_what_the_issue_lists(rendered):
    job = workflows.load(rendered["defaults"] / WORKFLOW)["jobs"]["test"]
    runs = [step["run"].strip() for step in job["steps"] if "run" in step]
    assert runs[0] == "uv sync --locked --extra web --extra test"
    assert runs[1:] == [
        "ruff check .\nruff format --check .",
        "lint-imports",
        "generate-manifests --check",
        "python -m pytest",
    ]
    assert set(job["services"]) == {"postgres", "rabbitmq"}


BROKEN = {
    "W101": ("permissions: {}\n", "permissions: write-all\n"),
    "W102": ("    permissions:\n      contents: read\n", ""),
    "W103": ("concurrency:\n", "no-concurrency:\n"),
    "W104": ("    timeout-minutes: 20\n", ""),
    "W105": ("actions/checkout@", "actions/checkout@v7 #"),
    "W106": ("persist-credentials: false", "persist-credentials: true"),
    "W107": ("run: python -m pytest", "run: python -m pytest -k ${{ github.ref }}"),
    "W108": ("--health-cmd", "--no-health"),
}


@pytest.mark.parametrize("rule", list(BROKEN))
def test_each_hygiene_rule_catches_its_break(rendered, tmp_path, rule):
    before, after = BROKEN[rule]
    text = (rendered["defaults"] / WORKFLOW).read_text()
    assert before in text
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(before, after, 1))
    assert any(f" {rule} " in problem for problem in rules.problems(broken)), rule


# --- the replay ------------------------------------------------------------------------------

STAND_INS = {"actions/checkout": workflows.checkout}


def write_workflow(directory: Path, steps: str, env: str = "") -> Path:
    path = directory / "ci.yml"
    path.write_text(
        f"on: push\n{env}jobs:\n  test:\n    runs-on: ubuntu-24.04\n    steps:\n{steps}"
    )
    return path


def test_a_replay_merges_env_runs_in_the_working_directory_and_stops_at_a_failure(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write_workflow(
        tmp_path,
        "      - uses: actions/checkout@0123\n"
        '      - run: echo "$LEVEL $WORKFLOW_ONLY" > sub/seen; echo EXTRA=yes >> "$GITHUB_ENV"\n'
        "        env: {LEVEL: step}\n"
        '      - run: pwd > seen-from; echo "$EXTRA" >> seen-from\n'
        "        working-directory: sub\n"
        "      - run: |\n          false\n          touch not-reached\n"
        "      - run: touch never\n",
        env="env:\n  LEVEL: workflow\n  WORKFLOW_ONLY: here\n",
    )
    results = workflows.replay(path, "test", tmp_path, STAND_INS)
    assert [step.returncode for step in results] == [0, 0, 0, 1]
    assert (tmp_path / "sub/seen").read_text() == "step here\n"
    assert (tmp_path / "sub/seen-from").read_text() == f"{tmp_path / 'sub'}\nyes\n"
    assert not (tmp_path / "not-reached").exists(), "bash -e: the first failure ends the step"
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ("      - run: echo ${{ github.ref }}\n", "`${{` inside run:"),
        ("      - uses: actions/cache@0123\n", "no stand-in for the action actions/cache"),
        ("      - run: echo \"$REF\"\n        env: {REF: '${{ github.ref }}'}\n",
         "env REF is an expression"),
    ],
    ids=["expression-in-run", "unknown-action", "expression-in-env"],
)  # fmt: skip
def test_a_replay_refuses_what_it_cannot_run_before_running_anything(tmp_path, steps, reason):
    path = write_workflow(tmp_path, "      - run: touch started\n" + steps)
    with pytest.raises(workflows.ReplayError, match=reason.replace("$", r"\$")):
        workflows.replay(path, "test", tmp_path, STAND_INS)
    assert not (tmp_path / "started").exists()


# --- CI's jobs split the suite ---------------------------------------------------------------


def collected(selection: str, answer_set: str | None = None) -> set[str]:
    environment = {key: value for key, value in os.environ.items() if key != "KEEL_ANSWER_SET"}
    if answer_set:
        environment["KEEL_ANSWER_SET"] = answer_set
    result = subprocess.run(
        [BIN / "python", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", selection],
        cwd=REPOSITORY, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_the_ci_jobs_run_every_test_exactly_once():
    """Keel's workflow runs a fast job, one job per `keel matrix` answer set and an update
    job, each with a pytest selection; together they run the whole suite, nothing twice."""
    jobs = workflows.load(KEEL_WORKFLOW)["jobs"]
    selections = {
        name: next(step["run"] for step in job["steps"] if "scripts/test" in step.get("run", ""))
        for name, job in jobs.items()
        if any("scripts/test" in step.get("run", "") for step in job["steps"])
    }
    assert selections == {
        "lint-and-fast-tests": 'scripts/test -m "not services and not update"',
        "answer-set": 'scripts/test -m "services and not update"',
        "update": "scripts/test -m update",
    }
    names = json.loads(run(BIN / "keel", "matrix", "--json").stdout)
    parts = [
        collected("not services and not update"),
        *(collected("services and not update", row["name"]) for row in names),
        collected("update"),
    ]
    everything = collected("services or not services")
    assert set().union(*parts) == everything
    assert sum(len(part) for part in parts) == len(everything), "a test runs in two jobs"
    assert all(parts), "a job with nothing to run"
    assert len(names) == len(matrix.SETS)
