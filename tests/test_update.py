"""`keel update` on real git repositories: every earlier release to HEAD, each kind of conflict
it lists, renames, a new domain, a dirty tree and queue arguments; updated services run their
own tests.

Tags are not always carried with a clone, so the template used here is a fresh clone of this
repository without tags, whose release commits (`release: vX.Y.Z`) the tests tag themselves.
A clone without those commits (a shallow one) fails the tests that need them, saying so,
rather than leaving them nothing to test.
"""

import difflib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from generator import render
from generator import update as updating
from generator.cli import app

from . import workflows
from .conftest import (
    BIN,
    REPOSITORY,
    UV,
    WORKFLOW,
    assert_replayed,
    replay_test_job,
    run,
    selected,
)

pytestmark = [pytest.mark.services, pytest.mark.update]

RELEASE_SUBJECT = re.compile(r"^release: (v\d+\.\d+\.\d+)$")
NO_RELEASE = (
    "no earlier release found: the update tests need the full git history (git fetch --unshallow)"
)
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


def releases_before_head(repository: Path) -> list[str]:
    """Releases before the one under test: HEAD's, or the working tree's when it has changes."""
    head = git(repository, "rev-parse", "HEAD").strip()
    dirty = git(repository, "status", "--porcelain", "--untracked-files=no").strip()
    return [tag for tag, commit in release_commits(repository) if dirty or commit != head]


def earlier_releases(repository: Path = REPOSITORY) -> list[str]:
    """releases_before_head(), failing the test that asks when there is none."""
    return releases_before_head(repository) or pytest.fail(NO_RELEASE, pytrace=False)


def releases_to_parametrize(repository: Path = REPOSITORY) -> list[str]:
    """The earlier releases to parametrize with; without any, one case that fails in
    earlier_releases(), since an empty parameter list would be collected as a skip."""
    return releases_before_head(repository) or ["none found"]


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


def quiet_line(old: list[str], new: list[str], python: bool = False) -> int | None:
    """A line of `old` at least three lines from anything the template changes, if any; in
    Python, one after which a comment line keeps the file lint-clean and formatted."""
    changed = set()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, start, end, _, _ in matcher.get_opcodes():
        if tag != "equal":
            changed.update(range(start - 3, max(end, start + 1) + 3))
    fits = between_statements if python else lambda lines, index: True
    return next(
        (index for index in range(len(old)) if index not in changed and fits(old, index)), None
    )


def indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def between_statements(lines: list[str], index: int) -> bool:
    """Between two plain statements at one indentation: not in an import block, not after a
    decorator or an opening line, so neither ruff's import order nor its formatter moves it."""
    if index + 1 >= len(lines):
        return False
    this, after = lines[index], lines[index + 1]
    plain = (
        this.strip() and after.strip() and indent(this) == indent(after)
        and not this.rstrip().endswith((":", "(", "[", "{", ",", "\\"))
    )  # fmt: skip
    code = (this.lstrip(), after.lstrip())
    return bool(plain) and not any(
        line.startswith(("import ", "from ", "@", "#", '"', "'")) for line in code
    )


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
        index = quiet_line(old, new, python=suffix == ".py")
        if index is None:
            continue
        margin = indent(old[index + 1]) if suffix == ".py" else ""
        line = f"{margin}{COMMENT[suffix]} {USER_LINE.format(n=len(edits))}"
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
    #: The release's files (by their path at HEAD) that the template changes.
    changed: set[str]


@pytest.fixture(scope="session")
def updated(template, tmp_path_factory) -> Callable[[str], Updated]:
    """An earlier release, rendered, edited by its team, updated to HEAD and committed: once
    per release and session."""

    @functools.cache
    def update_from(release: str) -> Updated:
        assert release in earlier_releases(), release
        root = tmp_path_factory.mktemp(f"update-{release}")
        answers = answers_for(release)
        service = render_at(template, release, root / "service", **answers)
        target = render_at(template, "HEAD", root / "target", **answers)
        rendered, expected = files(service), files(target)
        changed = {
            RENAMED.get(name, name)
            for name, content in rendered.items()
            if expected.get(RENAMED.get(name, name), content) != content
        }
        edits = insert_user_edits(service, target, RENAMED)
        result = keel_update(service, "--to", "HEAD")
        if result.exit_code == 0:
            git(service, "add", "--all")
            git(service, "commit", "--quiet", "-m", f"Update from {release}")
        return Updated(
            service, edits, result.output, result.exit_code, files(service), expected, changed
        )

    return update_from


