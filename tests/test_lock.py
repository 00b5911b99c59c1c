"""Locked builds: the template's uv locks are current; every rendered service's uv.lock is
byte for byte what `uv lock` writes for its pyproject.toml, whatever its answers and name;
the images install exactly that set (the worker without the `web` extra), refusing a stale
lock; and uv is pinned to one version everywhere."""

import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from generator import render

from . import dockerfile
from .conftest import BIN, README_BLOCK, REPOSITORY, UV, VARIANTS, run

LOCK_SCRIPT = REPOSITORY / "scripts" / "lock"
UV_IMAGE = re.compile(r"ghcr\.io/astral-sh/uv:(?P<version>\S+)")


def keel_uv_pin() -> str:
    """The uv version Keel's `test` extra pins."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    test = project["optional-dependencies"]["test"]
    return next(line.partition("==")[2] for line in test if line.startswith("uv=="))


def checkout_copy(destination: Path) -> Path:
    """This checkout's files (uncommitted changes included) as a git repository of its own."""
    listed = run(
        "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=REPOSITORY
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (REPOSITORY / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, destination / name)
    identity = ["-c", "user.name=Keel tests", "-c", "user.email=tests@keel.invalid"]
    run("git", "init", "--quiet", cwd=destination)
    run("git", "add", "--all", cwd=destination)
    run("git", *identity, "commit", "--quiet", "-m", "the checkout", cwd=destination)
    return destination


def assert_lock_is_what_uv_writes(tree: Path, scratch: Path) -> None:
    """`uv lock --check` passes in the service, and its uv.lock is byte for byte what uv
    writes when it re-locks the service from the framework's probe lock. (`uv lock` leaves
    a lock it finds current as it is, so it is given the probe's: the root package's name
    differs, uv writes the lock anew, with the versions the probe's lock prefers.)"""
    run(UV, "lock", "--check", "--offline", cwd=tree)
    framework = yaml.safe_load((tree / ".copier-answers.yml").read_text())["framework"]
    scratch.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(tree / name, scratch / name)
    shutil.copy2(REPOSITORY / "includes/uv-lock" / f"{framework}.lock", scratch / "uv.lock")
    run(UV, "lock", cwd=scratch)
    assert (scratch / "uv.lock").read_text() == (tree / "uv.lock").read_text(), (
        "the rendered uv.lock differs from what `uv lock` writes"
    )


# --- the template's locks ----------------------------------------------------------------


def test_the_template_locks_are_current():
    result = run(BIN / "python", LOCK_SCRIPT, "--check", check=False)
    assert result.returncode == 0, result.stderr


def test_a_moved_pin_makes_its_frameworks_lock_stale_until_scripts_lock_runs(tmp_path):
    """A pin of the FastAPI web extra moved without re-locking: `--check` names that lock
    alone; `scripts/lock` re-locks it and leaves Django's as it was."""
    copy = checkout_copy(tmp_path / "keel")
    pyproject = copy / "template/pyproject.toml.jinja"
    assert '"uvicorn==0.54.0"' in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace('"uvicorn==0.54.0"', '"uvicorn==0.53.0"'))
    django_before = (copy / "includes/uv-lock/django.lock").read_bytes()

    stale = run(BIN / "python", copy / "scripts/lock", "--check", check=False)
    assert stale.returncode == 1, stale.stderr
    assert stale.stderr.splitlines() == [
        "scripts/lock: includes/uv-lock/fastapi.lock is stale (template/pyproject.toml.jinja "
        "changed): run scripts/lock and commit it"
    ]

    run(BIN / "python", copy / "scripts/lock")
    run(BIN / "python", copy / "scripts/lock", "--check")
    assert (
        'name = "uvicorn"\nversion = "0.53.0"\n'
        in (copy / "includes/uv-lock/fastapi.lock").read_text()
    )
    assert (copy / "includes/uv-lock/django.lock").read_bytes() == django_before


