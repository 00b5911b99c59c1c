"""`keel update` on real git repositories: every earlier release to HEAD, conflicts, renames,
a new domain, a dirty tree and queue arguments; updated services run their own tests.

Tags are not always carried with a clone, so the template used here is a fresh clone of this
repository without tags, whose release commits (`release: vX.Y.Z`) the tests tag themselves.
"""

import difflib
import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from generator import render
from generator.cli import app

from .conftest import BIN, REPOSITORY, assert_suite_passed, run, service_suite

pytestmark = pytest.mark.services

RELEASE_SUBJECT = re.compile(r"^release: (v\d+\.\d+\.\d+)$")
IDENTITY = {
    "GIT_AUTHOR_NAME": "Keel tests",
    "GIT_AUTHOR_EMAIL": "tests@keel.invalid",
    "GIT_COMMITTER_NAME": "Keel tests",
    "GIT_COMMITTER_EMAIL": "tests@keel.invalid",
}
ANSWERS = {"project_name": "Ledger Works", "domains": "[ledger, payments]"}
USER_LINE = "team edit {n}: kept across template updates"
COMMENT = {".py": "#", ".yaml": "#", ".yml": "#", ".toml": "#", ".sh": "#", ".md": "<!--"}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **IDENTITY}
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def release_commits(repository: Path) -> list[tuple[str, str]]:
    """(tag, commit) of every release commit in HEAD's history, oldest first."""
    found = []
    for line in git(repository, "log", "--reverse", "--format=%H %s").splitlines():
        commit, _, subject = line.partition(" ")
        if match := RELEASE_SUBJECT.match(subject):
            found.append((match.group(1), commit))
    return found


def earlier_releases() -> list[str]:
    """Releases before the one under test: HEAD's, or the working tree's when it has changes."""
    head = git(REPOSITORY, "rev-parse", "HEAD").strip()
    dirty = git(REPOSITORY, "status", "--porcelain", "--untracked-files=no").strip()
    return [tag for tag, commit in release_commits(REPOSITORY) if dirty or commit != head]


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """This repository cloned without tags, the working tree's changes committed on top,
    and its release commits tagged."""
    clone = tmp_path_factory.mktemp("template") / "keel"
    git(REPOSITORY, "clone", "--quiet", "--no-tags", str(REPOSITORY), str(clone))
    listed = git(REPOSITORY, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in git(clone, "ls-files", "-z").split("\0"):
        if name:
            (clone / name).unlink()
    for name in filter(None, listed.split("\0")):
        if (REPOSITORY / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, clone / name)
    git(clone, "add", "--all")
    if git(clone, "status", "--porcelain").strip():
        git(clone, "commit", "--quiet", "-m", "work in progress (uncommitted in the checkout)")
    for tag, commit in release_commits(clone):
        git(clone, "tag", tag, commit)
    # Unreleased work stands for the version it declares, so migrations meant for it run.
    version = "v" + tomllib.loads((clone / "pyproject.toml").read_text())["project"]["version"]
    if not git(clone, "tag", "--points-at", "HEAD").strip() and not git(
        clone, "tag", "-l", version
    ):
        git(clone, "tag", version)
    return clone


def render_at(template: Path, ref: str, destination: Path, **answers: str) -> Path:
    render.new(destination, template=str(template), data=answers, defaults=True, vcs_ref=ref)
    git(destination, "init", "--quiet")
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "-m", f"Start from Keel {ref}")
    return destination


def answers_for(ref: str) -> dict[str, str]:
    return {**ANSWERS, "queue_type": "quorum"} if ref != "v0.1.0" else dict(ANSWERS)


def keel_update(service: Path, *arguments: str):
    return CliRunner().invoke(app, ["update", str(service), *arguments])


def files(tree: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(tree)): path.read_bytes()
        for path in sorted(tree.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(tree).parts
    }


def snapshot(tree: Path) -> tuple[str, str, str]:
    digest = hashlib.sha256()
    for name, content in files(tree).items():
        digest.update(name.encode() + b"\0" + content)
    return digest.hexdigest(), git(tree, "status", "--porcelain"), git(tree, "rev-parse", "HEAD")


