"""Entrypoint scripts (L3) and what the worker image installs (L13)."""

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from ..findings import Finding, Tree
from . import rule

EXEC_ARGS = re.compile(r'^\s*exec\s+"\$@"\s*$')
NC_WAIT = re.compile(r"\bwhile\b.*\bnc\b[^|;]*\s-z\b|\buntil\b.*\bnc\b[^|;]*\s-z\b")
BOUNDED = re.compile(r"\btimeout\b|\bseq\b|\$\(\(|\battempt|\btries|\bretries|\bSECONDS\b")
IN_EVERY_REPLICA = re.compile(r"\balembic\s+upgrade\b|\bmanage\.py\s+migrate\b")
PIP_INSTALL = re.compile(r"\bpip\d?\s+install\b(?P<args>.*)")
REQUIREMENTS = re.compile(r"(?:-r|--requirement)\s+(\S+)")
UV_SYNC = re.compile(r"\buv\s+sync\b(?P<args>.*)")


def entrypoints(tree: Tree) -> list[Path]:
    named = {
        match.strip("[]\"', ").rsplit("/", 1)[-1]
        for dockerfile in tree.dockerfiles
        for line in (tree.text(dockerfile) or "").splitlines()
        if line.strip().upper().startswith("ENTRYPOINT")
        for match in line.split()[1:]
    }
    return [path for path in tree.shell_scripts if "entrypoint" in path.name or path.name in named]


@rule(
    "L3a",
    'entrypoint without `exec "$@"`',
    prevents="the server running as a child of the shell: SIGTERM reaches the shell, not the "
    "server, so a stop waits for the grace period and then kills in-flight work",
    fix='end the entrypoint with `exec "$@"`',
)
def entrypoint_execs(tree: Tree) -> Iterator[Finding]:
    for path in entrypoints(tree):
        lines = (tree.text(path) or "").splitlines()
        if not any(EXEC_ARGS.match(line) for line in lines):
            yield Finding(
                tree.relative(path),
                max(len(lines), 1),
                1,
                "L3a",
                'the entrypoint does not end with exec "$@"',
            )


@rule(
    "L3b",
    "unbounded `nc -z` wait",
    prevents="a container waiting forever for a host that never comes (and `nc` is not in "
    "slim images), instead of failing with a message",
    fix="wait in Python with a timeout that names what is missing (Keel: "
    "`wait-for-databases`), or bound the loop",
)
def bounded_waits(tree: Tree) -> Iterator[Finding]:
    for path in tree.shell_scripts:
        for number, line in enumerate((tree.text(path) or "").splitlines(), 1):
            if NC_WAIT.search(line) and not BOUNDED.search(line):
                yield Finding(
                    tree.relative(path),
                    number,
                    line.index("nc") + 1,
                    "L3b",
                    "waits on `nc -z` without a bound",
                )


@rule(
    "L3c",
    "migrations in the entrypoint",
    prevents="every replica migrating at once on start (racing each other and the server)",
    fix="migrate once: a compose one-shot service or a Kubernetes Job (Keel: `migrate`)",
)
def migrations_once(tree: Tree) -> Iterator[Finding]:
    for path in entrypoints(tree):
        for number, line in enumerate((tree.text(path) or "").splitlines(), 1):
            if IN_EVERY_REPLICA.search(line) and not line.lstrip().startswith("#"):
                yield Finding(
                    tree.relative(path),
                    number,
                    1,
                    "L3c",
                    "the entrypoint migrates in every replica",
                )


