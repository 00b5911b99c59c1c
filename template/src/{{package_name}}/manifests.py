"""``generate-manifests``: the Kubernetes files that topology.yaml decides.

Writes ``deploy/base/generated/``: the RabbitMQ Messaging Topology Operator CRs
(Exchange, Queue, Binding, Policy), one worker Deployment per topology worker, a
PodDisruptionBudget per match worker and one PostSync cache-warmup Job per domain. The CRs
are built from the same broker objects that ``declare-topology`` declares and that Celery's
queues come from, so the operator and Celery cannot disagree. ``--check`` writes nothing
and fails when the committed files differ from what the topology gives now.

Run it from the service's root directory (where ``pyproject.toml`` is), or name that
directory with ``--root``; it reads ``src/<package>/topology.yaml`` there.
"""

import argparse
import re
import sys
import tomllib
from pathlib import Path

import yaml

from .faults import ConfigurationFault, entry_point
from .messaging.broker import broker_objects
from .messaging.topology import TOPOLOGY_FILE, Topology, Worker, load
from .messaging.worker import worker_flags

PACKAGE = __package__
GENERATED = Path("deploy/base/generated")
HEADER = "# Generated from topology.yaml by `generate-manifests`: edit topology.yaml, not this.\n"
KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The image's user (Dockerfile); Kubernetes needs the number to prove it is not root.
APP_USER = 10001
CLUSTER = "rabbitmq"
CONFIG_WAVE = "-2"
# Long enough for a reward worker to save the batch it holds before it is killed.
WORKER_GRACE_SECONDS = 60


class ManifestError(ValueError):
    """The topology gives a name Kubernetes cannot take."""


def dns_name(*parts: str) -> str:
    name = "-".join(parts).replace("_", "-").replace(".", "-")
    if len(name) > 63 or not KUBERNETES_NAME.match(name):
        raise ManifestError(
            f"{name!r} is not a valid Kubernetes name (at most 63 lowercase letters, digits "
            "and dashes): shorten the domain, queue or worker name in topology.yaml"
        )
    return name


def labels(slug: str, component: str) -> dict:
    return {"app.kubernetes.io/name": slug, "app.kubernetes.io/component": component}


def env_from(slug: str, domains: tuple[str, ...]) -> list[dict]:
    """ConfigMaps first, Secrets after them: a key in both takes the Secret's value."""
    names = [slug, *(dns_name(slug, domain) for domain in domains)]
    return [{"configMapRef": {"name": f"{name}-config"}} for name in names] + [
        {"secretRef": {"name": f"{name}-secret"}} for name in names
    ]


