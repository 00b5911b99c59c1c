"""`keel check`: each rule fires exactly on its failing fixture, at the right line, and not on
its fixed twin; every answer set Keel renders checks clean; output formats and exit codes."""

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from jinja2 import Template
from jsonschema import Draft4Validator

from generator.checks.lessons import RULES

from .conftest import BIN, REPOSITORY, VARIANTS


@dataclass
class Case:
    """Files of a failing fixture, the line (path, line) the rule must name, and the changes
    that fix it (path -> new text)."""

    files: dict[str, str]
    at: tuple[str, int]
    fixed: dict[str, str]


COMPOSE_BASE = """\
services:
  db:
    image: postgres:16
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres"]
  api:
    image: app
"""

JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: warmup
  annotations:
    argocd.argoproj.io/hook: PostSync
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: warmup
          image: app
          command: {command}
          envFrom:
            - {first}
            - {second}
"""
CONFIG = "configMapRef: {name: app}"
SECRET = "secretRef: {name: app}"
MODULE = '["python", "-m", "app.orders.jobs.warmup_cache"]'
QUEUE_CR = """\
apiVersion: rabbitmq.com/v1beta1
kind: Queue
metadata:
  name: orders-reward
spec:
  name: orders.reward
  type: {type}
  durable: true
  arguments:
    x-message-ttl: 60000
  rabbitmqClusterReference:
    name: rabbit
"""
CELERY_QUEUE = """\
from kombu import Queue

task_queues = [Queue("orders.reward", queue_arguments={arguments})]
"""
WORKER_START = """\
from celery.signals import worker_ready

from app.cache import CACHE, start_consumer


@worker_ready.connect
def follow_cache_events(sender=None, **kwargs):
    start_consumer(CACHE)
"""
CACHE_START = """\
import threading

CACHE = {{}}


def start_consumer(cache):
    threading.Thread(target=print, daemon=True).start()
    {then}
"""
PROBES = """\
          readinessProbe:
            httpGet: {{path: /health, port: 8000}}
          livenessProbe:
            httpGet:
              path: {live}
              port: 8000
"""


def deployment(args: str) -> str:
    return dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: match-worker
        spec:
          selector:
            matchLabels: {{app: w}}
          template:
            metadata:
              labels: {{app: w}}
            spec:
              containers:
                - name: worker
                  image: app
                  args: {args}
        """)