@pytest.mark.parametrize("release", releases_to_parametrize())
def test_updating_from_an_earlier_release_keeps_edits_and_applies_the_template(
    template, updated, release
):
    update = updated(release)
    edits = update.edits
    categories = {"compose.yaml", "README.md", "src/ledger_works/settings.py"}
    assert categories <= set(edits), sorted(edits)
    python = {name for name in update.changed if name.endswith(".py") and "settings" not in name}
    if python:  # the template changes Python code besides the settings since this release
        assert python & set(edits), sorted(edits)
    assert update.exit_code == 0, update.output

    assert sorted(update.files) == sorted(update.expected)
    assert str(WORKFLOW) in update.files, "the service gains the CI workflow"
    for name, content in update.expected.items():
        text = update.files[name].decode()
        if name in edits:
            assert edits[name] in text, name
            text = "\n".join(line for line in text.splitlines() if line != edits[name]) + "\n"
        assert text == content.decode(), f"{name} differs from a fresh render at HEAD"
    update_answers = yaml.safe_load(update.files[".copier-answers.yml"])
    assert update_answers["_commit"] == git(template, "describe", "--tags").strip()


@pytest.fixture(scope="session")
def oldest_suite(updated, natives, tmp_path_factory) -> Iterator[tuple[Updated, Future]]:
    """The service updated from the oldest release, its CI test job replayed in the
    background from this module's first test on (the test that waits for it runs last)."""
    oldest = updated(earlier_releases()[0])
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oldest") as pool:
        if oldest.exit_code != 0:
            yield oldest, None
            return
        scratch = tmp_path_factory.mktemp("oldest-python")
        yield oldest, pool.submit(replay_test_job, natives, oldest.service, scratch)


@pytest.fixture(scope="module", autouse=True)
def oldest_suite_under_way(request) -> None:
    if selected(request, "::test_a_service_updated_from_the_oldest_release_passes_its_own"):
        request.getfixturevalue("oldest_suite")


def test_a_service_updated_from_the_oldest_release_passes_its_own_suite(oldest_suite):
    """Every updated service above equals a fresh render at HEAD plus its team's comment
    lines, and fresh renders replay their CI test job in test_service; the oldest release,
    with the most to update, replays it here as well, in the tree `keel update` left."""
    oldest, replay = oldest_suite
    assert oldest.exit_code == 0, oldest.output
    assert_replayed(replay.result())


def test_release_discovery_on_a_shallow_clone_fails_saying_full_history_is_needed(tmp_path):
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth", "1", f"file://{REPOSITORY}", str(shallow))

    with pytest.raises(pytest.fail.Exception, match=re.escape(NO_RELEASE)):
        earlier_releases(shallow)
    # One case, failing as above, is collected for the update test: not an empty, skipped one.
    assert len(releases_to_parametrize(shallow)) == 1


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


def test_conflict_markers_alone_are_listed(template, tmp_path):
    """A file the template moved (healthcheck.py, v0.4.0) and rewrote where the team edited:
    keel merges the move itself (merge_moved_files) and stages the result, conflict markers
    and all, so git shows no unmerged path; only the markers say it needs a person."""
    assert "v0.3.0" in earlier_releases()
    service = render_at(template, "v0.3.0", tmp_path / "service", **ANSWERS)
    old_path = service / "src/ledger_works/healthcheck.py"
    rewritten = "os.environ.get('PORT', '8000')"  # HEAD reads the port from the settings
    assert rewritten in old_path.read_text()
    old_path.write_text(old_path.read_text().replace(rewritten, "os.environ['PORT']"))
    git(service, "commit", "--quiet", "--all", "-m", "the port must be set")

    outcome = updating.update(service, to="HEAD")
    assert outcome.conflicts == ["src/ledger_works/check_ready.py"]
    moved = (service / "src/ledger_works/check_ready.py").read_text()
    assert "<<<<<<< template after updating" in moved and "os.environ['PORT']" in moved


NAME = "shared.dat"
# git status of NAME after a merge -> its content at the base, ours and theirs (None: absent)
UNMERGED = {
    "UU": (b"\0base", b"\0ours", b"\0theirs"),  # binary: git writes no markers
    "AA": (None, b"\0ours", b"\0theirs"),
    "UD": (b"base\n", b"ours\n", None),
    "DU": (b"base\n", None, b"theirs\n"),
}