def restricted_pod() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": APP_USER,
        "runAsGroup": APP_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def container(slug: str, topology: Topology, name: str, args: list[str]) -> dict:
    return {
        "name": name,
        "image": f"{slug}-worker",
        "args": args,
        "envFrom": env_from(slug, topology.domains),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": restricted_container(),
        # The root filesystem is read-only; heartbeats and temporary files go here.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pod_spec(containers: list[dict], **extra) -> dict:
    return {
        **extra,
        "securityContext": restricted_pod(),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def custom_resource(slug: str, kind: str, name: str, spec: dict) -> dict:
    return {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": kind,
        "metadata": {
            "name": dns_name(slug, name),
            "labels": labels(slug, "topology"),
            # Before the migration Job (-1) and the workloads (0) that use them.
            "annotations": {"argocd.argoproj.io/sync-wave": CONFIG_WAVE},
        },
        "spec": {**spec, "rabbitmqClusterReference": {"name": CLUSTER}},
    }


def rabbitmq_resources(slug: str, topology: Topology) -> list[dict]:
    objects = broker_objects(topology)
    resources = []
    for exchange in objects.exchanges:
        spec = {"name": exchange.name, "type": exchange.type, "durable": True, "autoDelete": False}
        resources.append(custom_resource(slug, "Exchange", exchange.name, spec))
    for queue in objects.queues:
        spec = {
            "name": queue.name,
            "type": queue.arguments["x-queue-type"],
            "durable": queue.durable,
            "autoDelete": False,
            "arguments": dict(queue.arguments),
        }
        resources.append(custom_resource(slug, "Queue", queue.name, spec))
    for binding in objects.bindings:
        spec = {
            "source": binding.source,
            "destination": binding.destination,
            "destinationType": "queue",
            "routingKey": binding.routing_key,
        }
        resources.append(custom_resource(slug, "Binding", binding.destination, spec))
    for policy in objects.policies:
        spec = {
            "name": policy.name,
            "pattern": policy.pattern,
            "applyTo": policy.apply_to,
            "priority": policy.priority,
            "definition": dict(policy.definition),
        }
        resources.append(custom_resource(slug, "Policy", policy.name, spec))
    return resources


def worker_deployment(slug: str, topology: Topology, worker: Worker) -> dict:
    kinds = sorted({queue.kind for queue in topology.worker_queues(worker.name)})
    selector = {"app.kubernetes.io/name": slug, "keel.dev/worker": worker.name}
    pod_labels = {**labels(slug, "worker"), **selector, "keel.dev/queue-kinds": "-".join(kinds)}
    worker_container = container(slug, topology, "worker", ["worker", worker.name])
    worker_container["args"] += worker_flags(worker)
    # exec, not HTTP: a worker serves no HTTP, and the probe needs no broker round trip.
    worker_container["livenessProbe"] = {
        "exec": {"command": ["probe-worker", worker.name]},
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": dns_name(slug, worker.name, "worker"), "labels": pod_labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": pod_spec(
                    [worker_container], terminationGracePeriodSeconds=WORKER_GRACE_SECONDS
                ),
            },
        },
    }


def disruption_budget(slug: str, worker: Worker) -> dict:
    """A match worker answers calls someone waits on: a node drain takes its pods one at a
    time, so with two replicas (prod) one always answers."""
    selector = {"app.kubernetes.io/name": slug, "keel.dev/worker": worker.name}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": dns_name(slug, worker.name, "worker"),
            "labels": labels(slug, "worker"),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }


def warmup_job(slug: str, topology: Topology, domain: str) -> dict:
    module = f"{PACKAGE}.{domain}.jobs.warmup_cache"
    args = ["python", "-m", module]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": dns_name(slug, domain, "warmup-cache"),
            "labels": labels(slug, "warmup-cache"),
            "annotations": {
                # After every resource of the sync is healthy: the new workers are running.
                "argocd.argoproj.io/hook": "PostSync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            },
        },
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 300,
            "template": {
                "metadata": {"labels": labels(slug, "warmup-cache")},
                "spec": pod_spec(
                    [container(slug, topology, "warmup-cache", args)], restartPolicy="Never"
                ),
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists, the way the rest of deploy/ is written."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data) -> bool:
        return True


def dump(documents: list[dict]) -> str:
    texts = [
        yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000) for document in documents
    ]
    return HEADER + "---\n".join(texts)


def manifests(slug: str, topology: Topology) -> dict[str, str]:
    """File name (under deploy/base/generated/) -> content."""
    workers = [worker_deployment(slug, topology, w) for w in topology.workers.values()]
    jobs = [warmup_job(slug, topology, domain) for domain in topology.domains]
    budgets = [
        disruption_budget(slug, worker)
        for worker in topology.workers.values()
        if any(queue.kind == "match" for queue in topology.worker_queues(worker.name))
    ]
    files = {
        "rabbitmq.yaml": dump(rabbitmq_resources(slug, topology)),
        "workers.yaml": dump(workers),
        "disruption-budgets.yaml": dump(budgets),
        "warmup-jobs.yaml": dump(jobs),
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    return {"kustomization.yaml": dump([kustomization]), **files}


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
        description=f"Write {GENERATED}/ (RabbitMQ CRs, worker Deployments and disruption "
        "budgets, warmup Jobs) "
        "from topology.yaml.",
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
    try:
        expected = manifests(slug, load(topology_file))
    except ManifestError as error:
        raise ConfigurationFault(str(error)) from None
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
