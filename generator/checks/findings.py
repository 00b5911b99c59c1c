"""What `keel check` reads and what it reports.

A :class:`Tree` lists a service's files by kind (compose, Dockerfiles, shell scripts, Python,
Kubernetes YAML) without importing or running anything. YAML is read with the line of every
node; a file that does not parse becomes a :class:`Finding` (E001) at the place the parser
stopped, never a traceback.
"""

import ast
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import overlays
from .overlays import KUSTOMIZATION_FILES

SKIPPED_DIRECTORIES = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
    ".tox",
}
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
UNREADABLE = "E001"
UNBUILDABLE = "E002"


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        """Ruff-style: `path:line:col: CODE message`."""
        return f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}"


class Tree:
    """The files of a service directory, by what `keel check` reads them as."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.unreadable: list[Finding] = []
        self._python: dict[Path, ast.Module | None] = {}
        self._yaml: dict[Path, list[yaml.Node]] = {}
        self._overlays: Future | None = None
        self._walked: dict[int, tuple[ast.AST, list[ast.AST]]] = {}
        self.unbuildable: list[Finding] = []
        self.files = sorted(self._walk(self.root))

    def _walk(self, directory: Path):
        for entry in sorted(directory.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                if entry.name not in SKIPPED_DIRECTORIES and not entry.name.endswith(".egg-info"):
                    yield from self._walk(entry)
            elif entry.is_file():
                yield entry

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def named(self, *suffixes: str) -> list[Path]:
        return [path for path in self.files if path.name.endswith(suffixes)]

    @property
    def compose_files(self) -> list[Path]:
        return [
            path
            for path in self.files
            if path.name in COMPOSE_NAMES
            or (
                path.name.startswith(("compose.", "docker-compose."))
                and path.suffix in (".yaml", ".yml")
            )
        ]

    @property
    def dockerfiles(self) -> list[Path]:
        return [
            path
            for path in self.files
            if path.name == "Dockerfile"
            or path.name.startswith("Dockerfile.")
            or path.name.endswith(".Dockerfile")
        ]

    @property
    def shell_scripts(self) -> list[Path]:
        return [path for path in self.files if path.suffix == ".sh" or _has_shell_shebang(path)]

    @property
    def python_files(self) -> list[Path]:
        return self.named(".py")

    @property
    def yaml_files(self) -> list[Path]:
        compose = set(self.compose_files)
        return [path for path in self.named(".yaml", ".yml") if path not in compose]

    def text(self, path: Path) -> str | None:
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            self._unreadable(path, 1, 1, f"cannot read the file: {error}")
            return None

    def python(self, path: Path) -> ast.Module | None:
        if path not in self._python:
            self._python[path] = self._parse_python(path)
        return self._python[path]

    def _parse_python(self, path: Path) -> ast.Module | None:
        text = self.text(path)
        if text is None:
            return None
        try:
            return ast.parse(text, filename=str(path))
        except SyntaxError as error:
            self._unreadable(
                path, error.lineno or 1, error.offset or 1, f"Python does not parse: {error.msg}"
            )
            return None

    def yaml_nodes(self, path: Path) -> list[yaml.Node]:
        """Every document of a YAML file as a node tree (which knows its lines)."""
        if path not in self._yaml:
            self._yaml[path] = self._parse_yaml(path)
        return self._yaml[path]

    def _parse_yaml(self, path: Path) -> list[yaml.Node]:
        text = self.text(path)
        if text is None:
            return []
        try:
            return [node for node in yaml.compose_all(text, Loader=yaml.SafeLoader) if node]
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            self._unreadable(path, line, column, f"YAML does not parse: {problem}")
            return []

    def walk(self, node: ast.AST) -> list[ast.AST]:
        """`ast.walk`, remembered: the rules walk the same modules and functions many times.
        The entry holds the node, so its id cannot be reused while it is remembered."""
        remembered = self._walked.get(id(node))
        if remembered is None or remembered[0] is not node:
            remembered = self._walked[id(node)] = (node, list(ast.walk(node)))
        return remembered[1]

    def start_overlays(self) -> None:
        """Start building the overlays (kubectl processes) while the other rules run."""
        if self._overlays is None:
            self._overlays = ThreadPoolExecutor(max_workers=1).submit(self._build_overlays)

    def overlays(self) -> list[tuple[Path, list[yaml.Node]]]:
        """Every kustomization no other one builds on, as kustomize builds it (in parallel:
        each build is a kubectl process); one that does not build is finding E002."""
        self.start_overlays()
        return self._overlays.result()

    def _build_overlays(self) -> list[tuple[Path, list[yaml.Node]]]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            built = list(pool.map(self._build, self._top_kustomizations()))
        return [overlay for overlay in built if overlay is not None]

    def _top_kustomizations(self) -> list[Path]:
        files = [path for path in self.files if path.name in KUSTOMIZATION_FILES]
        used = set()
        for path in files:
            for node in self.yaml_nodes(path):
                for entry in value(child(node, "resources")) or []:
                    used.add((path.parent / str(entry)).resolve())
        return [path for path in files if path.parent.resolve() not in used]

    def _build(self, kustomization: Path) -> tuple[Path, list[yaml.Node]] | None:
        try:
            text = overlays.kustomize(kustomization.parent)
        except overlays.KubectlMissing:
            raise
        except overlays.KustomizeError as error:
            self.unbuildable.append(
                Finding(self.relative(kustomization), 1, 1, UNBUILDABLE,
                        f"kustomize cannot build it: {error.reason}")
            )  # fmt: skip
            return None
        return kustomization, [
            node for node in yaml.compose_all(text, Loader=yaml.SafeLoader) if node
        ]

    def _unreadable(self, path: Path, line: int, column: int, message: str) -> None:
        finding = Finding(self.relative(path), line, column, UNREADABLE, message)
        if finding not in self.unreadable:
            self.unreadable.append(finding)


def _has_shell_shebang(path: Path) -> bool:
    if path.suffix:
        return False
    try:
        with path.open("rb") as handle:
            first = handle.readline(80)
    except OSError:
        return False
    return first.startswith(b"#!") and (b"sh" in first.split(b"/")[-1])


# --- YAML nodes with lines -----------------------------------------------------------------


def value(node: yaml.Node):
    """A node as plain Python data."""
    return yaml.SafeLoader("").construct_document(node) if node is not None else None


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def child(node: yaml.Node | None, *keys: str | int) -> yaml.Node | None:
    """The node at a path of mapping keys and sequence indexes, or None."""
    for key in keys:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if -len(node.value) <= key < len(node.value) else None
        else:
            return None
    return node


def items(node: yaml.Node | None) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(str(key.value), item) for key, item in node.value]