# --- every rendered service's lock -------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_renders_the_lock_uv_writes(rendered, tmp_path, variant):
    assert_lock_is_what_uv_writes(rendered[variant], tmp_path / "relocked")


# Slugs that sort before every locked package, after all of them, right after the probe's
# own name, between two packages and as a prefix of one (celery-batches-x after
# celery-batches); the probe's own name too.
SLUGS = ["aa", "zz-last", "keel-lock-probf", "mamba", "celery-batches-x", "keel-lock-probe"]


@pytest.mark.parametrize("framework", ["fastapi", "django"])
@pytest.mark.parametrize("slug", SLUGS)
def test_a_service_of_any_name_gets_the_lock_uv_writes(tmp_path, framework, slug):
    tree = tmp_path / "service"
    data = {"project_name": "Name Probe", "project_slug": slug, "framework": framework}
    render.new(tree, template=str(REPOSITORY), data=data, defaults=True, vcs_ref="HEAD")
    assert (
        f'\nname = "{slug}"\nversion = "0.1.0"\nsource = {{ editable = "." }}\n'
        in (tree / "uv.lock").read_text()
    )
    assert_lock_is_what_uv_writes(tree, tmp_path / "relocked")


# --- uv, one version ---------------------------------------------------------------------


UV_VERSIONS = re.compile(
    r"\buv==(?P<pip>[0-9][0-9.]*[0-9])|astral-sh/uv:(?P<image>[0-9][0-9.]*[0-9])"
)


def setup_uv_versions(workflow: Path) -> list[str]:
    # The template's workflow keeps GitHub's ${{ }} in {% raw %}: YAML once those go.
    text = re.sub(r"\{% (end)?raw %\}", "", workflow.read_text())
    jobs = yaml.safe_load(text)["jobs"].values()
    return [
        str((step.get("with") or {}).get("version"))
        for job in jobs
        for step in job["steps"]
        if step.get("uses", "").startswith("astral-sh/setup-uv@")
    ]


def test_uv_is_pinned_to_one_version_everywhere():
    """Keel's `test` extra pins uv (the tests run it); the template's images, CI and README
    name that version and no other."""
    pin = keel_uv_pin()
    assert run(UV, "--version").stdout.split()[1] == pin
    template = REPOSITORY / "template"
    named = {
        path.relative_to(REPOSITORY).as_posix(): [
            match["pip"] or match["image"] for match in UV_VERSIONS.finditer(path.read_text())
        ]
        for path in [REPOSITORY / "pyproject.toml", *template.rglob("*")]
        if path.is_file()
    }
    named["template/.github/workflows/ci.yml.jinja"] += setup_uv_versions(
        template / ".github/workflows/ci.yml.jinja"
    )
    for where in ("Dockerfile", ".github/workflows/ci.yml.jinja", "README.md.jinja"):
        assert named[f"template/{where}"], f"template/{where} names no uv version"
    assert {version for versions in named.values() for version in versions} == {pin}, named


BUILD_BACKEND_PIN = re.compile(r"setuptools==\d+(\.\d+)+")


def test_the_build_backend_is_pinned_to_one_version(rendered):
    """Every build of a locked service also installs its build backend: unpinned, a new
    setuptools release could change or break the image build of an unchanged service."""
    pyprojects = [
        REPOSITORY / "pyproject.toml",
        *(tree / "pyproject.toml" for tree in rendered.values()),
    ]
    requires = {
        str(path): tomllib.loads(path.read_text())["build-system"]["requires"]
        for path in pyprojects
    }
    pins = {pin for pinned in requires.values() for pin in pinned}
    assert len(pins) == 1 and BUILD_BACKEND_PIN.fullmatch(next(iter(pins))), requires


SYNC = "uv sync --locked --extra web --extra test"


