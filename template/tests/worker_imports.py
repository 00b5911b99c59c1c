"""Import every worker entry point with only the worker dependency set available.

    python -m tests.worker_imports SRC_DIR

Every distribution outside the closure of ``[project] dependencies`` (the web extra, the
test tools, whatever else this virtualenv holds) is made unimportable, as if absent. A
module that needs one fails with "<name> is not in the worker dependency set". It also
fails when any module of the web layer was imported on the way. Run by
tests/test_boundaries.py.
"""

import importlib
import importlib.abc
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def closure(requirements: list[str]) -> set[str]:
    """Distribution names the requirements install, markers evaluated for this Python."""
    seen: set[str] = set()
    pending = [Requirement(requirement) for requirement in requirements]
    while pending:
        requirement = pending.pop()
        name = normalized(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            child = Requirement(text)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                pending.append(child)
    return seen


def modules_outside(allowed: set[str], package: str) -> set[str]:
    """Importable top-level modules that no allowed distribution provides."""
    return {
        module
        for module, owners in importlib.metadata.packages_distributions().items()
        if module != package and not {normalized(owner) for owner in owners} & allowed
    }


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: set[str]):
        self.blocked = blocked

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"{name} is not in the worker dependency set", name=name)
        return None


def main(source: str) -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    package = project["scripts"]["worker"].split(".")[0]
    sys.path.insert(0, source)
    # As in the worker image: anything outside the closure is simply not installed, so an
    # optional import falls back and a required one fails.
    sys.meta_path.insert(0, Blocker(modules_outside(closure(project["dependencies"]), package)))
    # As a worker starts: the Celery app, then what its loader imports (the tasks; with
    # Django, after its fix-up has set Django up), then the other worker-image commands.
    importlib.import_module(f"{package}.messaging.app").app.loader.import_default_modules()
    entry_points = [f"{package}.messaging.worker", f"{package}.migrate", f"{package}.wait"]
    domains = importlib.import_module(f"{package}.settings").DOMAINS
    for domain in domains:
        entry_points += [f"{package}.{domain}.tasks", f"{package}.{domain}.jobs.warmup_cache"]
    for module in entry_points:
        importlib.import_module(module)
    web = sorted(name for name in sys.modules if name.startswith(f"{package}.web"))
    if web:
        print(f"a worker process imported the web layer: {', '.join(web)}")
        return 1
    print(f"imported {len(entry_points)} worker entry points with the worker dependencies only")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
