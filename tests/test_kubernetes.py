"""Kubernetes manifests: every overlay of every variant builds with the real kustomize
(``kubectl kustomize``), validates against real schemas and follows Keel's rules; each rule
and the validator are shown to fail."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from generator.checks import kubernetes, overlays
from generator.checks.kubernetes import problems, validate
from generator.checks.overlays import KubectlMissing, KustomizeError, build

from .conftest import REPOSITORY, VARIANTS

STRIP_CRDS = REPOSITORY / "scripts" / "strip-crds"
OVERLAYS = ("dev", "prod")


def answers(tree: Path) -> dict:
    return yaml.safe_load((tree / ".copier-answers.yml").read_text())


def load(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def codes(found: list[str]) -> set[str]:
    return {problem.split()[0] for problem in found}


# --- every rendered variant -----------------------------------------------------------------


@pytest.fixture(params=list(VARIANTS))
def tree(request, rendered):
    return rendered[request.param]


def test_every_overlay_builds_and_matches_the_schemas(tree):
    overlays = sorted(path.name for path in (tree / "deploy" / "overlays").iterdir())
    assert set(OVERLAYS) <= set(overlays)
    for overlay in overlays:
        documents = build(tree / "deploy" / "overlays" / overlay)
        assert documents, overlay
        assert validate(documents) == [], overlay


def test_every_overlay_follows_keels_rules(tree):
    assert problems(tree) == []


MANIFEST_TEMPLATES = REPOSITORY / "template" / "src" / "{{package_name}}" / "manifest_templates"


def test_copier_renders_each_manifest_template_the_service_renders_and_nothing_else(tree):
    """deploy/base/generated/ has one definition, the service's manifest_templates/: copier
    renders every one of them at copy time, generate-manifests every one afterwards."""
    templates = {path.name.removesuffix(".j2") for path in MANIFEST_TEMPLATES.glob("*.yaml.j2")}
    listed = yaml.safe_load((REPOSITORY / "copier.yml").read_text())["generated_manifests"]
    assert sorted(listed["default"]) == sorted(templates)
    generated = tree / "deploy" / "base" / "generated"
    assert {path.name for path in generated.iterdir()} == templates
    shipped = next((tree / "src").glob("*/manifest_templates"))
    assert {path.name.removesuffix(".j2") for path in shipped.glob("*.yaml.j2")} == templates


def test_the_argocd_application_is_valid_and_points_at_an_overlay(tree):
    for path in sorted((tree / "deploy" / "argocd").glob("*.yaml")):
        for application in load(path):
            assert validate([application]) == [], path
            overlay = tree / application["spec"]["source"]["path"]
            assert overlay.parent == tree / "deploy" / "overlays", overlay
            kustomization = yaml.safe_load(overlays.kustomization_file(overlay).read_text())
            # Argo CD's destination and the overlay agree on where the workloads live.
            assert application["spec"]["destination"]["namespace"] == kustomization["namespace"]


@pytest.mark.parametrize(("overlay", "replicas"), [("dev", 1), ("prod", 3)])
def test_each_overlay_runs_the_rabbitmq_cluster_every_topology_cr_is_declared_on(
    rendered, overlay, replicas
):
    documents = build(rendered["defaults"] / "deploy" / "overlays" / overlay)
    clusters = [d for d in documents if d["kind"] == "RabbitmqCluster"]
    assert [c["spec"]["replicas"] for c in clusters] == [replicas]
    cluster = clusters[0]["metadata"]
    topology = [
        d for d in documents if d["apiVersion"].startswith("rabbitmq.com/") and d not in clusters
    ]
    assert {d["kind"] for d in topology} == {"Exchange", "Queue", "Binding", "Policy"}
    for document in topology:
        reference = document["spec"]["rabbitmqClusterReference"]
        namespace = reference.get("namespace", document["metadata"]["namespace"])
        assert (reference["name"], namespace) == (cluster["name"], cluster["namespace"])
    secrets = [
        d for d in documents if d["kind"] == "Secret" and "BROKER_URL" in d.get("stringData", {})
    ]
    for url in (secrets[0]["stringData"][key] for key in ("BROKER_URL", "RABBITMQ_MANAGEMENT_URL")):
        assert urlsplit(url).hostname == cluster["name"], url


@pytest.mark.parametrize(("overlay", "floor"), [("dev", 1), ("prod", 2)])
def test_the_api_and_every_match_worker_have_a_disruption_budget_and_a_floor(tree, overlay, floor):
    """Pods answering calls someone waits on go down one at a time in a drain; prod runs at
    least two of each, so one always answers."""
    documents = build(tree / "deploy" / "overlays" / overlay)
    budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    answering = [
        d
        for d in documents
        if d["kind"] == "Deployment"
        and (
            d["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
            or "match" in d["metadata"]["labels"].get("keel.dev/queue-kinds", "")
        )
    ]
    assert len(answering) == 1 + len(answers(tree)["domains"])
    for deployment in answering:
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            budget
            for budget in budgets
            if budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
        ]
        assert [b["spec"].get("maxUnavailable") for b in covering] == [1], deployment["metadata"]
        assert deployment["spec"]["replicas"] >= floor, deployment["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reward_workers_autoscale_on_their_own_queue_with_the_broker_url_from_the_secret(
    tree, overlay
):
    documents = build(tree / "deploy" / "overlays" / overlay)

    def named(kind: str) -> dict[str, dict]:
        return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}

    autoscalers, secrets = named("ScaledObject"), named("Secret")
    authentications = named("TriggerAuthentication")
    topology = yaml.safe_load(next((tree / "src").glob("*/topology.yaml")).read_text())
    reward_workers = 0
    for domain, spec in topology["domains"].items():
        for key, queue in spec["queues"].items():
            (deployment,) = [
                d
                for d in documents
                if d["kind"] == "Deployment"
                and d["metadata"]["labels"].get("keel.dev/worker") == queue["worker"]
            ]
            name = deployment["metadata"]["name"]
            if queue["kind"] != "reward":
                assert name not in autoscalers and "replicas" in deployment["spec"]
                continue
            reward_workers += 1
            # KEDA owns the replica count: neither the base nor the overlay sets one.
            assert "replicas" not in deployment["spec"], name
            autoscaler = autoscalers[name]["spec"]
            assert autoscaler["scaleTargetRef"] == {"name": name}
            limits = spec["workers"][queue["worker"]]["autoscale"]
            assert (autoscaler["minReplicaCount"], autoscaler["maxReplicaCount"]) == (
                limits["min"],
                limits["max"],
            )
            (trigger,) = autoscaler["triggers"]
            assert trigger["type"] == "rabbitmq"
            assert trigger["metadata"] == {
                "protocol": "amqp",
                "mode": "QueueLength",
                "value": str(limits["queue_length"]),
                "queueName": f"{domain}.{key}",
            }
            authentication = authentications[trigger["authenticationRef"]["name"]]
            (reference,) = authentication["spec"]["secretTargetRef"]
            assert reference["parameter"] == "host"
            assert "BROKER_URL" == reference["key"] in secrets[reference["name"]]["stringData"]
    assert reward_workers == len(topology["domains"])


# --- each rule fails on a broken copy of the default service --------------------------------


@pytest.fixture
def service(rendered, tmp_path) -> Path:
    copied = tmp_path / "service"
    shutil.copytree(rendered["defaults"], copied)
    return copied


def edit(tree: Path, relative: str, kind: str, name: str, change) -> None:
    """Apply ``change`` to the document ``kind``/``name`` (``{slug}`` is filled in)."""
    name = name.format(slug=answers(tree)["project_slug"])
    path = tree / "deploy" / relative
    documents = load(path)
    chosen = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert chosen, f"{kind}/{name} not in {relative}"
    for document in chosen:
        change(document)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def pod(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


def container(document: dict) -> dict:
    return pod(document)["containers"][0]


def replace_arg(old: str, new: str):
    def change(document):
        args = container(document)["args"]
        args[args.index(old)] = new

    return change


def add_secret_value(key: str, value: str):
    return lambda document: document["stringData"].update({key: value})


def set_annotation(key: str, value: str):
    return lambda document: document["metadata"]["annotations"].update({key: value})


API = ("base/api.yaml", "Deployment", "{slug}-api")
MATCH_WORKER = ("base/generated/workers.yaml", "Deployment", "{slug}-orders-match-worker")
MIGRATION = ("base/migrate-job.yaml", "Job", "{slug}-migrate")
WARMUP = ("base/generated/warmup-jobs.yaml", "Job", "{slug}-orders-warmup-cache")
REWARD_AUTOSCALER = (
    "base/generated/autoscaling.yaml",
    "ScaledObject",
    "{slug}-orders-reward-worker",
)
ORDERS_CONFIG = ("base/config.yaml", "ConfigMap", "{slug}-orders-config")
ORDERS_SECRET = ("base/config.yaml", "Secret", "{slug}-orders-secret")

RULE_BREAKS = {
    "K103-prefork": (*MATCH_WORKER, replace_arg("--pool=threads", "--pool=prefork"), "K103"),
    "K103-no-queue-kinds": (
        *MATCH_WORKER,
        lambda d: d["metadata"]["labels"].pop("keel.dev/queue-kinds"),
        "K103",
    ),
    "K104-warmup-python-c": (
        *WARMUP,
        lambda d: container(d).update(args=["python", "-c", "import sys"]),
        "K104",
    ),
    "K104-migration-script": (
        *MIGRATION,
        lambda d: container(d).update(args=["alembic", "upgrade", "head"]),
        "K104",
    ),
    "K105-secret-before-config": (
        *API,
        lambda d: container(d)["envFrom"].reverse(),
        "K105",
    ),
    "K105-missing-config-map": (
        *API,
        lambda d: container(d)["envFrom"].insert(0, {"configMapRef": {"name": "nowhere"}}),
        "K105",
    ),
    "K106-config-map-lacks-url": (
        *ORDERS_CONFIG,
        lambda d: d["data"].pop("ORDERS_DATABASE_URL"),
        "K106",
    ),
    "K106-container-lacks-domain-secret": (
        *API,
        lambda d: container(d)["envFrom"].pop(),
        "K106",
    ),
    "K107-no-run-as-non-root": (
        *API,
        lambda d: pod(d)["securityContext"].pop("runAsNonRoot"),
        "K107",
    ),
    "K107-root-user": (
        *MIGRATION,
        lambda d: container(d)["securityContext"].update(runAsUser=0),
        "K107",
    ),
    "K107-writable-root": (
        *WARMUP,
        lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        "K107",
    ),
    "K108-real-url-password": (
        *ORDERS_SECRET,
        add_secret_value("ORDERS_DATABASE_URL", "postgresql://orders:hunter2@db:5432/orders"),
        "K108",
    ),
    "K108-real-token": (*ORDERS_SECRET, add_secret_value("API_TOKEN", "ghp_abc123"), "K108"),
    "K108-secret-data": (
        *ORDERS_SECRET,
        lambda d: d.update(data={"ORDERS_PASSWORD": "aHVudGVyMg=="}),
        "K108",
    ),
    "K109-presync-migration": (*MIGRATION, set_annotation(kubernetes.HOOK, "PreSync"), "K109"),
    "K109-migration-with-the-workloads": (
        *MIGRATION,
        set_annotation(kubernetes.SYNC_WAVE, "0"),
        "K109",
    ),
    "K109-migration-before-config": (
        *MIGRATION,
        set_annotation(kubernetes.SYNC_WAVE, "-3"),
        "K109",
    ),
    "K109-migration-without-deadline": (
        *MIGRATION,
        lambda d: d["spec"].pop("activeDeadlineSeconds"),
        "K109",
    ),
    "K109-warmup-not-post-sync": (
        *WARMUP,
        lambda d: d["metadata"]["annotations"].pop(kubernetes.HOOK),
        "K109",
    ),
    "K110-worker-http-liveness": (
        *MATCH_WORKER,
        lambda d: container(d).update(livenessProbe={"httpGet": {"path": "/", "port": 8000}}),
        "K110",
    ),
    "K110-short-grace": (
        *MATCH_WORKER,
        lambda d: pod(d).update(terminationGracePeriodSeconds=5),
        "K110",
    ),
    "K110-api-readiness": (
        *API,
        lambda d: container(d)["readinessProbe"]["httpGet"].update(path="/health"),
        "K110",
    ),
    "K112-scaled-on-another-queue": (
        *REWARD_AUTOSCALER,
        lambda d: d["spec"]["triggers"][0]["metadata"].update(queueName="orders.match"),
        "K112",
    ),
    "K112-scales-a-missing-worker": (
        *REWARD_AUTOSCALER,
        lambda d: d["spec"]["scaleTargetRef"].update(name="nowhere-worker"),
        "K112",
    ),
    "K113-min-above-max": (
        *REWARD_AUTOSCALER,
        lambda d: d["spec"].update(minReplicaCount=6, maxReplicaCount=5),
        "K113",
    ),
    "K111-bad-name": (
        "base/api.yaml",
        "Service",
        "{slug}-api",
        lambda d: d["metadata"].update(name="Acme_API"),
        "K111",
    ),
    "K111-long-name": (
        "base/api.yaml",
        "Service",
        "{slug}-api",
        lambda d: d["metadata"].update(name="a" * 64),
        "K111",
    ),
}


@pytest.mark.parametrize(
    ("relative", "kind", "name", "change", "code"), RULE_BREAKS.values(), ids=list(RULE_BREAKS)
)
def test_each_rule_catches_its_mistake(service, relative, kind, name, change, code):
    assert problems(service) == []
    edit(service, relative, kind, name, change)
    found = problems(service)
    assert codes(found) == {code}, found
    # Both overlays inherit the base, so both report it.
    assert {problem.split()[1] for problem in found} == {f"deploy/overlays/{o}:" for o in OVERLAYS}


def test_a_domain_missing_from_the_settings_is_caught(service):
    package = answers(service)["package_name"]
    settings = service / "src" / package / "settings.py"
    settings.write_text(settings.read_text().replace("orders_database_url:", "orders_db_url:"))
    found = problems(service)
    assert codes(found) == {"K106"}
    assert all("orders_database_url" in problem for problem in found)


def test_an_overlay_kustomize_cannot_build_is_one_clear_error(service):
    kustomization = service / "deploy" / "base" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - missing.yaml\n")
    found = problems(service)
    # One line per overlay, naming it and kustomize's own reason; no other rule runs on it.
    assert [problem.split(":")[0] for problem in found] == [
        f"K101 deploy/overlays/{overlay}" for overlay in OVERLAYS
    ]
    assert all("missing.yaml: no such file or directory" in problem for problem in found), found
    dev = service / "deploy" / "overlays" / "dev"
    with pytest.raises(KustomizeError) as raised:
        build(dev)
    message = str(raised.value)
    assert message.startswith(f"kubectl kustomize {dev}: ")
    assert "missing.yaml: no such file or directory" in message
    # kustomize's error line only: no kubectl log prefix, no second line.
    assert "run.go" not in message and "command failed" not in message
    assert "\n" not in message


def test_an_untargeted_patch_that_matches_nothing_is_kustomizes_error(service):
    kustomization = service / "deploy" / "overlays" / "prod" / "kustomization.yaml"
    text = kustomization.read_text()
    slug = answers(service)["project_slug"]
    secret = f"        name: {slug}-secret\n"
    assert text.count(secret) == 1
    kustomization.write_text(text.replace(secret, f"        name: {slug}-secert\n"))
    found = problems(service)
    assert len(found) == 1 and found[0].startswith("K101 deploy/overlays/prod: "), found
    assert f"{slug}-secert" in found[0] and "no resource matches" in found[0]


def test_a_missing_kubectl_is_named_with_where_to_get_it(service, monkeypatch):
    monkeypatch.setenv("PATH", str(service))
    with pytest.raises(KubectlMissing, match=r"kubectl is missing: install it from https://"):
        build(service / "deploy" / "overlays" / "dev")
    # A missing tool is this machine's fault, not a K101 of the service.
    with pytest.raises(KubectlMissing):
        problems(service)


def test_a_patch_must_target_an_existing_resource(service):
    slug = answers(service)["project_slug"]
    kustomization = service / "deploy" / "overlays" / "dev" / "kustomization.yaml"
    text = kustomization.read_text()
    target = f"\n      name: {slug}-api\n"
    assert text.count(target) == 1
    kustomization.write_text(text.replace(target, f"\n      name: {slug}-apx\n"))
    found = problems(service)
    assert found == [
        f"K102 deploy/overlays/dev: deploy/overlays/dev/kustomization.yaml patches[0] targets "
        f"kind=Deployment, name={slug}-apx, which matches no resource"
    ]


def test_a_label_selector_patch_that_selects_nothing_is_caught(service):
    kustomization = service / "deploy" / "overlays" / "prod" / "kustomization.yaml"
    text = kustomization.read_text()
    selector = "labelSelector: app.kubernetes.io/component=worker\n"
    assert text.count(selector) == 1
    kustomization.write_text(text.replace(selector, selector.replace("worker", "wroker")))
    found = problems(service)
    assert codes(found) == {"K102"} and len(found) == 1, found
    assert found[0].startswith(
        "K102 deploy/overlays/prod: deploy/overlays/prod/kustomization.yaml patches[2] targets "
        "kind=Deployment, labelSelector=app.kubernetes.io/component=wroker"
    )


def test_a_patch_that_moves_its_resources_out_of_its_own_selector_still_matches(service):
    # Each patch is traced as kustomize applies it, not after later changes: this one
    # relabels what it selects, so afterwards its selector matches nothing.
    kustomization = service / "deploy" / "overlays" / "dev" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text()
        + """\
  - target:
      labelSelector: app.kubernetes.io/component=config
    patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: any
        labels:
          app.kubernetes.io/component: settings