CASES: dict[str, Case] = {
    "L1a": Case(
        {"compose.yaml": COMPOSE_BASE + "    depends_on: [db]\n"},
        ("compose.yaml", 8),
        {"compose.yaml": COMPOSE_BASE + "    depends_on:\n      db: {condition: service_healthy}\n"},
    ),
    "L1b": Case(
        {"compose.yaml": COMPOSE_BASE + "    depends_on:\n      db: {restart: true}\n"},
        ("compose.yaml", 9),
        {"compose.yaml": COMPOSE_BASE + "    depends_on:\n      db: {condition: service_healthy}\n"},
    ),
    "L1c": Case(
        {"compose.yaml": "services:\n  broker:\n    image: rabbitmq:4-management\n"},
        ("compose.yaml", 3),
        {"compose.yaml": "services:\n  broker:\n    image: rabbitmq:4-management\n"
                         "    healthcheck:\n      test: rabbitmq-diagnostics -q ping\n"},
    ),
    "L4": Case(
        {"compose.yaml": "services:\n  worker:\n    command: celery -A app worker\n"
                         "    healthcheck:\n      test: curl -f http://localhost:8000/health\n"},
        ("compose.yaml", 5),
        {"compose.yaml": "services:\n  worker:\n    command: celery -A app worker\n"
                         "    healthcheck:\n      test: probe-worker\n"},
    ),
    "L3a": Case(
        {"docker/entrypoint.sh": "#!/bin/sh\nset -e\npython wait.py\n\"$@\"\n"},
        ("docker/entrypoint.sh", 4),
        {"docker/entrypoint.sh": "#!/bin/sh\nset -e\npython wait.py\nexec \"$@\"\n"},
    ),
    "L3b": Case(
        {"docker/entrypoint.sh": "#!/bin/sh\nwhile ! nc -z db 5432; do sleep 1; done\nexec \"$@\"\n"},
        ("docker/entrypoint.sh", 2),
        {"docker/entrypoint.sh": "#!/bin/sh\ntimeout 60 sh -c 'while ! nc -z db 5432; do sleep 1; done'\nexec \"$@\"\n"},
    ),
    "L3c": Case(
        {"docker/entrypoint.sh": "#!/bin/sh\nalembic upgrade head\nexec \"$@\"\n"},
        ("docker/entrypoint.sh", 2),
        {"docker/entrypoint.sh": "#!/bin/sh\nexec \"$@\"\n"},
    ),
    "L2a": Case(
        {"app/health.py": dedent("""\
            @router.get("/health")
            def health():
                try:
                    connection.ensure_connection(max_retries=1)
                    check_migrations()
                except Exception as e:
                    return {"status": "error", "detail": str(e)}
            """)},
        ("app/health.py", 7),
        {"app/health.py": dedent("""\
            @router.get("/health")
            def health():
                try:
                    connection.ensure_connection(max_retries=1)
                    check_migrations()
                except Exception:
                    log.exception("not ready")
                    return {"status": "error"}
            """)},
    ),
    "L2b": Case(
        {"app/health.py": dedent("""\
            @router.get("/ready")
            def ready():
                connection.ensure_connection(max_retries=1)
                return {"status": "ok"}
            """)},
        ("app/health.py", 3),
        {"app/health.py": dedent("""\
            @router.get("/ready")
            def ready():
                return {"status": "ok" if not migrate.behind("orders") else "behind"}
            """)},
    ),
    "L5": Case(
        {"app/health.py": dedent("""\
            @router.get("/status")
            def status():
                return celery_app.control.inspect().stats()
            """)},
        ("app/health.py", 3),
        {"app/health.py": dedent("""\
            @router.get("/status")
            def status():
                return celery_app.control.inspect(timeout=1.0).stats()
            """)},
    ),
    "L6a": Case(
        {"app/celery.py": 'app.conf.broker_transport_options = {"global_qos": False}\n'},
        ("app/celery.py", 1),
        {"app/celery.py": "app.conf.worker_detect_quorum_queues = True\n"},
    ),
    "L10": Case(
        {"app/tasks.py": dedent("""\
            @app.task
            def settle(order_id):
                result = price.delay(order_id)
                return result.get()
            """)},
        ("app/tasks.py", 4),
        {"app/tasks.py": dedent("""\
            @app.task
            def settle(order_id):
                return chain(price.s(order_id), record.s())()
            """)},
    ),
    "L11": Case(
        {"app/cache.py": dedent("""\
            from kombu import Exchange, Queue

            updates = Exchange("cache.updates", type="fanout")
            queue = Queue("cache.updates.queue", exchange=updates)
            """)},
        ("app/cache.py", 4),
        {"app/cache.py": dedent("""\
            from kombu import Exchange, Queue

            updates = Exchange("cache.updates", type="fanout")
            queue = Queue("", exchange=updates, exclusive=True, auto_delete=True)
            """)},
    ),
    "L14": Case(
        {"app/settings.py": 'import os\n\nURL = os.environ.get("ORDERS_DATABASE_URL") or os.environ["DATABASE_URL"]\n'},
        ("app/settings.py", 3),
        {"app/settings.py": 'import os\n\nURL = os.environ["ORDERS_DATABASE_URL"]\n'},
    ),
    "L8": Case(
        {
            "app/orders/api.py": "from fastapi import APIRouter\n\nrouter = APIRouter()\n",
            "app/billing/tasks.py": "from app.orders import api\n\n\n@app.task\ndef bill():\n    pass\n",
        },
        ("app/billing/tasks.py", 1),
        {"app/billing/tasks.py": "from app.orders import client\n\n\n@app.task\ndef bill():\n    pass\n",
         "app/orders/client.py": "def price(order):\n    return None\n"},
    ),
    "L9": Case(
        {
            "app/__init__.py": "from .web import application\n",
            "app/web.py": "from fastapi import FastAPI\n\napplication = FastAPI()\n",
        },
        ("app/__init__.py", 1),
        {"app/__init__.py": '"""The service."""\n'},
    ),
    "L6b": Case(
        {"deploy/queue.yaml": QUEUE_CR.format(type="quorum"),
         "app/queues.py": CELERY_QUEUE.format(arguments='{"x-message-ttl": 60000}')},
        ("app/queues.py", 3),
        {"app/queues.py": CELERY_QUEUE.format(
            arguments='{"x-queue-type": "quorum", "x-message-ttl": 60000}')},
    ),
    "L7": Case(
        {"deploy/queue.yaml": QUEUE_CR.format(type="classic"),
         "app/queues.py": CELERY_QUEUE.format(arguments='{"x-message-ttl": 30000}')},
        ("deploy/queue.yaml", 10),
        {"app/queues.py": CELERY_QUEUE.format(arguments='{"x-message-ttl": 60000}')},
    ),
    "L12a": Case(
        {"app/cache.py": "CACHE = {}\n", "deploy/worker.yaml": deployment('["celery", "worker", "-P", "threads"]')},
        ("deploy/worker.yaml", 1),
        {"deploy/warmup.yaml": JOB.format(command=MODULE, first=CONFIG, second=SECRET)},
    ),
    "L12b": Case(
        {"app/worker.py": WORKER_START, "app/cache.py": CACHE_START.format(then="")},
        ("app/worker.py", 8),
        {"app/cache.py": CACHE_START.format(then="cache.refresh()")},
    ),
    "L2c": Case(
        {"deploy/api.yaml": deployment('["serve-api"]') + PROBES.format(live="/health")},
        ("deploy/api.yaml", 20),
        {"deploy/api.yaml": deployment('["serve-api"]') + PROBES.format(live="/livez")},
    ),
    "L17a": Case(
        {"deploy/warmup.yaml": JOB.format(command='["python", "-c", "import app; app.warm()"]',
                                          first=CONFIG, second=SECRET)},
        ("deploy/warmup.yaml", 14),
        {"deploy/warmup.yaml": JOB.format(command=MODULE, first=CONFIG, second=SECRET)},
    ),
    "L17b": Case(
        {"deploy/warmup.yaml": JOB.format(command=MODULE, first=SECRET, second=CONFIG)},
        ("deploy/warmup.yaml", 16),
        {"deploy/warmup.yaml": JOB.format(command=MODULE, first=CONFIG, second=SECRET)},
    ),
    "L15": Case(
        {"deploy/worker.yaml": deployment('["celery", "worker", "-Q", "orders.match,orders.reward", "-P", "threads"]')},
        ("deploy/worker.yaml", 15),
        {"deploy/worker.yaml": deployment('["celery", "worker", "-Q", "orders.match", "-P", "threads"]')},
    ),
    "L16": Case(
        {"deploy/worker.yaml": deployment('["celery", "worker", "-Q", "orders.match", "-c", "4"]')},
        ("deploy/worker.yaml", 15),
        {"deploy/worker.yaml": deployment('["celery", "worker", "-Q", "orders.match", "-P", "threads"]')},
    ),
    "L13": Case(
        {
            "app/tasks.py": "from celery_batches import Batches\n",
            "requirements-worker.txt": "celery==5.6.0\n",
            "Dockerfile.worker": "FROM python:3.11-slim\nCOPY requirements-worker.txt .\n"
                                 "RUN pip install -r requirements-worker.txt\n"
                                 'CMD ["celery", "-A", "app", "worker"]\n',
        },
        ("Dockerfile.worker", 3),
        {"requirements-worker.txt": "celery==5.6.0\ncelery-batches==0.10\n"},
    ),
}  # fmt: skip


