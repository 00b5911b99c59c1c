"""``generate-manifests``: the Kubernetes files that topology.yaml decides.

Writes ``deploy/base/generated/`` by rendering each ``manifest_templates/*.yaml.j2`` with the
service's topology.yaml: the RabbitMQ Messaging Topology Operator CRs (Exchange, Queue,
Binding, Policy), one worker Deployment per topology worker, a PodDisruptionBudget per match
worker, a KEDA ScaledObject per autoscaled worker and one PostSync cache-warmup Job per
domain. Keel renders the same templates when it creates or updates the service, so there is
one definition of these files. ``--check`` writes nothing and fails when the committed files
differ from what the topology gives now.

Run it from the service's root directory (where ``pyproject.toml`` is), or name that
directory with ``--root``; it reads ``src/<package>/topology.yaml`` there.
"""

import argparse
import re
import sys
import tomllib
from pathlib import Path

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .faults import ConfigurationFault, entry_point
from .messaging.topology import TOPOLOGY_FILE, load

PACKAGE = __package__
GENERATED = Path("deploy/base/generated")
TEMPLATES = Path(__file__).resolve().parent / "manifest_templates"
KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def manifests(slug: str, topology_file: Path) -> dict[str, str]:
    """File name (under deploy/base/generated/) -> content."""
    load(topology_file)  # refuses a malformed or inconsistent topology, naming the key
    topology = yaml.safe_load(topology_file.read_text())
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), keep_trailing_newline=True, undefined=StrictUndefined
    )
    context = {
        "topology": topology,
        "domains": list(topology["domains"]),
        "project_slug": slug,
        "package_name": PACKAGE,
        # Where the shared parts are, as the loader names them (Keel's copier render names
        # them from its own repository root).
        "parts": "parts/",
    }
    files = {
        template.name.removesuffix(".j2"): environment.get_template(template.name).render(context)
        for template in sorted(TEMPLATES.glob("*.yaml.j2"))
    }
    for text in files.values():
        for document in yaml.safe_load_all(text):
            _require_kubernetes_name(((document or {}).get("metadata") or {}).get("name"))
    return files


def _require_kubernetes_name(name: str | None) -> None:
    if name is not None and (len(name) > 63 or not KUBERNETES_NAME.match(name)):
        raise ConfigurationFault(
            f"{name!r} is not a valid Kubernetes name (at most 63 lowercase letters, digits "
            "and dashes): shorten the domain, queue or worker name in topology.yaml"
        )


def project_slug(root: Path) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]


def stale_files(root: Path, expected: dict[str, str]) -> list[str]:
    directory = root / GENERATED
    present = {path.name for path in directory.glob("*")} if directory.is_dir() else set()
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
    return sorted(stale + [name for name in present - set(expected)])


@entry_point("generate-manifests")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="generate-manifests",
        description=f"Write {GENERATED}/ (RabbitMQ CRs, worker Deployments, disruption "
        "budgets and autoscalers, warmup Jobs) from topology.yaml.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the committed files differ from topology.yaml",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the service's root directory")
    args = parser.parse_args(argv)
    topology_file = args.root / "src" / PACKAGE / TOPOLOGY_FILE.name
    if not (args.root / "pyproject.toml").is_file() or not topology_file.is_file():
        raise ConfigurationFault(
            f"{args.root.resolve()} is not the service's root (no pyproject.toml and "
            f"src/{PACKAGE}/{TOPOLOGY_FILE.name} there); run it from the service's root "
            "directory, or name that directory with --root"
        )
    try:
        slug = project_slug(args.root)
    except (KeyError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationFault(
            f"pyproject.toml: cannot read [project] name, which names every object ({error})"
        ) from None
    expected = manifests(slug, topology_file)
    stale = stale_files(args.root, expected)
    if args.check:
        if stale:
            print(
                f"generate-manifests: {GENERATED}/ is out of date with topology.yaml "
                f"({', '.join(stale)}); run `generate-manifests` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{GENERATED}/ matches topology.yaml")
        return 0
    directory = args.root / GENERATED
    directory.mkdir(parents=True, exist_ok=True)
    for name in set(stale) - set(expected):
        (directory / name).unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)
    print(f"wrote {GENERATED}/: {', '.join(expected)}" if stale else "already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