"""
    )
    documents = build(service / "deploy" / "overlays" / "dev")
    relabelled = [
        d
        for d in documents
        if d["metadata"]["labels"].get(kubernetes.COMPONENT_LABEL) == "settings"
    ]
    assert relabelled and not [
        d for d in documents if d["metadata"]["labels"].get(kubernetes.COMPONENT_LABEL) == "config"
    ]
    assert problems(service) == []


def test_an_image_override_must_change_a_container(service):
    slug = answers(service)["project_slug"]
    kustomization = service / "deploy" / "overlays" / "prod" / "kustomization.yaml"
    text = kustomization.read_text()
    image = f"  - name: {slug}-worker\n"
    assert text.count(image) == 1
    kustomization.write_text(text.replace(image, f"  - name: {slug}-wroker\n"))
    assert problems(service) == [
        f"K102 deploy/overlays/prod: deploy/overlays/prod/kustomization.yaml images "
        f"{slug}-wroker matches no container image"
    ]


def test_the_rules_run_on_what_kustomize_builds(service):
    # An overlay patch (and a kustomize feature Keel never assembled itself) reach the rules:
    # only dev runs its api as root, and commonLabels is kustomize's business.
    slug = answers(service)["project_slug"]
    kustomization = service / "deploy" / "overlays" / "dev" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text()
        + f"""\
  - target:
      kind: Deployment
      name: {slug}-api
    patch: |-
      - op: replace
        path: /spec/template/spec/securityContext/runAsUser
        value: 0
