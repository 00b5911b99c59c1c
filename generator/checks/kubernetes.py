"""Kubernetes manifests of a rendered service: schema validation and Keel's rules.

- ``build`` (overlays.py): an overlay as the real kustomize builds it (``kubectl kustomize``).
- ``validate``: built-in kinds against the Kubernetes JSON schemas shipped by
  kubernetes-validate for a pinned Kubernetes version (strict: unknown fields are errors),
  RabbitMQ and KEDA kinds against the stripped operator CRDs in ``schemas/rabbitmq`` and
  ``schemas/keda``.
- ``problems``: Keel's structural rules K101-K113, run on kustomize's output for every
  overlay of a rendered tree.
"""

import functools
import importlib.resources
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from .overlays import (
    KubectlMissing,
    KustomizeError,
    Trace,
    annotations,
    build,
    kustomization_file,
    strings,
    trace,
)

KUBERNETES_VERSION = "1.37.0"
BUILTIN_SCHEMAS = (
    importlib.resources.files("kubernetes_validate")
    / "kubernetes-json-schema"
    / f"v{KUBERNETES_VERSION}-local-strict"
)
RABBITMQ_SCHEMAS = Path(__file__).resolve().parent / "schemas" / "rabbitmq"
KEDA_SCHEMAS = Path(__file__).resolve().parent / "schemas" / "keda"
#: Operator groups -> the one API version whose CRD schemas are committed, and where.
OPERATOR_SCHEMAS = {
    "rabbitmq.com": ("rabbitmq.com/v1beta1", RABBITMQ_SCHEMAS),
    "keda.sh": ("keda.sh/v1alpha1", KEDA_SCHEMAS),
}


# --- pods and containers --------------------------------------------------------------------

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def group_of(document: dict) -> str:
    group, _, _ = str(document.get("apiVersion", "")).rpartition("/")
    return group


def describe(document: dict) -> str:
    return f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def pod_spec(document: dict) -> dict | None:
    spec = document.get("spec") or {}
    kind = document.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        return (spec.get("template") or {}).get("spec") or {}
    if kind in POD_TEMPLATE_KINDS:
        return (spec.get("template") or {}).get("spec") or {}
    return None


def containers(document: dict, *, init: bool = False) -> list[dict]:
    spec = pod_spec(document) or {}
    found = list(spec.get("containers") or [])
    return found + list(spec.get("initContainers") or []) if init else found


def command_line(container: dict) -> list[str]:
    return [str(part) for part in (container.get("command") or []) + (container.get("args") or [])]


# --- schema validation ----------------------------------------------------------------------


def validate(documents: Iterable[dict]) -> list[str]:
    """Schema problems, as ``"schema <Kind>/<name>: <field path>: <message>"``."""
    found = []
    for document in documents:
        found += [
            f"schema {describe(document)}: {problem}" for problem in _schema_problems(document)
        ]
    return found


def _schema_problems(document: dict) -> list[str]:
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["apiVersion and kind must be strings"]
    group = group_of(document)
    if group == "argoproj.io" and kind == "Application":
        return _application_problems(document)
    if group in OPERATOR_SCHEMAS:
        known, schemas = OPERATOR_SCHEMAS[group]
        validator = _operator_validator(schemas, kind) if api_version == known else None
    else:
        validator = _builtin_validator(kind, api_version)
    if validator is None:
        return [f"unknown kind {kind} in {api_version}: no schema to validate it against"]
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    return [f"{_field_path(error.absolute_path)}: {error.message}" for error in errors]


def _field_path(parts: Iterable) -> str:
    return ".".join(str(part) for part in parts) or "(document)"