def quiet_line(old: list[str], new: list[str]) -> int | None:
    """A line of `old` at least three lines from anything the template changes, if any."""
    changed = set()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, start, end, _, _ in matcher.get_opcodes():
        if tag != "equal":
            changed.update(range(start - 3, max(end, start + 1) + 3))
    return next((index for index in range(len(old)) if index not in changed), None)


def insert_user_edits(service: Path, target: Path, renamed: dict[str, str]) -> dict[str, str]:
    """Edit every file the update will change (and compose, settings and README in any case)
    where the edit cannot meet a template change; returns path after update -> line."""
    old_files, new_files = files(service), files(target)
    edits = {}
    for name, content in old_files.items():
        new_name = renamed.get(name, name)
        suffix = Path(name).suffix
        always = name in ("compose.yaml", "README.md") or name.endswith("/settings.py")
        if suffix not in COMMENT or new_name not in new_files or name in NOT_EDITED:
            continue
        if name.startswith("deploy/base/generated/"):  # written by generate-manifests only
            continue
        if new_files[new_name] == content and not always:
            continue
        old, new = content.decode().splitlines(), new_files[new_name].decode().splitlines()
        index = quiet_line(old, new)
        if index is None:
            continue
        line = f"{COMMENT[suffix]} {USER_LINE.format(n=len(edits))}"
        line += " -->" if suffix == ".md" else ""
        old.insert(index + 1, line)
        (service / name).write_text("\n".join(old) + "\n")
        edits[new_name] = line
    git(service, "commit", "--quiet", "--all", "-m", "the team's own edits")
    return edits


NOT_EDITED = {".copier-answers.yml"}  # copier's record, rewritten by every update
RENAMED = {"src/ledger_works/healthcheck.py": "src/ledger_works/check_ready.py"}


@dataclass
class Updated:
    """A service rendered at an earlier release, edited by its team and updated to HEAD."""

    service: Path
    edits: dict[str, str]
    output: str
    exit_code: int
    #: The service's files right after the update, before its tests wrote any cache.
    files: dict[str, bytes]
    #: What a fresh render at HEAD with the same answers gives.
    expected: dict[str, bytes]


@pytest.fixture(scope="session")
def updated(template, tmp_path_factory) -> dict[str, Updated]:
    """Every earlier release, rendered, edited by its team, updated to HEAD and committed."""
    results = {}
    for release in earlier_releases():
        root = tmp_path_factory.mktemp(f"update-{release}")
        answers = answers_for(release)
        service = render_at(template, release, root / "service", **answers)
        target = render_at(template, "HEAD", root / "target", **answers)
        edits = insert_user_edits(service, target, RENAMED)
        result = keel_update(service, "--to", "HEAD")
        results[release] = Updated(
            service, edits, result.output, result.exit_code, files(service), files(target)
        )
        if result.exit_code == 0:
            git(service, "add", "--all")
            git(service, "commit", "--quiet", "-m", f"Update from {release}")
    return results


@pytest.mark.parametrize("release", earlier_releases())
def test_updating_from_an_earlier_release_keeps_edits_and_applies_the_template(
    template, updated, release
):
    update = updated[release]
    edits = update.edits
    categories = {"compose.yaml", "README.md", "src/ledger_works/settings.py"}
    assert categories <= set(edits), sorted(edits)
    assert any(name.endswith(".py") and "settings" not in name for name in edits), sorted(edits)
    assert update.exit_code == 0, update.output

    assert sorted(update.files) == sorted(update.expected)
    for name, content in update.expected.items():
        text = update.files[name].decode()
        if name in edits:
            assert edits[name] in text, name
            text = "\n".join(line for line in text.splitlines() if line != edits[name]) + "\n"
        assert text == content.decode(), f"{name} differs from a fresh render at HEAD"
    update_answers = yaml.safe_load(update.files[".copier-answers.yml"])
    assert update_answers["_commit"] == git(template, "describe", "--tags").strip()