commonLabels:
  team: shop
"""
    )
    found = problems(service)
    assert codes(found) == {"K107"}, found
    assert {problem.split()[1] for problem in found} == {"deploy/overlays/dev:"}
    assert all(f"Deployment/{slug}-api" in problem for problem in found)
    documents = build(service / "deploy" / "overlays" / "dev")
    assert all(document["metadata"]["labels"]["team"] == "shop" for document in documents)


# --- the validator fails on schema mistakes -------------------------------------------------

QUEUE = ("base/generated/rabbitmq.yaml", "Queue", "{slug}-orders-match")
SCHEMA_BREAKS = {
    "queue-misspelt-field": (
        *QUEUE,
        lambda d: d["spec"].update(durabel=d["spec"].pop("durable")),
        "spec: Additional properties are not allowed ('durabel' was unexpected)",
    ),
    "queue-without-name": (
        *QUEUE,
        lambda d: d["spec"].pop("name"),
        "spec: 'name' is a required property",
    ),
    "policy-bad-apply-to": (
        "base/generated/rabbitmq.yaml",
        "Policy",
        "{slug}-orders-reward",
        lambda d: d["spec"].update(applyTo="queue"),
        "spec.applyTo: 'queue' is not one of",
    ),
    "deployment-field-type": (
        *API,
        lambda d: pod(d).update(terminationGracePeriodSeconds="30"),
        "spec.template.spec.terminationGracePeriodSeconds: '30' is not of type 'integer'",
    ),
    "deployment-misspelt-field": (
        *API,
        lambda d: container(d).update(imagePullPolicy="Always", imagePulPolicy="Always"),
        "'imagePulPolicy' was unexpected",
    ),
    "rabbitmq-cluster-replicas": (
        "base/rabbitmq-cluster.yaml",
        "RabbitmqCluster",
        "rabbitmq",
        lambda d: d["spec"]["persistence"].update(storageClass="fast"),
        "'storageClass' was unexpected",
    ),
    "scaled-object-misspelt-field": (
        *REWARD_AUTOSCALER,
        lambda d: d["spec"].update(maxReplicas=d["spec"].pop("maxReplicaCount")),
        "'maxReplicas' was unexpected",
    ),
    "trigger-authentication-without-key": (
        "base/generated/autoscaling.yaml",
        "TriggerAuthentication",
        "{slug}-rabbitmq",
        lambda d: d["spec"]["secretTargetRef"][0].pop("key"),
        "'key' is a required property",
    ),
    "config-map-number": (
        *ORDERS_CONFIG,
        lambda d: d["data"].update(POOL_SIZE=5),
        "data.POOL_SIZE: 5 is not of type 'string'",
    ),
}


@pytest.mark.parametrize(
    ("relative", "kind", "name", "change", "expected"),
    SCHEMA_BREAKS.values(),
    ids=list(SCHEMA_BREAKS),
)
def test_the_validator_catches_schema_mistakes(service, relative, kind, name, change, expected):
    edit(service, relative, kind, name, change)
    found = validate(build(service / "deploy" / "overlays" / "dev"))
    assert found and all(problem.startswith("schema ") for problem in found), found
    assert any(expected in problem for problem in found), found


def test_unknown_kinds_and_incomplete_applications_are_errors():
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    shovel = {"apiVersion": "rabbitmq.com/v1beta1", "kind": "Shovel", "metadata": {}}
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "a"},
        "spec": {"source": {"path": "deploy/overlays/dev"}},
    }
    found = validate([widget, shovel, application])
    assert found == [
        "schema Widget/w: unknown kind Widget in example.com/v1: no schema to validate it against",
        "schema Shovel/None: unknown kind Shovel in rabbitmq.com/v1beta1: "
        "no schema to validate it against",
        "schema Application/a: spec.destination is missing",
    ]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- the stripped RabbitMQ CRDs --------------------------------------------------------------


def schema_nodes(schema: dict):
    """Every schema node (not the field-name maps under ``properties``)."""
    yield schema
    for child in (schema.get("properties") or {}).values():
        yield from schema_nodes(child)
    if isinstance(schema.get("items"), dict):
        yield from schema_nodes(schema["items"])


CRD_COPIES = [
    *((kubernetes.RABBITMQ_SCHEMAS, kind) for kind in ("exchange", "queue", "binding", "policy")),
    (kubernetes.RABBITMQ_SCHEMAS, "rabbitmqcluster"),
    (kubernetes.KEDA_SCHEMAS, "scaledobject"),
    (kubernetes.KEDA_SCHEMAS, "triggerauthentication"),
]


@pytest.mark.parametrize(("schemas", "kind"), CRD_COPIES, ids=[kind for _, kind in CRD_COPIES])
def test_the_committed_crd_copies_are_strict_and_description_free(schemas, kind):
    schema = json.loads((schemas / f"{kind}.json").read_text())
    for node in schema_nodes(schema):
        assert "description" not in node
        if "properties" in node and node is not schema["properties"]["metadata"]:
            assert node.get("additionalProperties") is False or node.get(
                "x-kubernetes-preserve-unknown-fields"
            )
    assert schema["properties"]["metadata"] == {"type": "object"}
    if kind == "rabbitmqcluster":
        assert schema["properties"]["spec"]["properties"]["replicas"]["type"] == "integer"
        return
    if kind == "scaledobject":
        trigger = schema["properties"]["spec"]["properties"]["triggers"]["items"]
        # KEDA reads every trigger setting as a string: value: 1000 would be refused.
        assert trigger["properties"]["metadata"]["additionalProperties"] == {"type": "string"}
        return
    if kind == "triggerauthentication":
        reference = schema["properties"]["spec"]["properties"]["secretTargetRef"]["items"]
        assert set(reference["required"]) == {"parameter", "name", "key"}
        return
    assert schema["properties"]["spec"]["properties"][
        "arguments" if kind != "policy" else "definition"
    ] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  names: {kind: Gadget}
  versions:
    - name: v1alpha1
      schema: {openAPIV3Schema: {type: object, properties: {kind: {type: string}}}}
    - name: v1beta1
      schema:
        openAPIV3Schema:
          description: A gadget.
          type: object
          properties:
            metadata: {type: object, properties: {name: {type: string}}}
            spec:
              description: What it does.
              type: object
              properties:
                description: {type: string, description: a field called description}
                extra:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
                  properties: {a: {}}
                parts:
                  type: array
                  items: {type: object, description: one part, properties: {size: {type: integer}}}
"""


def test_strip_crds_writes_a_strict_description_free_copy(tmp_path):
    write(tmp_path / "crds" / "gadgets.yaml", CRD)
    output = tmp_path / "out"
    command = [sys.executable, str(STRIP_CRDS), str(tmp_path / "crds"), "--output", str(output)]
    subprocess.run(command, check=True, capture_output=True)
    schema = json.loads((output / "gadget.json").read_text())
    spec = schema["properties"]["spec"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert spec == {
        "additionalProperties": False,
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "extra": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"a": {}},
            },
            "parts": {
                "type": "array",
                "items": {
                    "additionalProperties": False,
                    "type": "object",
                    "properties": {"size": {"type": "integer"}},
                },
            },
        },
    }
    assert subprocess.run([*command, "--check"], capture_output=True).returncode == 0
    older = tmp_path / "older"
    subprocess.run(
        [*command[:-1], str(older), "--version", "v1alpha1"], check=True, capture_output=True
    )
    assert set(json.loads((older / "gadget.json").read_text())["properties"]) == {
        "kind",
        "metadata",
    }
    (output / "gadget.json").write_text("{}\n")
    stale = subprocess.run([*command, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "gadget.json is stale" in stale.stderr