@functools.cache
def _kubernetes_definitions() -> Registry:
    definitions = json.loads((BUILTIN_SCHEMAS / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _builtin_validator(kind: str, api_version: str) -> Draft202012Validator | None:
    group, _, version = api_version.rpartition("/")
    # Built-in groups are the core group, dotless groups (apps, batch) and *.k8s.io.
    if group and "." in group and not group.endswith(".k8s.io"):
        return None
    name = f"{group.split('.')[0]}-{version}" if group else version
    schema_file = BUILTIN_SCHEMAS / f"{kind.lower()}-{name}.json"
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text())
    registry = Resource.from_contents(schema) @ _kubernetes_definitions()
    return Draft202012Validator(schema, registry=registry)


@functools.cache
def _operator_validator(schemas: Path, kind: str) -> Draft202012Validator | None:
    schema_file = schemas / f"{kind.lower()}.json"
    if not schema_file.is_file():
        return None
    return Draft202012Validator(json.loads(schema_file.read_text()))


def _application_problems(document: dict) -> list[str]:
    # No Argo CD schema ships with kubernetes-validate; check the fields Argo CD cannot do without.
    found = []
    if document.get("apiVersion") != "argoproj.io/v1alpha1":
        found.append(f"apiVersion {document.get('apiVersion')} is not argoproj.io/v1alpha1")
    if not (document.get("metadata") or {}).get("name"):
        found.append("metadata.name is missing")
    spec = document.get("spec") or {}
    for key in ("source", "destination"):
        if not isinstance(spec.get(key), dict):
            found.append(f"spec.{key} is missing")
    return found


# --- Keel's rules ---------------------------------------------------------------------------

HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"
QUEUE_KINDS_LABEL = "keel.dev/queue-kinds"
COMPONENT_LABEL = "app.kubernetes.io/component"
PLACEHOLDER = "CHANGE-ME"
SECRET_LOOKING_KEY = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|(^|[_.-])KEY($|[_.-])", re.I)
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s/]*)@", re.I)
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
NAME_LIMIT = 63
MINIMUM_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Service:
    """What the rules need from the answers: the names every manifest derives from."""

    tree: Path
    slug: str
    package: str
    domains: tuple[str, ...]

    @classmethod
    def read(cls, tree: Path) -> "Service":
        answers = yaml.safe_load((tree / ".copier-answers.yml").read_text())
        return cls(
            tree.resolve(),
            answers["project_slug"],
            answers["package_name"],
            tuple(answers["domains"]),
        )

    def topology_workers(self) -> dict[str, set[str]]:
        """Worker name -> the queues topology.yaml gives it (none if the file is unreadable)."""
        path = self.tree / "src" / self.package / "topology.yaml"
        try:
            topology = yaml.safe_load(path.read_text())
            domains = topology["domains"].items()
            found: dict[str, set[str]] = {}
            for domain, spec in domains:
                for key, queue in spec["queues"].items():
                    found.setdefault(queue["worker"], set()).add(f"{domain}.{key}")
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
            return {}
        return found

    def dashed(self, domain: str) -> str:
        return domain.replace("_", "-")

    def config_map(self, domain: str) -> str:
        return f"{self.slug}-{self.dashed(domain)}-config"

    def secret(self, domain: str) -> str:
        return f"{self.slug}-{self.dashed(domain)}-secret"

    def migration_job(self) -> str:
        return f"{self.slug}-migrate"

    def warmup_jobs(self) -> dict[str, str]:
        """Job name -> the module it must run."""
        return {
            f"{self.slug}-{self.dashed(domain)}-warmup-cache": (
                f"{self.package}.{domain}.jobs.warmup_cache"
            )
            for domain in self.domains
        }


@dataclass
class Overlay:
    name: str  # e.g. deploy/overlays/dev
    service: Service
    documents: list[dict]  # what kubectl kustomize prints
    trace: Trace

    def of_kind(self, *kinds: str) -> list[dict]:
        return [document for document in self.documents if document.get("kind") in kinds]

    def named(self, kind: str, name: str) -> dict | None:
        return next(
            (
                document
                for document in self.of_kind(kind)
                if (document.get("metadata") or {}).get("name") == name
            ),
            None,
        )

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.service.tree))


