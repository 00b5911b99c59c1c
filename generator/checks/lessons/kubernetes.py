"""Kubernetes YAML, as plain files (with their lines) and as overlays the real kustomize
builds: queue arguments against Celery's (L6b, L7), the cache warm-up Job (L12, L17), and the
worker commands (L15, L16)."""

import ast
import shlex
from collections.abc import Iterator
from pathlib import Path

import yaml

from ..findings import Finding, Tree, child, line_of, value
from . import compose, rule
from .python import call_name, modules

POST_SYNC = "PostSync"
HOOK = "argocd.argoproj.io/hook"
PARALLEL_POOLS = ("threads", "gevent", "eventlet", "solo")


def documents(tree: Tree) -> Iterator[tuple[str, object]]:
    """Every Kubernetes document: of the plain YAML files (with their lines), then of every
    overlay as kustomize builds it (named by its kustomization file; a finding there that a
    plain file already carries is dropped by `lessons.run`)."""
    sources = [(tree.relative(path), tree.yaml_nodes(path)) for path in tree.yaml_files]
    sources += [(tree.relative(path), nodes) for path, nodes in tree.overlays()]
    for path, nodes in sources:
        for node in nodes:
            if child(node, "kind") is not None and child(node, "apiVersion") is not None:
                yield path, node


def kind(node) -> str:
    return str(value(child(node, "kind")))


def containers(node) -> Iterator[object]:
    spec = child(node, "spec", "template", "spec") or child(
        node, "spec", "jobTemplate", "spec", "template", "spec"
    )
    for key in ("initContainers", "containers"):
        section = child(spec, key)
        if isinstance(section, yaml.SequenceNode):
            yield from section.value


def argv(container) -> list[str]:
    parts = (value(child(container, "command")) or []) + (value(child(container, "args")) or [])
    return [str(part) for part in parts]


# --- Celery's queue declarations, read from the Python source -----------------------------


def celery_queues(tree: Tree) -> dict[str, tuple[Path, ast.Call, dict | None]]:
    """Queue name -> (file, Queue(...) call, its literal queue_arguments or None)."""
    found = {}
    for path, module in modules(tree):
        for node in ast.walk(module):
            if not (isinstance(node, ast.Call) and call_name(node) == "Queue"):
                continue
            if not (node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value):
                continue
            arguments = next((k.value for k in node.keywords if k.arg == "queue_arguments"), None)
            try:
                literal = ast.literal_eval(arguments) if arguments is not None else {}
            except ValueError:
                literal = None
            found[str(node.args[0].value)] = (path, node, literal)
    return found


def queue_crs(tree: Tree) -> Iterator[tuple[str, object, str, dict]]:
    for path, node in documents(tree):
        if kind(node) == "Queue" and str(value(child(node, "apiVersion"))).startswith(
            "rabbitmq.com/"
        ):
            spec = child(node, "spec")
            name = str(value(child(spec, "name")) or value(child(node, "metadata", "name")))
            arguments = dict(value(child(spec, "arguments")) or {})
            if value(child(spec, "type")):
                arguments.setdefault("x-queue-type", value(child(spec, "type")))
            yield path, node, name, arguments


@rule(
    "L6b",
    "quorum queues without `x-queue-type` in Celery's arguments",
    prevents="`NOT_IMPLEMENTED ... does not support global qos` when the worker starts: "
    "Celery turns global QoS off only for queues it knows are quorum",
    fix="declare each quorum queue with `queue_arguments={'x-queue-type': 'quorum'}`",
)
def quorum_declared(tree: Tree) -> Iterator[Finding]:
    declared = celery_queues(tree)
    for _, _, name, arguments in queue_crs(tree):
        if arguments.get("x-queue-type") == "quorum" and name in declared:
            path, call, celery = declared[name]
            if celery is not None and celery.get("x-queue-type") != "quorum":
                yield Finding(
                    tree.relative(path),
                    call.lineno,
                    call.col_offset + 1,
                    "L6b",
                    f"queue {name} is quorum, but Celery declares it without x-queue-type: quorum",
                )


@rule(
    "L7",
    "Queue CR arguments that differ from Celery's",
    prevents="`PRECONDITION_FAILED - inequivalent arg` when Celery declares a queue the "
    "operator created with other arguments",
    fix="derive both from one topology (Keel: topology.yaml and `generate-manifests`); keep "
    "dead-lettering and TTL in Policy CRs so queue arguments hold only x-queue-type",
)
def queue_arguments_agree(tree: Tree) -> Iterator[Finding]:
    declared = celery_queues(tree)
    for path, node, name, arguments in queue_crs(tree):
        if name not in declared or declared[name][2] is None:
            continue
        celery = dict(declared[name][2])
        crd = dict(arguments)
        if "x-queue-type" not in celery:  # L6b's finding when the CR says quorum
            crd.pop("x-queue-type", None)
        if celery != crd:
            differ = sorted(
                key for key in celery.keys() | crd.keys() if celery.get(key) != crd.get(key)
            )
            where = child(node, "spec", "arguments") or child(node, "spec")
            yield Finding(
                path,
                line_of(where),
                1,
                "L7",
                f"Queue {name}: {', '.join(differ)} differ from what Celery declares "
                f"({tree.relative(declared[name][0])}:{declared[name][1].lineno})",
            )


# --- the warm-up Job ----------------------------------------------------------------------


def post_sync_jobs(tree: Tree):
    for path, node in documents(tree):
        hook = str((value(child(node, "metadata", "annotations")) or {}).get(HOOK, ""))
        if kind(node) == "Job" and POST_SYNC in hook:
            yield path, node


