"""`keel update`: copier update, made safe enough to run across many services.

Copier exits 0 even when it leaves conflict markers or `.rej` files, and it lets an update
change a RabbitMQ queue's arguments that the Topology Operator will refuse to change. So
the update runs first in a throw-away clone of the service; a refused queue change stops it
there, with nothing written. Otherwise the clone's result is applied to the service as one
patch, and whatever still needs a person is listed.
"""

import difflib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import copier
import yaml
from copier.errors import CopierError
from packaging.version import InvalidVersion, Version

from .checks import lessons
from .checks.findings import Finding, Tree

ANSWERS_FILE = ".copier-answers.yml"
QUEUE_CRS = Path("deploy/base/generated/rabbitmq.yaml")
CONFLICT_MARKER = re.compile(rb"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)


class UpdateError(Exception):
    """The update was refused before anything was written; the message says what to do."""


@dataclass(frozen=True)
class Release:
    tag: str
    version: Version


@dataclass
class Outcome:
    from_version: str
    to_version: str
    changes: list[tuple[str, str]] = field(default_factory=list)  # (status, path)
    conflicts: list[str] = field(default_factory=list)
    #: What `keel check` finds after the update that it did not find before.
    new_findings: list[Finding] = field(default_factory=list)


def git(cwd: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise UpdateError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def read_answers(service: Path) -> dict:
    path = service / ANSWERS_FILE
    if not path.is_file():
        raise UpdateError(f"{service} has no {ANSWERS_FILE}: it was not rendered by Keel/copier")
    return yaml.safe_load(path.read_text()) or {}


def releases(template: str) -> list[Release]:
    """The template's `vX.Y.Z` tags (PEP 440), oldest first; works for paths and URLs."""
    result = subprocess.run(
        ["git", "ls-remote", "--tags", template], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise UpdateError(f"cannot read the template's tags at {template}: {result.stderr.strip()}")
    found = []
    for line in result.stdout.splitlines():
        tag = line.rpartition("refs/tags/")[2]
        if tag.endswith("^{}") or not tag.startswith("v"):
            continue
        try:
            found.append(Release(tag, Version(tag)))
        except InvalidVersion:
            continue
    return sorted(found, key=lambda release: release.version)


def latest_release(template: str) -> Release:
    found = releases(template)
    if not found:
        raise UpdateError(
            f"the template at {template} has no release tags (vX.Y.Z): tag its release "
            "commits (git log --grep '^release: v') or pass --to REF"
        )
    return found[-1]


def version_of(commit: str | None) -> Version | None:
    try:
        return Version(commit.split("-")[0]) if commit else None
    except InvalidVersion:
        return None


def require_clean(service: Path) -> None:
    if not (service / ".git").exists():
        raise UpdateError(
            f"{service} is not a git repository: copier update merges through git. "
            "Run `git init && git add -A && git commit -m 'Start'` first."
        )
    dirty = git(service, "status", "--porcelain", "--untracked-files=all")
    if dirty.strip():
        listed = "\n".join(f"  {line}" for line in dirty.splitlines()[:20])
        raise UpdateError(
            f"{service} has uncommitted changes; commit or stash them (git stash -u), then run "
            f"keel update again. Nothing was changed.\n{listed}"
        )


def queue_arguments(tree: Path) -> dict[str, dict]:
    path = tree / QUEUE_CRS
    if not path.is_file():
        return {}
    return {
        document["spec"]["name"]: document["spec"].get("arguments") or {}
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "Queue"
    }


def changed_queue_arguments(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    return [
        f"queue {name}: arguments {before[name]} would become {after[name]}"
        for name in sorted(set(before) & set(after))
        if before[name] != after[name]
    ]


def conflicts(tree: Path) -> list[str]:
    """Files with conflict markers, `.rej` files and unmerged paths, as a person must fix."""
    found = set(git(tree, "diff", "--name-only", "--diff-filter=U").split())
    files = git(tree, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        path = tree / name
        if name.endswith(".rej"):
            found.add(name)
        elif path.is_file() and CONFLICT_MARKER.search(path.read_bytes()):
            found.add(name)
    return sorted(found)


def run_copier_update(tree: Path, to: str | None, data: dict[str, str]) -> None:
    try:
        copier.run_update(
            tree,
            data=data,
            vcs_ref=to,
            defaults=True,
            overwrite=True,
            skip_answered=True,
            # Keel trusts its own template: its migrations move renamed files with git mv.
            unsafe=True,
            conflict="inline",
            quiet=True,
        )
    except (CopierError, ValueError) as error:
        raise UpdateError(str(error)) from None


def render_release(template: str, answers: dict, destination: Path) -> Path:
    """The template at the answers' `_commit`, rendered with those answers alone."""
    data = {key: value for key, value in answers.items() if not key.startswith("_")}
    copier.run_copy(
        template, destination, data=data, vcs_ref=answers["_commit"], defaults=True, quiet=True
    )
    return destination


def merge_moved_files(trial: Path, template: str, before: dict, scratch: Path) -> None:
    """Merge files that a migration moved with `git mv` as the rename they are.

    Copier compares the team's tree with the old template's render, which has the file at
    its old path only, so it takes the moved file for one added on both sides and marks the
    whole file as a conflict. Here the old template's file is the base, the team's file (at
    its old path, as committed) is theirs, and the new template's file is ours.
    """
    status = git(trial, "status", "--porcelain").splitlines()
    unmerged = [line[3:] for line in status if line.startswith("UU ")]
    moved_away = [line[3:] for line in status if line.startswith("D  ")]
    if not unmerged or not moved_away:
        return
    old = render_release(template, before, scratch / "old-render")
    new = render_release(template, read_answers(trial), scratch / "new-render")
    for path in unmerged:
        if (old / path).exists() or not (new / path).exists():
            continue
        candidates = [name for name in moved_away if (old / name).is_file()]
        if not candidates:
            continue
        source = max(
            candidates,
            key=lambda name: difflib.SequenceMatcher(
                a=(old / name).read_text(), b=(new / path).read_text()
            ).ratio(),
        )
        team = scratch / "team-version"
        team.write_bytes(
            subprocess.run(
                ["git", "show", f"HEAD:{source}"], cwd=trial, capture_output=True, check=True
            ).stdout
        )
        merged = subprocess.run(
            [
                "git",
                "merge-file",
                "-p",
                "-L",
                "template after updating",
                "-L",
                "template before",
                "-L",
                "your edits",
                str(new / path),
                str(old / source),
                str(team),
            ],
            capture_output=True,
        )
        (trial / path).write_bytes(merged.stdout)
        git(trial, "add", "--", path)


def staged_changes(tree: Path) -> Iterator[tuple[str, str]]:
    git(tree, "add", "--all")
    for line in git(tree, "diff", "--cached", "--name-status", "-M", "HEAD").splitlines():
        status, *paths = line.split("\t")
        yield status[0], " -> ".join(paths)


def lesson_findings(tree: Path) -> list[Finding]:
    """What `keel check` says of a tree, every rule selected."""
    return lessons.run(Tree(tree), lessons.RULES)


def new_findings(before: list[Finding], after: list[Finding]) -> list[Finding]:
    """Findings the update brought (lines move with any edit, so they are not compared)."""
    known = {(f.path, f.code, f.message) for f in before}
    return [f for f in after if (f.path, f.code, f.message) not in known]


def refuse_framework_switch(answers: dict, data: dict[str, str]) -> None:
    current = answers.get("framework", "fastapi")  # releases before v0.6.0 had only FastAPI
    wanted = data.get("framework", current)
    if wanted != current:
        raise UpdateError(
            f"framework={wanted}: this service is {current}, and a framework switch is not an "
            "update: the web layer, models, migrations and their data do not carry over. "
            f"Render a new service with `keel new --data framework={wanted}` and move the "
            "domains' code into it."
        )


def update(service: Path, *, to: str | None = None, data: dict[str, str] | None = None) -> Outcome:
    service = service.expanduser().resolve()
    answers = read_answers(service)
    refuse_framework_switch(answers, data or {})
    require_clean(service)
    template = answers.get("_src_path")
    if not template:
        raise UpdateError(f"{ANSWERS_FILE} names no template (_src_path)")
    target = to or latest_release(template).tag
    with tempfile.TemporaryDirectory(prefix="keel-update-") as scratch:
        trial = Path(scratch) / "service"
        git(Path(scratch), "clone", "--quiet", "--no-hardlinks", str(service), str(trial))
        for key in ("user.name", "user.email"):
            git(trial, "config", key, git(service, "config", key, check=False).strip() or "keel")
        before = queue_arguments(trial)
        checked = lesson_findings(trial)
        run_copier_update(trial, target, data or {})
        merge_moved_files(trial, template, answers, Path(scratch))
        refused = changed_queue_arguments(before, queue_arguments(trial))
        if refused:
            raise UpdateError(
                "this update would change the arguments of queues that already exist, which "
                "RabbitMQ and the Topology Operator refuse (a Queue CR's arguments are fixed at "
                "creation). Nothing was changed.\n"
                + "\n".join(f"  {problem}" for problem in refused)
                + "\nTo migrate: keep dead-lettering and TTL in policies (dead_letter: policy), "
                "whose definitions may change; or declare the queue under a new name in "
                "topology.yaml, let the workers drain the old one, then delete it."
            )
        found_conflicts = conflicts(trial)
        outcome = Outcome(
            from_version=str(answers.get("_commit", "?")),
            to_version=str(read_answers(trial).get("_commit", target)),
            changes=list(staged_changes(trial)),
            conflicts=found_conflicts,
            new_findings=new_findings(checked, lesson_findings(trial)),
        )
        patch = subprocess.run(
            ["git", "diff", "--cached", "--binary", "HEAD"],
            cwd=trial,
            capture_output=True,
            check=True,
        ).stdout
    if patch:
        applied = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", "-"],
            cwd=service,
            input=patch,
            capture_output=True,
        )
        if applied.returncode != 0:
            raise UpdateError(f"could not apply the update: {applied.stderr.decode().strip()}")
    return outcome