RULES: list[Callable[[Overlay], list[str]]] = []


def rule(code: str):
    """Register a check; its problems are prefixed with the code and the overlay."""

    def register(check: Callable[[Overlay], Iterable[str]]):
        @functools.wraps(check)
        def run(overlay: Overlay) -> list[str]:
            return [f"{code} {overlay.name}: {problem}" for problem in check(overlay)]

        RULES.append(run)
        return run

    return register


def problems(tree: Path) -> list[str]:
    """Every rule on every overlay under deploy/overlays; an empty list means all pass."""
    tree = Path(tree).resolve()
    service = Service.read(tree)
    overlays = sorted(
        path for path in (tree / "deploy" / "overlays").glob("*") if kustomization_file(path)
    )
    if not overlays:
        return ["K101 deploy/overlays: no overlay with a kustomization.yaml"]
    found = []
    for path in overlays:
        name = str(path.relative_to(tree))
        try:
            overlay = Overlay(name, service, build(path), trace(path, tree / "deploy"))
        except KubectlMissing:
            raise
        except KustomizeError as error:
            # K101: the overlay builds. Nothing else can be checked on one that does not.
            found.append(f"K101 {name}: kustomize cannot build it: {error.reason}")
            continue
        for check in RULES:
            found += check(overlay)
    return found


def labels(document: dict) -> dict:
    return (document.get("metadata") or {}).get("labels") or {}


def is_worker(document: dict) -> bool:
    return (
        document.get("kind") == "Deployment" and labels(document).get(COMPONENT_LABEL) == "worker"
    )


@rule("K102")
def patches_match(overlay: Overlay) -> Iterator[str]:
    # kustomize silently skips a targeted patch or an images entry that matches nothing.
    kustomization = overlay.relative(overlay.trace.kustomization)
    for index, target in overlay.trace.unmatched_patches:
        described = (
            ", ".join(f"{key}={value}" for key, value in sorted(target.items()))
            if isinstance(target, dict)
            else repr(target)
        )
        yield f"{kustomization} patches[{index}] targets {described}, which matches no resource"
    for name in overlay.trace.unused_images:
        yield f"{kustomization} images {name} matches no container image"


@rule("K103")
def match_workers_use_threads(overlay: Overlay) -> Iterator[str]:
    for document in overlay.documents:
        if not is_worker(document):
            continue
        kinds = labels(document).get(QUEUE_KINDS_LABEL)
        if not kinds:
            yield f"{describe(document)} has no {QUEUE_KINDS_LABEL} label; cannot tell its pool"
            continue
        if "match" not in kinds.split("-"):
            continue
        worker = next((c for c in containers(document) if c.get("name") == "worker"), None)
        if worker is None:
            yield f"{describe(document)} has no container named worker"
            continue
        pools = [part for part in command_line(worker) if part.startswith(("--pool", "-P"))]
        if pools != ["--pool=threads"]:
            yield (
                f"{describe(document)} serves match queues but runs pool {pools or 'default'}; "
                "match answers from an in-process cache and needs --pool=threads"
            )


@rule("K104")
def jobs_run_modules(overlay: Overlay) -> Iterator[str]:
    service = overlay.service
    expected = {service.migration_job(): f"{service.package}.migrate", **service.warmup_jobs()}
    for name, module in expected.items():
        job = overlay.named("Job", name)
        if job is None:
            yield f"Job/{name} is missing (it should run python -m {module})"
            continue
        for container in containers(job):
            line = command_line(container)
            if "-c" in line:
                yield f"Job/{name} container {container.get('name')} runs python -c; run a module"
            if not _runs_module(line, module):
                yield (
                    f"Job/{name} container {container.get('name')} runs {line}; "
                    f"expected python -m {module}"
                )


def _runs_module(line: list[str], module: str) -> bool:
    return any(
        Path(line[index]).name.startswith("python")
        and line[index + 1 : index + 3] == ["-m", module]
        for index in range(len(line))
    )