@pytest.mark.parametrize("variant", ["defaults", "one-domain-django"])
def test_the_readme_and_ci_install_the_locked_set_with_uv(rendered, variant):
    """The README's native run and CI's test job both start with the same `uv sync
    --locked`, and CI's uv cache is keyed on uv.lock."""
    tree = rendered[variant]
    block = README_BLOCK.search((tree / "README.md").read_text())
    assert block and block.group(1).splitlines()[:2] == [SYNC, ". .venv/bin/activate"]
    steps = yaml.safe_load((tree / ".github/workflows/ci.yml").read_text())["jobs"]["test"]
    steps = steps["steps"]
    setup = next(step for step in steps if step.get("uses", "").startswith("astral-sh/setup-uv@"))
    assert setup["with"]["enable-cache"] is True
    assert setup["with"]["cache-dependency-glob"] == "uv.lock"
    assert setup["with"]["activate-environment"] is True
    runs = [step["run"].strip() for step in steps if "run" in step]
    assert runs[0] == SYNC
    assert not any("pip install" in run for run in runs)


# --- what the images install -------------------------------------------------------------


def test_every_uv_sync_in_the_dockerfile_is_locked_and_only_the_api_gets_web():
    named = dockerfile.stages(REPOSITORY / "template" / "Dockerfile")
    installs = {
        target: dockerfile.runs(named, dockerfile.venv_source(named, target))
        for target in ("worker", "api")
    }
    for target, commands in installs.items():
        assert commands, target
        for command in commands:
            assert "pip install" not in command, (target, command)
            if "uv " in command:
                assert re.search(r"\buv sync\b", command), (target, command)
                assert "--locked" in command.split() and "--no-dev" in command.split(), command
    extras = {
        target: set(re.findall(r"--extra[ =](\S+)", " ".join(commands)))
        for target, commands in installs.items()
    }
    assert extras == {"worker": set(), "api": {"web"}}
    assert not any("--all-extras" in " ".join(commands) for commands in installs.values())


def locked_set(tree: Path, extras: list[str]) -> dict[str, str]:
    """What uv.lock holds for this machine without the test extra: name -> version."""
    arguments = [f"--extra={extra}" for extra in extras]
    exported = run(
        UV, "export", "--locked", "--offline", "--no-dev", "--no-hashes", "--no-header",
        "--no-annotate", "--no-emit-project", "--format", "requirements.txt", *arguments,
        cwd=tree,
    ).stdout  # fmt: skip
    found = {}
    for line in exported.splitlines():
        requirement, _, marker = line.partition(";")
        if "==" not in requirement or (marker.strip() and not Marker(marker).evaluate()):
            continue
        name, _, version = requirement.strip().partition("==")
        found[canonicalize_name(name)] = version
    return found


def test_a_stale_lock_stops_the_replayed_image_build(rendered, tmp_path):
    """A pin changed in pyproject.toml without `uv lock`: the first `uv sync` of the build
    stages, replayed (tests/dockerfile.py), refuses. What the built images install is proven
    on real images (test_containers.py)."""
    context = tmp_path / "context"
    shutil.copytree(
        rendered["defaults"], context, ignore=shutil.ignore_patterns(".venv", "*.egg-info")
    )
    pyproject = context / "pyproject.toml"
    assert '"pyyaml==6.0.3"' in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace('"pyyaml==6.0.3"', '"pyyaml==6.0.2"'))
    environment = {**os.environ, "PATH": f"{UV.parent}:{os.environ['PATH']}"}
    environment.pop("VIRTUAL_ENV", None)
    failed = dockerfile.replay(
        context / "Dockerfile", "build-worker", context, tmp_path / "image",
        images={f"ghcr.io/astral-sh/uv:{keel_uv_pin()}"}, environment=environment,
        unset=("UV_NO_CACHE",),
    )  # fmt: skip
    assert failed is not None, "uv sync installed from a stale lock"
    assert "needs to be updated" in failed.stderr, failed.stderr[-2000:]