def test_a_service_updated_from_the_oldest_release_passes_its_own_suite(updated, natives):
    """Every updated service above equals a fresh render at HEAD plus its team's comment
    lines, and fresh renders run their suites in test_service; the oldest release, with the
    most to update, runs its suite here as well, in the tree `keel update` left."""
    oldest = updated[earlier_releases()[0]]
    assert oldest.exit_code == 0, oldest.output
    assert_suite_passed(service_suite(natives, oldest.service))


def readme_line_the_template_rewrites(template: Path, tmp_path: Path) -> tuple[str, int]:
    """The newest earlier release whose README has a line HEAD rewrites, and that line."""
    target = files(render_at(template, "HEAD", tmp_path / "target", **ANSWERS))
    new = target["README.md"].decode().splitlines()
    for release in reversed(earlier_releases()):
        old_tree = render.new(
            tmp_path / f"probe-{release}", template=str(template), data=ANSWERS,
            defaults=True, vcs_ref=release,
        ).destination  # fmt: skip
        old = (old_tree / "README.md").read_text().splitlines()
        opcodes = difflib.SequenceMatcher(a=old, b=new).get_opcodes()
        rewritten = [start for tag, start, _, _, _ in opcodes if tag == "replace"]
        if rewritten:
            return release, rewritten[0]
    raise AssertionError("no earlier release has a README line that HEAD rewrites")


def test_a_conflict_fails_keel_update_naming_the_file_where_copier_exits_0(template, tmp_path):
    release, changed = readme_line_the_template_rewrites(template, tmp_path)
    services = [render_at(template, release, tmp_path / name, **ANSWERS) for name in "ab"]
    old = files(services[0])["README.md"].decode().splitlines()
    for service in services:
        lines = list(old)
        lines[changed] = "The team rewrote this line."
        (service / "README.md").write_text("\n".join(lines) + "\n")
        git(service, "commit", "--quiet", "--all", "-m", "rewrite a README line")

    result = keel_update(services[0], "--to", "HEAD")
    assert result.exit_code == 1, result.output
    assert "README.md" in result.output
    assert "need a manual merge" in " ".join(result.output.split())

    # Plain copier leaves the very same markers and still exits 0: why `keel update` exists.
    copier_update = run(
        BIN / "copier",
        "update",
        "--trust",
        "--defaults",
        "--vcs-ref",
        "HEAD",
        "--conflict",
        "inline",
        services[1],
        check=False,
    )
    assert copier_update.returncode == 0, copier_update.stderr
    assert "<<<<<<< " in (services[1] / "README.md").read_text()


def test_a_file_the_template_moved_keeps_the_users_edits(template, tmp_path):
    service = render_at(template, "v0.3.0", tmp_path / "service", **ANSWERS)
    old_path = service / "src/ledger_works/healthcheck.py"
    old_path.write_text(old_path.read_text() + "# the team's timeout note\n")
    git(service, "commit", "--quiet", "--all", "-m", "note")

    result = keel_update(service, "--to", "HEAD")
    assert result.exit_code == 0, result.output
    assert not old_path.exists()
    moved = (service / "src/ledger_works/check_ready.py").read_text()
    assert moved.endswith("# the team's timeout note\n")
    assert moved.startswith('"""``check-ready``')  # the template's own change, too