@rule("K105")
def env_from_config_then_secret(overlay: Overlay) -> Iterator[str]:
    existing = {
        (document["kind"], (document.get("metadata") or {}).get("name"))
        for document in overlay.of_kind("ConfigMap", "Secret")
    }
    for document in overlay.documents:
        for container in containers(document, init=True):
            where = f"{describe(document)} container {container.get('name')}"
            sources = container.get("envFrom") or []
            kinds = ["ConfigMap" if "configMapRef" in s else "Secret" for s in sources if _ref(s)]
            if "Secret" in kinds and "ConfigMap" in kinds[kinds.index("Secret") :]:
                yield f"{where}: envFrom lists a secretRef before a configMapRef; ConfigMaps first"
            for kind, reference in _references(container):
                if not reference.get("optional") and (kind, reference.get("name")) not in existing:
                    yield f"{where} references {kind}/{reference.get('name')}, which does not exist"


def _ref(source: dict) -> dict | None:
    return source.get("configMapRef") or source.get("secretRef")


def _references(container: dict) -> Iterator[tuple[str, dict]]:
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            yield "ConfigMap", source["configMapRef"]
        if "secretRef" in source:
            yield "Secret", source["secretRef"]
    for variable in container.get("env") or []:
        value_from = variable.get("valueFrom") or {}
        if "configMapKeyRef" in value_from:
            yield "ConfigMap", value_from["configMapKeyRef"]
        if "secretKeyRef" in value_from:
            yield "Secret", value_from["secretKeyRef"]


@rule("K106")
def domain_databases_are_configured(overlay: Overlay) -> Iterator[str]:
    service = overlay.service
    settings = service.tree / "src" / service.package / "settings.py"
    settings_text = settings.read_text() if settings.is_file() else ""
    workloads = overlay.of_kind("Deployment", "Job")
    for domain in service.domains:
        variable = f"{domain.upper()}_DATABASE_URL"
        for kind, name, section in (
            ("ConfigMap", service.config_map(domain), "data"),
            ("Secret", service.secret(domain), "stringData"),
        ):
            document = overlay.named(kind, name)
            if document is None:
                yield f"{kind}/{name} for domain {domain} is missing"
            elif variable not in (document.get(section) or {}):
                yield f"{kind}/{name} has no {section}.{variable}"
        if not re.search(rf"^\s*{domain}_database_url\s*:", settings_text, re.M):
            yield f"src/{service.package}/settings.py has no field {domain}_database_url"
        for document in workloads:
            for container in containers(document):
                names = {
                    (kind, reference.get("name")) for kind, reference in _references(container)
                }
                for kind, name in (
                    ("ConfigMap", service.config_map(domain)),
                    ("Secret", service.secret(domain)),
                ):
                    if (kind, name) not in names:
                        yield (
                            f"{describe(document)} container {container.get('name')} does not get "
                            f"{variable} from {kind}/{name} via envFrom"
                        )


@rule("K107")
def nothing_runs_as_root(overlay: Overlay) -> Iterator[str]:
    for document in overlay.documents:
        spec = pod_spec(document)
        if spec is None:
            continue
        pod = spec.get("securityContext") or {}
        for container in containers(document, init=True):
            where = f"{describe(document)} container {container.get('name')}"
            own = container.get("securityContext") or {}
            if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
                yield f"{where}: runAsNonRoot is not true"
            user = own.get("runAsUser", pod.get("runAsUser"))
            if not isinstance(user, int) or user == 0:
                yield f"{where}: runAsUser must be a non-zero user id, not {user!r}"
            if own.get("allowPrivilegeEscalation") is not False:
                yield f"{where}: allowPrivilegeEscalation is not false"
            if own.get("readOnlyRootFilesystem") is not True:
                yield f"{where}: readOnlyRootFilesystem is not true"
            if own.get("privileged"):
                yield f"{where}: privileged"