@pytest.mark.parametrize("status", UNMERGED)
def test_unmerged_paths_alone_are_listed(tmp_path, status):
    """Copier 9.19.1 marks a path unmerged only when it has just written conflict markers
    into it, so a real update never leaves an unmerged path without them: this state is
    built with `git merge` (a binary file, or one that a side deleted), and conflicts() is
    asked directly."""
    repository = tmp_path / "repository"
    repository.mkdir()
    git(repository, "init", "--quiet")

    def commit(content: bytes | None, message: str) -> None:
        if content is None:
            (repository / NAME).unlink(missing_ok=True)
        else:
            (repository / NAME).write_bytes(content)
        git(repository, "add", "--all")
        git(repository, "commit", "--quiet", "--allow-empty", "-m", message)

    base, ours, theirs = UNMERGED[status]
    commit(base, "base")
    git(repository, "branch", "theirs")
    commit(ours, "ours")
    git(repository, "checkout", "--quiet", "theirs")
    commit(theirs, "theirs")
    git(repository, "checkout", "--quiet", "-")
    merge = subprocess.run(
        ["git", "merge", "--quiet", "theirs"],
        cwd=repository,
        capture_output=True,
        env={**os.environ, **IDENTITY},
    )
    assert merge.returncode == 1, merge.stderr
    assert git(repository, "status", "--porcelain") == f"{status} {NAME}\n"
    assert not updating.CONFLICT_MARKER.search((repository / NAME).read_bytes())

    assert updating.conflicts(repository) == [NAME]


WAIT = "src/ledger_works/wait.py"


@dataclass
class ChangedTemplate:
    """A throwaway copy of the template with one commit on `base` that rewrites line `line`
    of wait.py (rendered verbatim), a line of three non-blank ones."""

    path: Path
    base: str
    line: int


@pytest.fixture(scope="session")
def changed_template(template, tmp_path_factory) -> ChangedTemplate:
    clone = tmp_path_factory.mktemp("changed-template") / "keel"
    git(template.parent, "clone", "--quiet", str(template), str(clone))
    base = git(clone, "rev-parse", "HEAD").strip()
    source = clone / "template/src/{{package_name}}/wait.py"
    lines = source.read_text().splitlines()
    line = next(index for index in range(len(lines) - 2) if all(lines[index : index + 3]))
    lines[line] += " (rewritten by the template)"
    source.write_text("\n".join(lines) + "\n")
    git(clone, "commit", "--quiet", "--all", "-m", "rewrite a line of wait.py")
    return ChangedTemplate(clone, base, line)


def edit_wait_line(changed: ChangedTemplate, destination: Path, line: int) -> Path:
    """A service at the changed template's base whose team edited wait.py's line `line`."""
    service = render_at(changed.path, changed.base, destination, **ANSWERS)
    lines = (service / WAIT).read_text().splitlines()
    lines[line] += " (edited by the team)"
    (service / WAIT).write_text("\n".join(lines) + "\n")
    git(service, "commit", "--quiet", "--all", "-m", "edit wait.py")
    return service


@pytest.mark.parametrize("apart", [0, 1], ids=["next line", "one line between"])
def test_an_edit_right_next_to_a_line_the_template_changes_is_a_conflict(
    changed_template, tmp_path, apart
):
    """Copier applies the team's edits as a patch whose context is the template's old lines;
    the next line's patch carries the changed line as context, fails, and copier then merges
    with `git merge-file`, which takes two changes that touch as one conflict. So the file is
    listed, with the team's edit and the template's change both in the conflict block.
    With one unchanged line between them, both are merged and nothing is listed."""
    edited = changed_template.line + 1 + apart
    service = edit_wait_line(changed_template, tmp_path / "service", edited)

    outcome = updating.update(service, to="HEAD")
    text = (service / WAIT).read_text()
    assert "(rewritten by the template)" in text and "(edited by the team)" in text
    if apart == 0:
        assert outcome.conflicts == [WAIT]
        conflict = text.split("<<<<<<< before updating")[1].split(">>>>>>> after updating")[0]
        assert "(edited by the team)" in conflict and "(rewritten by the template)" in conflict
    else:
        assert outcome.conflicts == []
        lines = text.splitlines()
        assert lines[changed_template.line].endswith("(rewritten by the template)")
        assert lines[edited].endswith("(edited by the team)")