def test_adding_a_domain_adds_everything_and_leaves_the_others_alone(template, tmp_path, native):
    service = render_at(template, "HEAD", tmp_path / "service", **ANSWERS)
    before = files(service)

    result = keel_update(service, "--to", "HEAD", "--data", "domains=[ledger, payments, refunds]")
    assert result.exit_code == 0, result.output

    after = files(service)
    for name, content in before.items():
        if "/ledger/" in name or "/payments/" in name:
            assert after[name] == content, name
    package = "src/ledger_works"
    assert f"{package}/refunds/tasks.py" in after
    assert "refunds_database_url" in after[f"{package}/settings.py"].decode()
    assert "refunds:" in after[f"{package}/topology.yaml"].decode()
    compose = yaml.safe_load(after["compose.yaml"])["services"]
    assert {"refunds-match", "refunds-reward"} <= set(compose)
    assert "REFUNDS_DATABASE_URL" in compose["api"]["environment"]
    queues = after["deploy/base/generated/rabbitmq.yaml"].decode()
    assert "name: refunds.match" in queues and "name: refunds.reward" in queues
    workers = after["deploy/base/generated/workers.yaml"].decode()
    assert "ledger-works-refunds-match-worker" in workers
    assert "REFUNDS_DATABASE_URL" in after["deploy/base/config.yaml"].decode()
    drift = run(
        native["bin"] / "python",
        "-m",
        "ledger_works.manifests",
        "--check",
        cwd=service,
        env={**os.environ, "PYTHONPATH": str(service / "src")},
        check=False,
    )
    assert drift.returncode == 0, drift.stderr


def test_a_dirty_tree_is_refused_and_left_byte_for_byte_unchanged(template, tmp_path):
    service = render_at(template, "v0.2.0", tmp_path / "service", **ANSWERS)
    (service / "README.md").write_text("work in progress\n")
    (service / "notes.txt").write_text("untracked\n")
    before = snapshot(service)

    result = keel_update(service, "--to", "HEAD")
    assert result.exit_code == 2, result.output
    assert "uncommitted changes" in result.output and "git stash -u" in result.output
    assert snapshot(service) == before


@pytest.mark.parametrize("release", [earlier_releases()[0], "HEAD"])
def test_a_framework_switch_is_refused_before_anything_is_written(template, tmp_path, release):
    service = render_at(template, release, tmp_path / "service", **ANSWERS)
    before = snapshot(service)

    result = keel_update(service, "--to", "HEAD", "--data", "framework=django")
    assert result.exit_code == 2, result.output
    assert "a framework switch is not an update" in " ".join(result.output.split())
    assert snapshot(service) == before


@pytest.mark.parametrize("change", ["dead_letter=arguments", "queue_type=quorum"])
def test_changing_an_existing_queues_arguments_is_reported_before_writing(
    template, tmp_path, change
):
    service = render_at(template, "HEAD", tmp_path / "service", **ANSWERS)
    before = snapshot(service)

    result = keel_update(service, "--to", "HEAD", "--data", change)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "queue ledger.reward: arguments" in output
    assert "Nothing was changed" in output
    assert "new name" in output and "policies" in output
    assert snapshot(service) == before


def test_check_says_whether_a_newer_release_exists_and_update_takes_the_latest(template, tmp_path):
    latest = git(template, "describe", "--tags", "--abbrev=0").strip()
    old = render_at(template, earlier_releases()[0], tmp_path / "old", **ANSWERS)
    current = render_at(template, latest, tmp_path / "current", **ANSWERS)

    stale = keel_update(old, "--check")
    assert stale.exit_code == 1, stale.output
    assert f"-> {latest}" in stale.output
    fresh = keel_update(current, "--check")
    assert fresh.exit_code == 0, fresh.output
    assert "Up to date" in fresh.output

    result = keel_update(old)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((old / ".copier-answers.yml").read_text())["_commit"] == latest
    assert f"to {latest}" in result.output


def test_rendered_pre_commit_hooks_reject_conflict_leftovers(template, tmp_path):
    service = render_at(template, "HEAD", tmp_path / "service", **ANSWERS)
    hooks = [BIN / "pre-commit", "run", "--all-files"]
    environment = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache")}
    assert run(*hooks, cwd=service, env=environment, check=False).returncode == 0

    readme = service / "README.md"
    readme.write_text(readme.read_text() + "<<<<<<< before updating\nmine\n=======\n")
    (service / "compose.yaml.rej").write_text("@@ a hunk copier could not apply\n")
    git(service, "add", "--all")
    result = run(*hooks, cwd=service, env=environment, check=False)
    assert result.returncode == 1
    assert "no merge-conflict markers" in result.stdout and "README.md" in result.stdout
    assert "compose.yaml.rej" in result.stdout