@rule("K108")
def no_real_secrets(overlay: Overlay) -> Iterator[str]:
    for document in overlay.documents:
        if document.get("kind") == "Secret":
            if "data" in document:
                yield f"{describe(document)} uses data; commit only stringData placeholders"
            for key, value in (document.get("stringData") or {}).items():
                if SECRET_LOOKING_KEY.search(str(key)) and PLACEHOLDER not in str(value):
                    yield f"{describe(document)} stringData.{key} is no {PLACEHOLDER} placeholder"
        for container in containers(document, init=True):
            for variable in container.get("env") or []:
                name, value = str(variable.get("name")), variable.get("value")
                if (
                    value is not None
                    and SECRET_LOOKING_KEY.search(name)
                    and PLACEHOLDER not in str(value)
                ):
                    yield f"{describe(document)} env {name} holds a literal secret; use a Secret"
        for text in strings(document):
            for password in URL_PASSWORD.findall(text):
                if PLACEHOLDER not in password:
                    yield f"{describe(document)} has a real-looking URL password: {_mask(text)}"


def _mask(text: str) -> str:
    return URL_PASSWORD.sub(lambda match: match.group(0).replace(match.group(1), "***"), text)


@rule("K109")
def argocd_sync_order(overlay: Overlay) -> Iterator[str]:
    for name in overlay.service.warmup_jobs():
        job = overlay.named("Job", name)
        if job is None:
            continue  # K104 reports it
        notes = annotations(job)
        if notes.get(HOOK) != "PostSync":
            yield f"Job/{name} must be an Argo CD PostSync hook, not {notes.get(HOOK)!r}"
        if notes.get(HOOK_DELETE_POLICY) != "BeforeHookCreation":
            yield f"Job/{name} needs {HOOK_DELETE_POLICY}: BeforeHookCreation"
    migration = overlay.named("Job", overlay.service.migration_job())
    if migration is not None:
        yield from _migration_order(overlay, migration)


def _migration_order(overlay: Overlay, job: dict) -> Iterator[str]:
    name, hook = describe(job), annotations(job).get(HOOK)
    if hook == "PreSync":
        yield (
            f"{name} is a PreSync hook; on a first sync its ConfigMaps and Secrets do not exist "
            "yet. Make it a Sync hook in an earlier sync wave"
        )
    elif hook != "Sync":
        yield f"{name} must be an Argo CD Sync hook, not {hook!r}"
    wave = _wave(job)
    for document in overlay.documents:
        other = _wave(document)
        if wave is None or other is None:
            continue
        if document.get("kind") == "Deployment" and other <= wave:
            yield f"{name} (wave {wave}) must run before {describe(document)} (wave {other})"
        if (
            document.get("kind") in ("ConfigMap", "Secret") or group_of(document) == "rabbitmq.com"
        ) and other >= wave:
            yield f"{name} (wave {wave}) must run after {describe(document)} (wave {other})"
    for document in overlay.documents:
        if _wave(document) is None:
            yield f"{describe(document)} has a non-integer {SYNC_WAVE}"
    spec = job.get("spec") or {}
    for key in ("backoffLimit", "activeDeadlineSeconds"):
        if key not in spec:
            yield f"{name} has no spec.{key}"


def _wave(document: dict) -> int | None:
    value = annotations(document).get(SYNC_WAVE, "0")
    try:
        return int(str(value))
    except ValueError:
        return None


@rule("K110")
def probes_and_grace(overlay: Overlay) -> Iterator[str]:
    for document in overlay.documents:
        if is_worker(document):
            yield from _worker_probes(document)
    api = [
        document
        for document in overlay.of_kind("Deployment")
        if labels(document).get(COMPONENT_LABEL) == "api"
    ]
    if not api:
        yield f"no Deployment labelled {COMPONENT_LABEL}: api"
    for document in api:
        for container in containers(document):
            for probe, path in (
                ("readinessProbe", "/health/ready"),
                ("livenessProbe", "/health/live"),
            ):
                http = (container.get(probe) or {}).get("httpGet") or {}
                if http.get("path") != path:
                    yield (
                        f"{describe(document)} container {container.get('name')} {probe} must be "
                        f"httpGet {path}, not {http.get('path')!r}"
                    )