def test_a_rej_file_copier_leaves_is_listed(changed_template, tmp_path):
    """Copier turns each .rej file it finds into inline conflict markers, but it looks for
    them with `git status`, which lists no untracked file under the user's git config
    status.showUntrackedFiles=no: the rejected hunk then stays in a .rej file, the team's
    edit on the line the template rewrote is nowhere else, and git shows no conflict.
    (`keel` runs in its own process: copier's git takes its environment at import.)"""
    service = edit_wait_line(changed_template, tmp_path / "service", changed_template.line)
    config = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "status.showUntrackedFiles",
        "GIT_CONFIG_VALUE_0": "no",
    }

    result = run(
        BIN / "keel", "update", service, "--to", "HEAD", env={**os.environ, **config}, check=False
    )
    assert result.returncode == 1, result.stderr
    listed = [line[2:] for line in result.stderr.splitlines() if line.startswith("  ")]
    assert listed == [f"{WAIT}.rej"], result.stderr
    assert "(edited by the team)" in (service / f"{WAIT}.rej").read_text()
    assert "(edited by the team)" not in (service / WAIT).read_text()


def test_a_pin_the_template_moves_reaches_an_updated_service_with_its_new_lock(template, tmp_path):
    """The template moves uvicorn's pin and re-locks (scripts/lock) in one commit: `keel
    update` brings the service both, and its uv.lock holds the new version and is current
    for its pyproject.toml, as `uv sync --locked` (images, CI, README) requires."""
    clone = tmp_path / "keel"
    git(template.parent, "clone", "--quiet", str(template), str(clone))
    service = render_at(clone, git(clone, "rev-parse", "HEAD").strip(), tmp_path / "service",
                        **ANSWERS)  # fmt: skip
    old, new = '"uvicorn==0.54.0"', '"uvicorn==0.55.0"'
    pyproject = clone / "template/pyproject.toml.jinja"
    assert old in pyproject.read_text()
    assert 'name = "uvicorn"\nversion = "0.54.0"\n' in (service / "uv.lock").read_text()
    pyproject.write_text(pyproject.read_text().replace(old, new))
    run(BIN / "python", clone / "scripts/lock")
    git(clone, "commit", "--quiet", "--all", "-m", "move uvicorn's pin")

    result = keel_update(service, "--to", "HEAD")
    assert result.exit_code == 0, result.output
    assert set(git(service, "status", "--porcelain").splitlines()) == {
        " M .copier-answers.yml",
        " M .pre-commit-config.yaml",
        " M pyproject.toml",
        " M uv.lock",
    }
    assert new in (service / "pyproject.toml").read_text()
    assert 'name = "uvicorn"\nversion = "0.55.0"\n' in (service / "uv.lock").read_text()
    run(UV, "lock", "--check", "--offline", cwd=service)


def test_a_file_the_template_moved_keeps_the_users_edits(template, tmp_path):
    assert "v0.3.0" in earlier_releases()
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


@pytest.mark.parametrize("release", ["oldest", "HEAD"])
def test_a_framework_switch_is_refused_before_anything_is_written(template, tmp_path, release):
    release = earlier_releases()[0] if release == "oldest" else release
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


def test_rendered_hooks_job_runs_keel_check_pinned_to_its_release_and_refuses_leftovers(
    template, tmp_path
):
    """The service's CI `hooks` job, replayed: pre-commit installs keel-check from the Keel
    commit the service was rendered from and passes; then an entrypoint without `exec`
    (L3a), a conflict marker and a `.rej` file each fail the same hooks."""
    service = render_at(template, "HEAD", tmp_path / "service", **ANSWERS)
    pinned = yaml.safe_load((service / ".pre-commit-config.yaml").read_text())["repos"][0]
    head = git(template, "rev-parse", "HEAD").strip()
    assert pinned == {"repo": str(template), "rev": head, "hooks": [{"id": "keel-check"}]}

    environment = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache")}
    stand_ins = {
        "actions/checkout": workflows.checkout,
        "actions/setup-python": workflows.layered_python(BIN.parent, tmp_path / "python"),
    }
    results = workflows.replay(service / WORKFLOW, "hooks", service, stand_ins, environment)
    assert [step.returncode for step in results] == [0] * len(results), results[-1].output
    assert re.search(r"keel check .*Passed", results[-1].output), results[-1].output

    entrypoint = service / "docker/entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text().replace('exec "$@"', '"$@"'))
    readme = service / "README.md"
    readme.write_text(readme.read_text() + "<<<<<<< before updating\nmine\n=======\n")
    (service / "compose.yaml.rej").write_text("@@ a hunk copier could not apply\n")
    git(service, "add", "--all")
    hooks = [BIN / "pre-commit", "run", "--all-files"]
    result = run(*hooks, cwd=service, env=environment, check=False)
    assert result.returncode == 1
    assert "docker/entrypoint.sh" in result.stdout and " L3a " in result.stdout, result.stdout
    assert "no merge-conflict markers" in result.stdout and "README.md" in result.stdout
    assert "compose.yaml.rej" in result.stdout


