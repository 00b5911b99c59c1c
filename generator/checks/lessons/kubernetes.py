"""Kubernetes YAML, as plain files (with their lines) and as overlays the real kustomize
builds: liveness apart from readiness (L2c), queue arguments against Celery's (L6b, L7), the
cache warm-up Job (L12a, L17), and the worker commands (L15, L16)."""

import ast
import shlex
from collections.abc import Iterator
from pathlib import Path

import yaml

from ..findings import Finding, Tree, child, line_of, value
from . import compose, rule
from .python import call_name, modules, queue_name

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
        for node in tree.walk(module):
            if not (isinstance(node, ast.Call) and call_name(node) == "Queue"):
                continue
            name = queue_name(node)
            if name is None:
                continue
            arguments = next((k.value for k in node.keywords if k.arg == "queue_arguments"), None)
            try:
                literal = ast.literal_eval(arguments) if arguments is not None else {}
            except ValueError:
                literal = None
            found[name] = (path, node, literal)
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
            where = child(node, "spec", "arguments")
            keys = [key for key, _ in where.value] if isinstance(where, yaml.MappingNode) else []
            where = next((key for key in keys if key.value in differ), where or node)
            yield Finding(
                path,
                line_of(where),
                1,
                "L7",
                f"Queue {name}: arguments differ from what Celery declares "
                f"({tree.relative(declared[name][0])}:{declared[name][1].lineno}): "
                f"{', '.join(differ)}",
            )


@rule(
    "L2c",
    "liveness probing what readiness probes",
    prevents="every replica restarted at once when a database or the broker goes away: a "
    "dependency outage is a readiness matter, never a reason to kill the process",
    fix="probe liveness on its own endpoint that answers while the process serves; keep the "
    "dependency checks in readiness",
)
def liveness_apart(tree: Tree) -> Iterator[Finding]:
    for path, node in documents(tree):
        for container in containers(node):
            live = child(container, "livenessProbe", "httpGet")
            ready = child(container, "readinessProbe", "httpGet")
            if live is None or ready is None:
                continue
            if value(child(live, "path")) == value(child(ready, "path")):
                yield Finding(
                    path,
                    line_of(child(live, "path") or live),
                    1,
                    "L2c",
                    f"liveness probes {value(child(live, 'path'))}, the same path as readiness",
                )


# --- the warm-up Job ----------------------------------------------------------------------


def post_sync_jobs(tree: Tree):
    for path, node in documents(tree):
        hook = str((value(child(node, "metadata", "annotations")) or {}).get(HOOK, ""))
        if kind(node) == "Job" and POST_SYNC in hook:
            yield path, node


@rule(
    "L12a",
    "no cache warm-up after a deploy",
    prevents="workers restarted by a deploy serving from an empty in-memory cache",
    fix="an ArgoCD PostSync Job that warms the caches (and each worker warming its own on "
    "start, L12b)",
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
            "L12a",
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
                yield Finding(
                    path,
                    _line_naming(container, "python"),
                    1,
                    "L17a",
                    "the Job runs inline `python -c`",
                )


def _line_naming(container, word: str) -> int:
    """The line of the command or argument that names `word` (a block scalar's text starts
    on the line after its indicator)."""
    for key in ("command", "args"):
        section = child(container, key)
        for part in section.value if isinstance(section, yaml.SequenceNode) else ():
            if isinstance(part, yaml.ScalarNode) and word in part.value:
                return line_of(part) + (part.style in (">", "|"))
    return line_of(child(container, "command") or container)


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
        for node in tree.walk(module):
            routes = _task_routes(node)
            match_queues = {queue for task, queue, _ in routes if "match" in task}
            for task, queue, key in routes:
                if "reward" in task and queue in match_queues:
                    yield Finding(
                        tree.relative(path),
                        key.lineno,
                        key.col_offset + 1,
                        "L15",
                        f"task_routes send {task} to {queue}, next to match tasks",
                    )


def _task_routes(node: ast.AST) -> list[tuple[str, str, ast.expr]]:
    """(task, queue, key node) of the literal dict given to task_routes (a keyword, an
    assignment or a config key); entries that are not literals are left out."""
    if isinstance(node, ast.keyword) and node.arg == "task_routes":
        literal = node.value
    elif isinstance(node, ast.Assign) and any(
        getattr(target, "id", getattr(target, "attr", None)) == "task_routes"
        for target in node.targets
    ):
        literal = node.value
    else:
        return []
    routes = []
    for key, target in (
        zip(literal.keys, literal.values, strict=True) if isinstance(literal, ast.Dict) else ()
    ):
        try:
            task, route = ast.literal_eval(key), ast.literal_eval(target)
        except ValueError:
            continue
        queue = route.get("queue") if isinstance(route, dict) else route
        routes.append((str(task), str(queue), key))
    return routes


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