@rule(
    "L12",
    "no cache warm-up after a deploy",
    prevents="workers restarted by a deploy serving from an empty in-memory cache",
    fix="an ArgoCD PostSync Job that warms the caches (and each worker warming its own on start)",
)
def caches_warmed(tree: Tree) -> Iterator[Finding]:
    if not any("cache" in path.stem for path in tree.python_files):
        return
    deployments = [(path, node) for path, node in documents(tree) if kind(node) == "Deployment"]
    if deployments and not any(post_sync_jobs(tree)):
        path, node = deployments[0]
        yield Finding(
            path,
            line_of(node),
            1,
            "L12",
            "the service keeps an in-process cache, but no PostSync Job warms it",
        )


@rule(
    "L17a",
    "a PostSync Job running `python -c`",
    prevents="shell-quoted secrets and untested inline code in the warm-up Job",
    fix="run a module: `python -m <package>.<domain>.jobs.warmup_cache`",
)
def jobs_run_modules(tree: Tree) -> Iterator[Finding]:
    for path, node in post_sync_jobs(tree):
        for container in containers(node):
            command = argv(container)
            shell = " ".join(command)
            if (
                "-c" in command
                and "python" in shell
                or "python -c" in shell
                or "python3 -c" in shell
            ):
                where = child(container, "command") or child(container, "args") or container
                yield Finding(path, line_of(where), 1, "L17a", "the Job runs inline `python -c`")


@rule(
    "L17b",
    "a Secret listed before a ConfigMap in envFrom",
    prevents="a ConfigMap value silently overriding the Secret of the same name",
    fix="list the ConfigMap first and the Secret after it, so secrets win",
)
def config_then_secret(tree: Tree) -> Iterator[Finding]:
    for path, node in documents(tree):
        for container in containers(node):
            sources = child(container, "envFrom")
            kinds = [
                key for entry in (value(sources) or []) for key in entry if key.endswith("Ref")
            ]
            if (
                "secretRef" in kinds
                and "configMapRef" in kinds
                and kinds.index("secretRef") < kinds.index("configMapRef")
            ):
                yield Finding(
                    path,
                    line_of(sources),
                    1,
                    "L17b",
                    "envFrom lists a Secret before a ConfigMap; the ConfigMap wins",
                )


# --- worker commands ----------------------------------------------------------------------


def worker_commands(tree: Tree) -> Iterator[tuple[str, int, list[str]]]:
    for path, _, service in compose.services(tree):
        text = compose.command_text(service)
        if "worker" in text:
            where = child(service, "command") or child(service, "entrypoint") or service
            yield path, line_of(where), shlex.split(text)
    for path, node in documents(tree):
        for container in containers(node):
            command = argv(container)
            if "worker" in command:
                where = child(container, "command") or child(container, "args") or container
                yield path, line_of(where), command


def option(command: list[str], *names: str) -> str | None:
    for index, part in enumerate(command):
        for name in names:
            if part == name and index + 1 < len(command):
                return command[index + 1]
            if part.startswith(f"{name}="):
                return part.split("=", 1)[1]
    return None


@rule(
    "L15",
    "match and reward work on one queue",
    prevents="10 ms match calls queued behind 5 s batch saves, timing out",
    fix="separate queues and workers: `<domain>.match` on a threads pool, `<domain>.reward` "
    "batched",
)
def split_queues(tree: Tree) -> Iterator[Finding]:
    for path, line, command in worker_commands(tree):
        if "celery" not in " ".join(command):
            continue
        queues = (option(command, "-Q", "--queues") or "").split(",")
        if any("match" in q for q in queues) and any("reward" in q or "batch" in q for q in queues):
            yield Finding(path, line, 1, "L15", "one worker consumes both match and reward queues")
    for path, module in modules(tree):
        for node in ast.walk(module):
            routes = _task_routes(node)
            if routes is None:
                continue
            by_queue: dict[str, set[str]] = {}
            for task, target in routes.items():
                queue = target.get("queue") if isinstance(target, dict) else target
                by_queue.setdefault(str(queue), set()).add(str(task))
            for queue, tasks in by_queue.items():
                if any("match" in t for t in tasks) and any("reward" in t for t in tasks):
                    yield Finding(
                        tree.relative(path),
                        node.lineno,
                        node.col_offset + 1,
                        "L15",
                        f"task_routes send match and reward tasks to {queue}",
                    )


def _task_routes(node: ast.AST) -> dict | None:
    """The literal dict given to task_routes (a keyword, an assignment or a config key)."""
    if isinstance(node, ast.keyword) and node.arg == "task_routes":
        literal = node.value
    elif isinstance(node, ast.Assign) and any(
        getattr(target, "id", getattr(target, "attr", None)) == "task_routes"
        for target in node.targets
    ):
        literal = node.value
    else:
        return None
    try:
        routes = ast.literal_eval(literal)
    except ValueError:
        return None
    return routes if isinstance(routes, dict) else None


@rule(
    "L16",
    "a match worker on the prefork pool",
    prevents="the in-process cache, updated by a consumer thread in the main process, never "
    "reaching the prefork children that answer the calls",
    fix="run the match worker with `-P threads` so the cache consumer and the tasks share "
    "one process",
)
def match_on_threads(tree: Tree) -> Iterator[Finding]:
    for path, line, command in worker_commands(tree):
        if "celery" not in " ".join(command):
            continue
        queues = option(command, "-Q", "--queues") or ""
        pool = option(command, "-P", "--pool") or "prefork"
        if "match" in queues and pool not in PARALLEL_POOLS:
            yield Finding(path, line, 1, "L16", f"the match worker runs the {pool} pool")