@rule(
    "L13",
    "celery-batches missing from the worker image",
    prevents="the reward worker failing at start with ModuleNotFoundError: celery_batches, "
    "because the image installs a dependency list without it",
    fix="declare worker dependencies once (pyproject.toml) and install that in the image",
)
def worker_image_has_batches(tree: Tree) -> Iterator[Finding]:
    if not any(_imports_batches(tree, path) for path in tree.python_files):
        return
    for dockerfile in tree.dockerfiles:
        text = tree.text(dockerfile) or ""
        if "worker" not in text.lower() and "worker" not in dockerfile.name.lower():
            continue
        for number, line in _instructions(text):
            declared = _installed(dockerfile.parent, line)
            if declared is not None and not re.search(r"celery[-_]batches", declared, re.I):
                yield Finding(
                    tree.relative(dockerfile),
                    number,
                    1,
                    "L13",
                    "the worker image installs no celery-batches, which the tasks import",
                )


def _instructions(text: str) -> Iterator[tuple[int, str]]:
    """A Dockerfile's instructions, continuation lines joined, each with its first line."""
    start, pending = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        yield start, " ".join([*pending, line])
        pending = []
    if pending:
        yield start, " ".join(pending)


def _installed(context: Path, line: str) -> str | None:
    """What an instruction installs, as requirement text: a `pip install` of requirements
    files or of the project, or a `uv sync` (the project's dependencies, the extras and
    groups it names, from uv.lock, which uv makes from pyproject.toml); None when it
    installs none of these."""
    if sync := UV_SYNC.search(line):
        return _synced(context / "pyproject.toml", sync["args"].split())
    install = PIP_INSTALL.search(line)
    if not install:
        return None
    sources = [context / name for name in REQUIREMENTS.findall(line)]
    if re.search(r"(^|\s)\.(\[|\s|$)", install["args"] + " "):
        sources.append(context / "pyproject.toml")
    if not sources:
        return None
    return "\n".join(_requirements(path) for path in sources) + install["args"]


def _option_values(arguments: list[str], option: str) -> list[str]:
    """The values of `--option VALUE` and `--option=VALUE`."""
    values = []
    for index, argument in enumerate(arguments):
        if argument == option and index + 1 < len(arguments):
            values.append(arguments[index + 1])
        elif argument.startswith(option + "="):
            values.append(argument.partition("=")[2])
    return values


def _synced(pyproject: Path, arguments: list[str]) -> str:
    """What `uv sync ARGUMENTS` installs of a pyproject.toml, as requirement text."""
    try:
        data = tomllib.loads(pyproject.read_text()) if pyproject.is_file() else {}
    except tomllib.TOMLDecodeError:
        data = {}
    project = data.get("project", {})
    groups = data.get("dependency-groups", {})
    only = _option_values(arguments, "--only-group") + (
        ["dev"] if "--only-dev" in arguments else []
    )
    extras = project.get("optional-dependencies", {})
    named = (
        [name for name in extras if name not in _option_values(arguments, "--no-extra")]
        if "--all-extras" in arguments
        else _option_values(arguments, "--extra")
    )
    chosen = _option_values(arguments, "--group")
    if "--all-groups" in arguments:
        chosen = list(groups)
    elif not ({"--no-dev", "--no-default-groups"} & set(arguments)):
        chosen.append("dev")
    requirements = [] if only else list(project.get("dependencies", []))
    if not only:
        requirements += [line for name in named for line in extras.get(name, [])]
    requirements += [
        line for name in (only or chosen) for line in groups.get(name, []) if isinstance(line, str)
    ]
    return "\n".join(requirements)


def _imports_batches(tree: Tree, path: Path) -> bool:
    return "celery_batches" in (tree.text(path) or "")


def _requirements(path: Path, seen: frozenset[Path] = frozenset()) -> str:
    """What a requirements file or pyproject declares, nested `-r` files included."""
    if not path.is_file() or path.resolve() in seen:
        return ""
    if path.name == "pyproject.toml":
        try:
            project = tomllib.loads(path.read_text()).get("project", {})
        except tomllib.TOMLDecodeError:
            return ""
        return "\n".join(project.get("dependencies", []))
    text = path.read_text()
    nested = [
        _requirements(path.parent / name, seen | {path.resolve()})
        for name in REQUIREMENTS.findall(text)
    ]
    return "\n".join([text, *nested])