def test_keel_update_lists_only_what_keel_check_finds_new(template, tmp_path):
    """A template commit that brings a generic DATABASE_URL fallback (L14): `keel update`
    runs `keel check` before and after, and lists that finding alone (not the one the team
    already had), exit code unchanged."""
    clone = tmp_path / "keel"
    git(template.parent, "clone", "--quiet", str(template), str(clone))
    base = git(clone, "rev-parse", "HEAD").strip()
    service = render_at(clone, base, tmp_path / "service", **ANSWERS)
    own = service / "src/ledger_works/serving.py"
    own.write_text(own.read_text() + '\nLEGACY = os.environ.get("DATABASE_URL")\n')
    git(service, "commit", "--quiet", "--all", "-m", "the team's own fallback")
    source = clone / "template/src/{{package_name}}/wait.py"
    source.write_text(source.read_text() + '\nFALLBACK = os.environ.get("DATABASE_URL")\n')
    git(clone, "commit", "--quiet", "--all", "-m", "a generic fallback")

    result = run(BIN / "keel", "update", service, "--to", "HEAD", check=False)
    assert result.returncode == 0, result.stderr
    listed = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(listed) == 1 and listed[0].startswith(f"{WAIT}:"), result.stderr
    assert " L14 " in listed[0]


def test_an_installed_wheel_renders_its_own_release_and_updates_to_a_later_one(template, tmp_path):
    """`keel` as a tool: a wheel (no checkout next to it) installed into a fresh virtualenv
    renders from Keel's repository at the tag of its own version, even when a later release
    exists; a local bare clone stands in for the repository URL (KEEL_TEMPLATE). `keel
    update` then takes the service to the later release."""
    wheels, tool = tmp_path / "wheels", tmp_path / "tool"
    run(BIN / "python", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, template)
    run(sys.executable, "-m", "venv", tool)
    run(tool / "bin/python", "-m", "pip", "install", "--quiet", *wheels.glob("keel-*.whl"))
    version = "v" + tomllib.loads((template / "pyproject.toml").read_text())["project"]["version"]

    # The repository as published: this version's tag, and a later release on top of it.
    work = tmp_path / "keel"
    git(tmp_path, "clone", "--quiet", str(template), str(work))
    git(work, "checkout", "--quiet", version)
    readme = work / "template/README.md.jinja"
    readme.write_text(readme.read_text() + "\nFrom the later release.\n")
    git(work, "commit", "--quiet", "--all", "-m", "release: v99.0.0")
    git(work, "tag", "v99.0.0")
    bare = tmp_path / "keel.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(work), str(bare))

    keel = tool / "bin/keel"
    unset = {key: value for key, value in os.environ.items() if key != "KEEL_TEMPLATE"}
    show = "from generator import render; print(render.source(None, None))"
    recorded = run(tool / "bin/python", "-c", show, cwd=tmp_path, env=unset)
    assert recorded.stdout.strip() == str(("https://github.com/keel-templates/keel", version))
    environment = {**os.environ, "KEEL_TEMPLATE": bare.as_uri()}
    service = tmp_path / "service"
    name = "project_name=Tool Shop"
    run(keel, "new", service, "--defaults", "-d", name, cwd=tmp_path, env=environment)
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert (answers["_commit"], answers["_src_path"]) == (version, bare.as_uri())
    assert "From the later release." not in (service / "README.md").read_text()

    git(service, "init", "--quiet")
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", "Start")
    updated = run(keel, "update", service, cwd=tmp_path, env=environment, check=False)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert yaml.safe_load((service / ".copier-answers.yml").read_text())["_commit"] == "v99.0.0"
    assert "From the later release." in (service / "README.md").read_text()