def keel_check(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "keel", "check", str(tree), *args], capture_output=True, text=True, timeout=60
    )


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def findings(tree: Path) -> list[dict]:
    result = keel_check(tree, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(RULES)


@pytest.mark.parametrize("code", list(CASES))
def test_each_rule_fires_on_its_fixture_and_not_on_its_fixed_twin(tmp_path, code):
    case = CASES[code]
    broken = write(tmp_path / "broken", case.files)
    found = [(f["code"], f["path"], f["line"]) for f in findings(broken)]
    assert found == [(code, *case.at)], found
    fixed = write(tmp_path / "fixed", {**case.files, **case.fixed})
    assert findings(fixed) == []


UV_PYPROJECT = (
    '[project]\nname = "app"\nversion = "1"\ndependencies = ["celery==5.6.2"]\n'
    '[project.optional-dependencies]\nbatches = ["celery-batches==0.11"]\nweb = ["fastapi==0.165.0"]\n'
    '[dependency-groups]\nworkers = ["celery-batches==0.11"]\ndev = ["pytest==9.2.0"]\n'
)


@pytest.mark.parametrize(
    ("sync", "flagged"),
    [
        ("uv sync --locked --no-dev", True),
        ("uv sync --locked --no-dev \\\n    --extra web", True),
        ("uv sync --locked --no-dev \\\n    --extra batches", False),
        ("uv sync --locked --no-dev --extra=batches", False),
        ("uv sync --locked --all-extras --no-extra batches", True),
        ("uv sync --locked --all-extras", False),
        ("uv sync --locked --no-dev --group workers", False),
        ("uv sync --locked --only-group dev", True),
    ],
)  # fmt: skip
def test_l13_reads_what_uv_sync_installs(tmp_path, sync, flagged):
    """`uv sync` installs the project's dependencies with the extras and groups it names:
    L13 reads those in pyproject.toml (uv.lock is made from it), continuation lines too."""
    tree = write(tmp_path, {
        "app/tasks.py": "from celery_batches import Batches\n",
        "pyproject.toml": UV_PYPROJECT,
        "Dockerfile.worker": f"FROM python:3.11-slim\nCOPY pyproject.toml uv.lock ./\nRUN {sync}\n"
                             'CMD ["celery", "-A", "app", "worker"]\n',
    })  # fmt: skip
    found = [(f["code"], f["path"], f["line"]) for f in findings(tree)]
    assert found == ([("L13", "Dockerfile.worker", 3)] if flagged else []), found


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_answer_set_checks_clean(rendered, variant):
    result = keel_check(rendered[variant])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("All checks passed")


def test_text_output_is_ruff_style_with_a_summary_and_exit_1(tmp_path):
    tree = write(tmp_path, CASES["L3b"].files)
    result = keel_check(tree)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "docker/entrypoint.sh:2:9: L3b waits on `nc -z` without a bound"
    assert lines[-1].startswith("Found 1 problem(s)")


def test_sarif_output_is_valid_sarif_2_1_0(tmp_path):
    tree = write(tmp_path, {**CASES["L4"].files, **CASES["L17b"].files})
    result = keel_check(tree, "--format", "sarif")
    assert result.returncode == 1
    log = json.loads(result.stdout)
    schema = json.loads((REPOSITORY / "tests/schemas/sarif-2.1.0.json").read_text())
    Draft4Validator(schema).validate(log)
    results = log["runs"][0]["results"]
    assert sorted(r["ruleId"] for r in results) == ["L17b", "L4"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [("compose.yaml", "services:\n  api: [unclosed\n", 3), ("app/x.py", "def broken(:\n", 1)],
    ids=["yaml", "python"],
)
def test_a_malformed_file_is_a_finding_with_its_place_not_a_traceback(tmp_path, name, text, line):
    tree = write(tmp_path, {name: text})
    result = keel_check(tree)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith(f"{name}:{line}:"), result.stdout
    assert " E001 " in result.stdout.splitlines()[0]


def test_select_and_ignore_choose_rules_and_usage_errors_exit_2(tmp_path):
    tree = write(tmp_path, {**CASES["L4"].files, **CASES["L3b"].files})
    assert [
        f["code"] for f in json.loads(keel_check(tree, "--format", "json", "--select", "L3").stdout)
    ] == ["L3b"]
    assert [
        f["code"] for f in json.loads(keel_check(tree, "--format", "json", "--ignore", "L3").stdout)
    ] == ["L4"]
    unknown = keel_check(tree, "--select", "L99")
    assert unknown.returncode == 2 and "L99 matches no rule" in unknown.stderr
    missing = keel_check(tmp_path / "nowhere")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_the_readme_lists_every_rule_with_what_it_prevents_and_the_fix():
    readme = (REPOSITORY / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| L")
    }
    assert sorted(rows) == sorted(RULES)
    for code, rule in RULES.items():
        assert f"| {rule.title} |" in rows[code] and rule.fix[1:] in rows[code], code


def test_overlays_are_read_as_kustomize_builds_them(tmp_path):
    """A patch only an overlay applies puts the Secret first: only the built overlay shows
    it, named by its kustomization file; an overlay that does not build is E002."""
    good = JOB.format(command=MODULE, first=CONFIG, second=SECRET)
    swap = (
        "- op: replace\n  path: /spec/template/spec/containers/0/envFrom\n"
        "  value: [{secretRef: {name: app}}, {configMapRef: {name: app}}]\n"
    )
    tree = write(
        tmp_path / "service",
        {
            "deploy/base/warmup.yaml": good,
            "deploy/base/kustomization.yaml": "resources: [warmup.yaml]\n",
            "deploy/overlays/prod/kustomization.yaml": (
                "resources: [../../base]\npatches:\n  - target: {kind: Job, name: warmup}\n"
                "    path: swap.yaml\n"
            ),
            "deploy/overlays/prod/swap.yaml": swap,
            "deploy/overlays/dev/kustomization.yaml": "resources: [../../base, missing.yaml]\n",
        },
    )
    found = [(f["code"], f["path"]) for f in findings(tree)]
    assert found == [
        ("E002", "deploy/overlays/dev/kustomization.yaml"),
        ("L17b", "deploy/overlays/prod/kustomization.yaml"),
    ], found


SEED = REPOSITORY / "tests/fixtures/seed-service"


def test_the_seed_system_reports_every_lesson_it_violates_at_its_place():
    """The write-ups' system rebuilt as it was before its fixes: `keel check` names each
    violation VIOLATIONS.yaml lists (lesson, file, line) and nothing else."""
    violations = yaml.safe_load((SEED / "VIOLATIONS.yaml").read_text())
    expected = sorted(
        (lesson, entry["file"], entry["line"])
        for lesson, entries in violations.items()
        for entry in entries
    )
    found = sorted((re.match(r"L\d+", f["code"])[0], f["path"], f["line"]) for f in findings(SEED))
    assert found == expected
    assert {lesson for lesson, _, _ in found} == {f"L{n}" for n in range(1, 18)}


def test_the_seed_system_once_fixed_checks_clean(tmp_path):
    """seed-service-fixed/ holds the files the fixes change or add, laid over the seed."""
    fixed = tmp_path / "seed-service-fixed"
    shutil.copytree(SEED, fixed, ignore=shutil.ignore_patterns("VIOLATIONS.yaml"))
    shutil.copytree(SEED.with_name("seed-service-fixed"), fixed, dirs_exist_ok=True)
    result = keel_check(fixed)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("source", "repo"),
    [
        ("gh:acme/keel", "https://github.com/acme/keel"),
        ("gl:/acme/keel.git", "https://gitlab.com/acme/keel.git"),
        ("git+https://git.example.com/keel.git", "https://git.example.com/keel.git"),
        ("https://github.com/acme/keel.git", "https://github.com/acme/keel.git"),
        ("/srv/keel", "/srv/keel"),
    ],
)
def test_the_rendered_hook_names_keel_by_an_address_pre_commit_can_clone(source, repo):
    """Copier records the template as it was given (`gh:` shortcuts included); the rendered
    pre-commit configuration pins keel-check to that repository and commit."""
    text = (REPOSITORY / "template/.pre-commit-config.yaml.jinja").read_text()
    context = {
        "_copier_answers": {"_src_path": source, "_commit": "v0.8.0"},
        "_copier_conf": {"vcs_ref_hash": "3fa9" * 10},
    }
    keel = yaml.safe_load(Template(text).render(context))["repos"][0]
    assert keel == {"repo": repo, "rev": "3fa9" * 10, "hooks": [{"id": "keel-check"}]}