def _worker_probes(document: dict) -> Iterator[str]:
    grace = (pod_spec(document) or {}).get("terminationGracePeriodSeconds")
    if not isinstance(grace, int) or grace < MINIMUM_GRACE_SECONDS:
        yield (
            f"{describe(document)} terminationGracePeriodSeconds is {grace!r}; set it to at least "
            f"{MINIMUM_GRACE_SECONDS} so a batch can flush"
        )
    for container in containers(document):
        probe = container.get("livenessProbe") or {}
        if "exec" not in probe or any(key in probe for key in ("httpGet", "tcpSocket", "grpc")):
            yield (
                f"{describe(document)} container {container.get('name')} needs an exec "
                "livenessProbe (a worker serves no HTTP)"
            )


@rule("K111")
def names_are_dns_subdomains(overlay: Overlay) -> Iterator[str]:
    for document in overlay.documents:
        name = (document.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not DNS_1123_SUBDOMAIN.fullmatch(name):
            yield f"{describe(document)}: metadata.name {name!r} is not a DNS-1123 name"
        elif len(name) > NAME_LIMIT:
            yield f"{describe(document)}: metadata.name has {len(name)} characters (> {NAME_LIMIT})"


KEDA_DEFAULT_MIN, KEDA_DEFAULT_MAX = 0, 100


def consumed_queues(service: Service, deployment: dict) -> set[str]:
    """The queues a worker Deployment's containers consume: named by `worker NAME` (the
    service's topology.yaml) or by Celery's -Q / --queues."""
    found: set[str] = set()
    workers = service.topology_workers()
    for container in containers(deployment):
        line = command_line(container)
        for index, part in enumerate(line):
            following = line[index + 1] if index + 1 < len(line) else ""
            if part == "worker" and following in workers:
                found |= workers[following]
            elif part.startswith("--queues="):
                found |= set(part.removeprefix("--queues=").split(","))
            elif part in ("-Q", "--queues"):
                found |= set(following.split(","))
    return found


@rule("K112")
def autoscalers_follow_their_workers_queues(overlay: Overlay) -> Iterator[str]:
    # A ScaledObject on another queue scales the worker on work it never takes: it grows
    # while its own queue backs up unseen.
    for scaled in overlay.of_kind("ScaledObject"):
        spec = scaled.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        target_kind, name = target.get("kind", "Deployment"), target.get("name")
        deployment = overlay.named(target_kind, name)
        if deployment is None:
            yield f"{describe(scaled)} scales {target_kind}/{name}, which does not exist"
            continue
        consumed = consumed_queues(overlay.service, deployment)
        listed = ", ".join(sorted(consumed)) or "none"
        for trigger in spec.get("triggers") or []:
            if trigger.get("type") != "rabbitmq":
                continue
            queue = (trigger.get("metadata") or {}).get("queueName")
            if queue not in consumed:
                yield (
                    f"{describe(scaled)} scales {describe(deployment)} on queue {queue!r}, "
                    f"which it does not consume (it consumes {listed})"
                )


@rule("K113")
def autoscaler_bounds(overlay: Overlay) -> Iterator[str]:
    for scaled in overlay.of_kind("ScaledObject"):
        spec = scaled.get("spec") or {}
        low = spec.get("minReplicaCount", KEDA_DEFAULT_MIN)
        high = spec.get("maxReplicaCount", KEDA_DEFAULT_MAX)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            yield (
                f"{describe(scaled)} minReplicaCount {low} is greater than maxReplicaCount "
                f"{high}: KEDA refuses it and never scales the worker"
            )
